"""The Space: the pure predict function, and the staged Space folder served on its own (UI + JSON API)."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, free_port, run_cli, running_server
from distrinews.labels import LABEL_NAMES

HEADLINE = "Late goal sends the home side into the cup final"


@pytest.fixture(scope="module")
def space_app(smoke_run):
    """space/app.py imported under a fresh module name, with the smoke checkpoint as its model."""
    previous = os.environ.get("DISTRINEWS_MODEL")
    os.environ["DISTRINEWS_MODEL"] = str(smoke_run / "checkpoint")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        spec = importlib.util.spec_from_file_location("space_app_under_test", ROOT / "space" / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            os.environ.pop("DISTRINEWS_MODEL", None)
        else:
            os.environ["DISTRINEWS_MODEL"] = previous
    return module


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


@pytest.fixture(scope="module")
def staged_space(smoke_run, tmp_path_factory) -> Path:
    stage = tmp_path_factory.mktemp("stage")
    proc = run_cli("publish", "space", "--space-id", "course/distrinews-demo", "--model-id", "course/distrinews",
                   "--checkpoint", str(smoke_run / "checkpoint"), "--dry-run", "--stage-dir", str(stage))
    assert "would push space course/distrinews-demo" in proc.stdout and "distrinews/inference.py" in proc.stdout
    assert "nothing pushed" in proc.stdout
    return stage


def test_publish_dry_run_stages_a_space_and_a_model_card(staged_space, smoke_run):
    space, model = staged_space / "space", staged_space / "model"
    readme = (space / "README.md").read_text()
    for key in ("title:", "sdk: gradio", "sdk_version:", "app_file: app.py", 'python_version: "3.11"',
                "short_description:", "  - course/distrinews", "  - fancyzhx/ag_news", "license:"):
        assert key in readme
    assert (space / "distrinews" / "inference.py").exists() and (space / "requirements.txt").exists()
    card = (model / "README.md").read_text()
    assert "DistributedDataParallel" in card and "fancyzhx/ag_news" in card and "`tiny`" in card
    accuracy = run_json(smoke_run / "eval.json")["accuracy"]
    assert f"{accuracy:.4f}" in card  # the measured metric, not a made-up one
    assert not (model / "training_state.pt").exists() and (model / "model.safetensors").exists()


def test_publish_without_a_token_exits_2_with_a_clear_message(smoke_run, tmp_path):
    env = {"HF_TOKEN": ""}
    proc = run_cli("publish", "space", "--space-id", "a/b", "--model-id", "a/c", "--checkpoint",
                   str(smoke_run / "checkpoint"), "--stage-dir", str(tmp_path), check=False, env=env)
    assert proc.returncode == 2 and "HF_TOKEN" in proc.stderr


def run_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def server(staged_space, smoke_run, tmp_path_factory):
    """The staged Space folder run on its own: cwd = the folder, no PYTHONPATH, its own copy of distrinews."""
    port, folder = free_port(), staged_space / "space"
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(DISTRINEWS_MODEL=str(smoke_run / "checkpoint"), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    url = f"http://127.0.0.1:{port}"
    with running_server([sys.executable, "app.py"], url, log, cwd=folder, env=env):
        yield url


def post(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=60)


def test_health_names_the_model(server, smoke_run):
    answer = httpx.get(f"{server}/health", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "model": str(smoke_run / "checkpoint")}


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
