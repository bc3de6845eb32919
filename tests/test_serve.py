"""`distrinews serve` as `make demo` runs it: the Space app on a checkpoint, answering its JSON API on localhost."""

import importlib.util
import sys

import httpx

from conftest import ROOT, free_port, running_server
from distrinews.labels import LABEL_NAMES


def test_serve_answers_health_and_predict(smoke_run, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "distrinews", "serve", "--checkpoint", str(smoke_run / "checkpoint"),
               "--host", "127.0.0.1", "--port", str(port)]
    with running_server(command, url, tmp_path / "serve.log", cwd=ROOT):
        health = httpx.get(f"{url}/health", timeout=10)
        answer = httpx.post(f"{url}/predict", json={"texts": ["Striker scores twice as City win the cup final"]},
                            timeout=60)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert prediction["label"] in LABEL_NAMES and set(prediction["probabilities"]) == set(LABEL_NAMES)
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-4
    # The CPU's default path: ONNX Runtime int8 where it is installed, else PyTorch's, with the reason in the log.
    log = (tmp_path / "serve.log").read_text()
    if importlib.util.find_spec("onnxruntime"):
        assert health.json()["engine"] == "onnx-int8" and "engine: onnx-int8 on the CPU" in log
    else:
        assert health.json()["engine"] == "torch-int8"  # Kaggle's image: none of the three packages
        assert "ONNX Runtime not used: onnxruntime" in log and "not installed (pip install onnxruntime" in log
