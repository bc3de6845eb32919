"""The command line end to end: train the smoke preset, evaluate its checkpoint, reject bad input clearly."""

import json

import pytest
from conftest import read_json, run_cli

EVAL_FIELDS = {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n_examples"}


def test_smoke_training_learns_the_synthetic_news(smoke_run):
    result = read_json(smoke_run / "eval.json")
    assert EVAL_FIELDS <= set(result)
    assert result["n_examples"] == 500
    assert result["accuracy"] >= 0.9
    assert sum(map(sum, result["confusion_matrix"])) == 500
    assert set(result["per_class"]) == {"World", "Sports", "Business", "Sci/Tech"}


def test_smoke_run_writes_config_metrics_and_checkpoint(smoke_run):
    assert read_json(smoke_run / "config.json")["model_name"] == "tiny"
    records = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    epochs = [r for r in records if "eval" in r]
    assert len(epochs) == 3 and steps
    assert all(r["samples_per_s"] > 0 and r["tokens_per_s"] > r["samples_per_s"] for r in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]
    ckpt = smoke_run / "checkpoint"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "training_state.pt"):
        assert (ckpt / name).exists(), name
    assert read_json(ckpt / "config.json")["id2label"] == {"0": "World", "1": "Sports", "2": "Business",
                                                            "3": "Sci/Tech"}


def test_evaluate_command_reproduces_eval_json(smoke_run, tmp_path):
    out = tmp_path / "eval.json"
    run_cli("evaluate", "--checkpoint", str(smoke_run / "checkpoint"), "--output", str(out))
    again, trained = read_json(out), read_json(smoke_run / "eval.json")
    assert again["n_examples"] == trained["n_examples"]
    assert again["confusion_matrix"] == trained["confusion_matrix"]
    assert again["accuracy"] == trained["accuracy"]


def test_a_finished_run_resumes_to_the_same_result(smoke_run):
    proc = run_cli("train", "--preset", "smoke", "--output-dir", str(smoke_run))
    assert "resuming from" in proc.stdout
    assert "epoch 1/3" not in proc.stderr  # nothing left to train
    assert read_json(smoke_run / "eval.json")["accuracy"] >= 0.9


def test_resuming_with_a_changed_recipe_is_refused(smoke_run):
    proc = run_cli("train", "--preset", "smoke", "--output-dir", str(smoke_run), "--learning-rate", "1e-3",
                   check=False)
    assert proc.returncode == 2
    assert "learning_rate 0.002 -> 0.001" in proc.stderr and "--resume false" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--preset", "nope"], "unknown preset 'nope'; choose one of: smoke, cpu-demo"),
    (["train", "--learning-rat", "1e-3"], "--learning-rate"),
    (["train", "--epochs", "two"], "--epochs expects int, got 'two'"),
    (["train", "--padding", "sideways"], "padding must be one of grouped, dynamic, max_length"),
    (["train", "--data", "files", "--train-file", "/nonexistent/train.csv", "--test-file", "/nonexistent/t.csv"],
     "/nonexistent/train.csv"),
    (["train", "--data", "hub"], "hub"),
    (["evaluate", "--checkpoint", "/nonexistent/ckpt"], "not a checkpoint directory"),
    (["train", "--model", "/nonexistent/model-dir", "--max-train-rows", "10"], "cannot load model"),
])
def test_user_errors_exit_2_with_one_clear_line(args, message, tmp_path):
    if args[0] == "train":
        args = [*args, "--output-dir", str(tmp_path)]
    proc = run_cli(*args, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_documents_every_field_from_its_comment():
    proc = run_cli("train", "--help")
    assert "--per-device-batch-size" in proc.stdout
    assert "global batch = this x world_size x grad_accum_steps" in proc.stdout
