"""The Space: the pure predict function, the app on CPU, CUDA and ZeroGPU machines (faked on this CPU), the
staged Space folder served on its own (UI + JSON API) from the staged model's prebuilt int8 ONNX file, without
torch, and what `publish space` and `serve` check first."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import types
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import torch
import yaml

from conftest import ROOT, free_port, run_cli, running_server
from distrinews import cli, serving
from distrinews.labels import LABEL_NAMES
from test_inference import fake_cuda, int8_layers

HEADLINE = "Late goal sends the home side into the cup final"


def import_app(checkpoint: Path, name: str):
    """space/app.py imported under a fresh module name, with `checkpoint` as its model."""
    previous = os.environ.get("DISTRINEWS_MODEL")
    os.environ["DISTRINEWS_MODEL"] = str(checkpoint)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "space" / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            os.environ.pop("DISTRINEWS_MODEL", None)
        else:
            os.environ["DISTRINEWS_MODEL"] = previous
    return module


@pytest.fixture(scope="module")
def space_app(smoke_run):
    return import_app(smoke_run / "checkpoint", "space_app_under_test")


def test_predict_returns_the_four_class_probabilities(space_app):
    for example in space_app.EXAMPLES:
        probabilities = space_app.predict(example)
        assert list(probabilities) == list(LABEL_NAMES)
        assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-4)
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())


def test_predict_rejects_blank_text_with_a_message(space_app):
    for blank in ("", "   \n\t ", "\x00\x07"):
        with pytest.raises(space_app.InputError, match="empty"):
            space_app.predict(blank)
    with pytest.warns(UserWarning, match="empty"):  # gr.Warning: a toast in the browser, a warning here
        probabilities, note = space_app.ui_predict("  ")  # the UI answers with a message, not a traceback
    assert probabilities is None and "empty" in note


def test_ui_reports_latency_truncation_and_batch_table(space_app):
    probabilities, note = space_app.ui_predict("word " * 50_000)
    assert set(probabilities) == set(LABEL_NAMES)
    assert "Last call:" in note and " ms " in note and "truncated" in note
    rows, batch_note = space_app.ui_batch("\n".join(space_app.EXAMPLES) + "\n\n")
    assert [row[0] for row in rows] == space_app.EXAMPLES  # blank lines skipped, order kept
    assert all(row[1] in LABEL_NAMES for row in rows) and "4 headlines" in batch_note


def test_the_smoke_model_gets_the_examples_mostly_right(space_app):
    # The smoke checkpoint scores ~0.93 on synthetic news; the examples use the same kind of words.
    predicted = [max(p := space_app.predict(text), key=p.get) for text in space_app.EXAMPLES]
    assert sum(label == truth for label, truth in zip(predicted, LABEL_NAMES)) >= 2, predicted


# ---- the same app.py on a CUDA machine and on ZeroGPU -------------------------------------------------------

def test_on_a_cuda_machine_the_app_runs_float_weights_on_the_gpu(smoke_run, monkeypatch):
    """Regression: the app loaded int8 weights (CPU-only kernels), then moved them to CUDA on the first call."""
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    moves = fake_cuda(monkeypatch)
    app = import_app(smoke_run / "checkpoint", "space_app_on_cuda")
    assert int8_layers(app.CLASSIFIER.model) == 0, "int8 weights chosen for a CUDA machine: no CUDA kernel runs them"
    assert app.CLASSIFIER.device == "cuda"
    assert app.CPU_CLASSIFIER is app.CLASSIFIER  # one model serves the page and the JSON API
    placed = len(moves)
    assert placed > 0, "the model was not placed on CUDA when the app loaded"
    probabilities, note = app.ui_predict(HEADLINE)
    assert set(probabilities) == set(LABEL_NAMES) and " on GPU." in note
    assert len(moves) > placed and int8_layers(app.CLASSIFIER.model) == 0


class FakeZeroGPU:
    """The `spaces` package as ZeroGPU runs it, on a CPU: each call of a @spaces.GPU function runs in a forked
    worker process, whose result is pickled back, and whose changes to module state never reach this process."""

    def __init__(self):
        self.module = types.ModuleType("spaces")
        self.module.GPU = self.GPU
        self.decorated: list[tuple[str, object]] = []  # (function name, duration)
        self.calls = 0

    def GPU(self, task=None, *, duration=None, size=None):  # noqa: N802 - the name `spaces` exports
        if task is None:
            return functools.partial(self.GPU, duration=duration, size=size)
        self.decorated.append((task.__name__, duration))

        @functools.wraps(task)
        def in_worker(*args, **kwargs):
            self.calls += 1
            context = multiprocessing.get_context("fork")
            receive, send = context.Pipe(duplex=False)

            def work():
                torch.set_num_threads(1)  # on this CPU stand-in, a forked child hangs in the parent's OpenMP pool
                try:
                    send.send(("ok", task(*args, **kwargs)))
                except BaseException as err:  # noqa: BLE001 - every failure goes back to the caller
                    send.send(("error", repr(err)))

            worker = context.Process(target=work, daemon=True)
            worker.start()
            assert receive.poll(120), "the GPU worker never answered"
            status, value = receive.recv()
            worker.join(30)
            assert status == "ok", value
            return value

        return in_worker


@pytest.fixture
def zero_gpu_app(smoke_run, monkeypatch):
    """app.py imported as on a ZeroGPU Space: `spaces` present, SPACES_ZERO_GPU set, CUDA emulated at import."""
    fake = FakeZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", fake.module)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    moves = fake_cuda(monkeypatch)
    app = import_app(smoke_run / "checkpoint", "space_app_on_zerogpu")
    return app, fake, moves


def test_on_zerogpu_the_model_is_placed_at_import_and_each_call_borrows_the_gpu(zero_gpu_app):
    """Regression: the docs place the model on CUDA at module level; a move made inside the decorated call
    happened in the worker and was lost, so the page said CPU for a GPU call."""
    app, fake, moves = zero_gpu_app
    assert moves, "the model was not placed on CUDA at import, outside the @spaces.GPU function"
    assert app.CLASSIFIER.device == "cuda" and int8_layers(app.CLASSIFIER.model) == 0
    assert [name for name, _ in fake.decorated] == ["run_model"]
    assert all(duration for _, duration in fake.decorated)  # a short limit queues sooner than the 60 s default
    model = app.CLASSIFIER.model
    probabilities, note = app.ui_predict(HEADLINE)
    assert fake.calls == 1 and set(probabilities) == set(LABEL_NAMES)
    assert " on GPU." in note
    rows, _ = app.ui_batch("\n".join(app.EXAMPLES))
    assert fake.calls == 2 and [row[1] in LABEL_NAMES for row in rows] == [True] * 4
    assert app.CLASSIFIER.model is model  # nothing to carry over between calls


def test_on_zerogpu_the_json_api_answers_on_the_cpu_without_a_gpu_call(zero_gpu_app):
    """A plain FastAPI route is no Gradio event: it has no visitor token for ZeroGPU to bill a GPU call to."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app, fake, _ = zero_gpu_app
    cpu = app.CPU_CLASSIFIER
    # An int8 engine on the CPU; under this fake CUDA torch's exporter fails, and the fallback must say so.
    assert cpu.device == "cpu" and cpu.engine in ("onnx-int8", "torch-int8")
    assert cpu.engine == "onnx-int8" or cpu.engine_note.startswith("ONNX Runtime not used: ")
    with TestClient(FastAPI(routes=app.API.routes)) as client:
        answer = client.post("/predict", json={"texts": [HEADLINE, "Shares slide as the bank raises rates"]})
    assert answer.status_code == 200, answer.text
    assert [p["label"] in LABEL_NAMES for p in answer.json()["predictions"]] == [True, True]
    assert fake.calls == 0


@pytest.fixture(scope="module")
def staged_space(smoke_run, tmp_path_factory) -> Path:
    stage = tmp_path_factory.mktemp("stage")
    proc = run_cli("publish", "space", "--space-id", "course/distrinews-demo", "--model-id", "course/distrinews",
                   "--checkpoint", str(smoke_run / "checkpoint"), "--dry-run", "--stage-dir", str(stage))
    assert "would push space course/distrinews-demo" in proc.stdout and "distrinews/prebuilt.py" in proc.stdout
    assert "onnx/model-int8.onnx" in proc.stdout and "nothing pushed" in proc.stdout
    return stage


def test_publish_dry_run_stages_a_space_and_a_model_card(staged_space, smoke_run):
    space, model = staged_space / "space", staged_space / "model"
    readme = (space / "README.md").read_text()
    for key in ("title:", "sdk: gradio", "sdk_version:", "app_file: app.py", "python_version:",
                "short_description:", "  - course/distrinews", "  - fancyzhx/ag_news", "license:"):
        assert key in readme
    assert (space / "distrinews" / "prebuilt.py").exists() and (space / "requirements.txt").exists()
    assert (space / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    card = (model / "README.md").read_text()
    accuracy = run_json(smoke_run / "eval.json")["accuracy"]
    assert f"{accuracy:.4f}" in card  # the measured metric, not a made-up one
    assert not (model / "training_state.pt").exists() and (model / "model.safetensors").exists()
    assert (model / "onnx" / "model-int8.onnx").stat().st_size > 0  # built once, here, not in the Space


def front_matter(readme: Path) -> dict:
    return yaml.safe_load(readme.read_text().split("---")[1])


def requirement_names(requirements: Path) -> set[str]:
    return {line.split("=")[0].split(">")[0].split("<")[0].strip() for line in requirements.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def test_a_cpu_space_installs_neither_torch_nor_the_exporter(staged_space):
    names = requirement_names(staged_space / "space" / "requirements.txt")
    assert "onnxruntime" in names and "tokenizers" in names
    assert not names & {"torch", "transformers", "onnx", "onnxscript", "safetensors"}, names


def test_the_cpu_space_answers_from_the_prebuilt_onnx_without_importing_torch(staged_space, smoke_run):
    """The staged app in a fresh process, as the Space runs it: the published model's int8 ONNX file, and torch
    (installed here, but not on a CPU Space) never imported; its answers are the torch-loaded app's."""
    probe = textwrap.dedent("""\
        import json, sys, app
        texts = app.EXAMPLES + ["word " * 500]
        answers = [p.to_dict() for p in app.classify(texts)]
        heavy = sorted(m for m in ("torch", "transformers", "onnx", "onnxscript") if m in sys.modules)
        print(json.dumps({"engine": app.CLASSIFIER.engine, "texts": texts, "answers": answers, "loaded": heavy}))
    """)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SPACES_ZERO_GPU")}
    env.update(DISTRINEWS_MODEL=str(staged_space / "model"), CUDA_VISIBLE_DEVICES="",
               GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=staged_space / "space", env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["engine"] == "onnx-int8" and result["loaded"] == [], result
    from distrinews.inference import NewsClassifier

    torch_app = NewsClassifier.load(str(smoke_run / "checkpoint"), optimize="none")  # float32 weights in torch
    for answer, reference in zip(result["answers"], torch_app.predict(result["texts"]), strict=True):
        assert answer["label"] == reference.label and answer["truncated"] == reference.truncated
        assert all(math.isclose(answer["probabilities"][k], p, abs_tol=0.05)
                   for k, p in reference.probabilities.items())
    assert result["answers"][-1]["truncated"] is True


@pytest.fixture
def zero_gpu_space(tmp_path) -> Path:
    return serving.stage_space("course/distrinews", tmp_path, "course/distrinews-demo", hardware="zero-gpu")


def test_a_zerogpu_space_keeps_torch_at_a_version_zerogpu_runs_and_names_a_tested_gradio(zero_gpu_space):
    """Regression: python 3.11 and an unpinned torch>=2.3 are not what ZeroGPU runs."""
    meta = front_matter(zero_gpu_space / "README.md")
    # https://huggingface.co/docs/hub/spaces-zerogpu, "Supported Versions"
    assert meta["python_version"] in ("3.10.13", "3.12.12")
    requirements = (zero_gpu_space / "requirements.txt").read_text().splitlines()
    pins = [line.removeprefix("torch==") for line in requirements if line.startswith("torch")]
    assert len(pins) == 1 and pins[0] in ("2.8.0", "2.9.1", "2.10.0", "2.11.0"), pins
    assert meta["sdk_version"] == version("gradio")  # the gradio this environment tested the app with
    assert (zero_gpu_space / "LICENSE").exists()


@pytest.mark.parametrize("file, change, message", [
    ("README.md", ('python_version: "3.12.12"', 'python_version: "3.11"'), "python_version 3.11 is not one ZeroGPU"),
    ("requirements.txt", ("torch==2.11.0", "torch>=2.3"), "must pin torch"),
    ("requirements.txt", ("torch==2.11.0", "torch==2.3.1"), "must pin torch"),
])
def test_validation_refuses_versions_zerogpu_does_not_run(zero_gpu_space, staged_space, tmp_path, file, change,
                                                          message):
    text = (zero_gpu_space / file).read_text()
    assert change[0] in text
    (zero_gpu_space / file).write_text(text.replace(*change))
    with pytest.raises(serving.PublishError, match=message):
        serving.validate_space(zero_gpu_space, staged_space / "model", hardware="zero-gpu")


def test_validation_refuses_torch_on_a_cpu_space(staged_space, tmp_path):
    folder = tmp_path / "space"
    shutil.copytree(staged_space / "space", folder)
    with open(folder / "requirements.txt", "a") as requirements:
        requirements.write("torch==2.11.0\n")
    with pytest.raises(serving.PublishError, match="none of torch"):
        serving.validate_space(folder, staged_space / "model", hardware="cpu")


@pytest.mark.parametrize("installed, tested", [("5.50.0", True), ("6.31.0", True), ("6.0.1", True),
                                               ("5.49.1", False), ("4.44.1", False), ("7.0.0", False)])
def test_sdk_version_is_a_gradio_the_app_is_tested_with(monkeypatch, installed, tested):
    monkeypatch.setattr(serving, "version", lambda name: installed)
    if tested:
        assert serving.tested_gradio_version() == installed
    else:
        with pytest.raises(serving.PublishError, match="tested with gradio 5.50"):
            serving.tested_gradio_version()


@pytest.mark.parametrize("command", [["serve"], ["publish", "space", "--space-id", "a/b", "--model-id", "a/c",
                                                 "--dry-run"]])
def test_a_command_without_the_space_extra_says_what_to_install(command, smoke_run, tmp_path, monkeypatch,
                                                                 capsys):
    """Regression: a missing optional package was a ModuleNotFoundError traceback."""
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if gradio were not installed
    code = cli.main([*command, "--checkpoint", str(smoke_run / "checkpoint")] +
                    (["--stage-dir", str(tmp_path)] if "publish" in command else []))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert 'needs gradio, which is not installed here: pip install "distrinews[space]"' in err


def test_a_push_without_huggingface_hub_says_what_to_install(smoke_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    code = cli.main(["publish", "space", "--space-id", "a/b", "--model-id", "a/c", "--checkpoint",
                     str(smoke_run / "checkpoint"), "--stage-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "pip install huggingface_hub" in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # it fails before any work


def test_publish_without_a_token_exits_2_with_a_clear_message(smoke_run, tmp_path):
    env = {"HF_TOKEN": ""}
    proc = run_cli("publish", "space", "--space-id", "a/b", "--model-id", "a/c", "--checkpoint",
                   str(smoke_run / "checkpoint"), "--stage-dir", str(tmp_path), check=False, env=env)
    assert proc.returncode == 2 and "HF_TOKEN" in proc.stderr


def run_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def server(staged_space, smoke_run, tmp_path_factory):
    """The staged Space folder run on its own: cwd = the folder, no PYTHONPATH, its own copy of distrinews."""
    port, folder = free_port(), staged_space / "space"
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(DISTRINEWS_MODEL=str(staged_space / "model"), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    url = f"http://127.0.0.1:{port}"
    with running_server([sys.executable, "app.py"], url, log, cwd=folder, env=env):
        yield url


def post(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=60)


def test_serve_answers_the_page_and_the_json_api_on_one_port(smoke_run, tmp_path):
    """`distrinews serve` starts the app through Gradio's launch (ZeroGPU hooks it), API routes included."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "distrinews", "serve", "--checkpoint", str(smoke_run / "checkpoint"),
               "--host", "127.0.0.1", "--port", str(port)]
    with running_server(command, url, tmp_path / "serve.log", env=env):
        page = httpx.get(url, timeout=30)
        answer = post(url, {"text": HEADLINE})
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] in LABEL_NAMES
    assert f"DistriNews demo: {url} (Ctrl+C to stop)" in (tmp_path / "serve.log").read_text()


def test_health_names_the_model(server, staged_space):
    answer = httpx.get(f"{server}/health", timeout=10)
    assert answer.status_code == 200
    # The staged folder runs the staged model's prebuilt ONNX file with ONNX Runtime.
    assert answer.json() == {"status": "ok", "model": str(staged_space / "model"), "engine": "onnx-int8"}


def test_gradio_client_calls_the_predict_endpoint(server):
    from gradio_client import Client

    client = Client(server + "/", verbose=False)
    label, note = client.predict(HEADLINE, api_name="/predict")
    assert label["label"] in LABEL_NAMES
    assert {item["label"] for item in label["confidences"]} == set(LABEL_NAMES)
    assert "Last call:" in note


def test_api_predicts_one_text_and_a_list(server):
    one = post(server, {"text": HEADLINE})
    assert one.status_code == 200
    [prediction] = one.json()["predictions"]
    assert prediction["label"] in LABEL_NAMES and prediction["truncated"] is False
    assert math.isclose(sum(prediction["probabilities"].values()), 1.0, abs_tol=1e-4)
    many = post(server, {"texts": [HEADLINE, "Shares slide as the bank raises rates", "x"]})
    assert many.status_code == 200 and len(many.json()["predictions"]) == 3
    first = many.json()["predictions"][0]  # the same answer as alone, up to int8 rounding (padding differs)
    assert first["label"] == prediction["label"]
    assert all(math.isclose(first["probabilities"][k], p, abs_tol=0.05) for k, p in prediction["probabilities"].items())


@pytest.mark.parametrize("body, status, message", [
    ({"text": ""}, 422, "empty"),
    ({"text": "  \n\t  "}, 422, "empty"),
    ({"texts": ["fine", "   "]}, 422, "empty"),
    ({"texts": []}, 422, "no texts"),
    ({"texts": ["a headline"] * 65}, 413, "at most 64"),
    ({"headline": "wrong key"}, 422, "exactly one of"),
    ({"text": "a", "texts": ["b"]}, 422, "exactly one of"),
    (["a", "list"], 422, "exactly one of"),
    ({"texts": "not a list"}, 422, "must be a list"),
    ({"text": 42}, 422, "must be a string"),
    ({"texts": ["ok", None]}, 422, "must be a string"),
])
def test_api_bad_input_gets_a_clear_error(server, body, status, message):
    answer = post(server, body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_api_rejects_a_body_that_is_not_json(server):
    answer = httpx.post(f"{server}/predict", content=b"{not json", headers={"content-type": "application/json"},
                        timeout=60)
    assert answer.status_code == 422 and "must be JSON" in answer.json()["error"]


def test_api_truncates_long_text_and_says_so(server):
    answer = post(server, {"texts": ["market " * 40_000, HEADLINE]})  # 280,000 characters
    assert answer.status_code == 200
    first, second = answer.json()["predictions"]
    assert first["truncated"] is True and first["label"] in LABEL_NAMES
    assert second["truncated"] is False


def test_api_handles_control_characters_emoji_and_any_language(server):
    texts = ["Stocks\x00 rally\x07 as oil\x1b[31m falls\ufeff", "Team wins the cup 🏆⚽🎉",
             "日本の株価が上昇した", "Präsident trifft Минск 🇺🇳", "\U0010fffd private use"]
    answer = post(server, {"texts": texts})
    assert answer.status_code == 200, answer.text
    assert [p["label"] in LABEL_NAMES for p in answer.json()["predictions"]] == [True] * len(texts)


def test_api_serves_50_concurrent_requests(server):
    def one(i: int) -> int:
        return post(server, {"text": f"{HEADLINE} #{i}"}).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses == [200] * 50, statuses
