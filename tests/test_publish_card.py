"""The model card `publish space` writes: generated from the run's own files (the smoke run's, and the same run
with the recipe of a real one), never a claim the run does not support."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from distrinews.publishing import AG_NEWS, model_card


def split(card: str) -> tuple[dict, str]:
    _, front, body = card.split("---\n", 2)
    return yaml.safe_load(front), body


def test_the_smoke_runs_card_says_what_it_was_trained_on_and_how(smoke_run):
    meta, body = split(model_card(smoke_run / "checkpoint", "course/distrinews"))
    metrics = json.loads((smoke_run / "eval.json").read_text())
    assert "base_model" not in meta and "random" in body  # `tiny` starts from no pretrained model
    assert "datasets" not in meta and "model-index" not in meta  # synthetic news is not AG News
    assert "Synthetic news, not AG News" in body
    assert meta["tags"][0] == "distilbert" and "ddp" not in meta["tags"]  # from config.json; one process
    assert f"accuracy **{metrics['accuracy']:.4f}**" in body and f"macro-F1 **{metrics['macro_f1']:.4f}**" in body
    assert "one process, so no DistributedDataParallel" in body
    assert "Precision: fp32 (asked for `auto`)" in body  # the precision the run resolved, from training_state.pt
    assert "`BatchSampler`" in body and "not PyTorch's DistributedSampler" in body


@pytest.fixture
def real_looking_run(smoke_run, tmp_path) -> Path:
    """The smoke run's files as a 2-process bf16 run of MiniLM on AG News files would write them."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    config_file = run / "checkpoint" / "distrinews_config.json"
    config = json.loads(config_file.read_text())
    config.update(model_name="minilm", data_source="auto", train_files=["train.csv"], test_file="test.csv")
    config_file.write_text(json.dumps(config))
    state_file = run / "checkpoint" / "training_state.pt"
    state = torch.load(state_file, weights_only=True)
    state.update(world_size=2, precision="bf16")
    torch.save(state, state_file)
    return run


def test_a_real_runs_card_names_its_base_model_dataset_terms_and_metrics(real_looking_run):
    meta, body = split(model_card(real_looking_run / "checkpoint", "me/distrinews-agnews"))
    metrics = json.loads((real_looking_run / "eval.json").read_text())
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["datasets"] == [AG_NEWS]
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"]["type"] == AG_NEWS and result["dataset"]["split"] == "test"
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"accuracy": round(metrics["accuracy"], 4), "f1": round(metrics["macro_f1"], 4)}
    assert "non-commercial" in body  # AG News' terms
    assert "2 processes under `torchrun`" in body and "Precision: bf16" in body and "ddp" in meta["tags"]
    assert "32 per device x 2 processes x 1 accumulation steps = 64" in body


def test_a_run_whose_files_cannot_tell_its_data_claims_no_dataset(real_looking_run):
    config_file = real_looking_run / "checkpoint" / "distrinews_config.json"
    config = json.loads(config_file.read_text())
    config.update(train_files=[], test_file="")  # auto with nothing given, and a test set of the synthetic size
    config_file.write_text(json.dumps(config))
    meta, body = split(model_card(real_looking_run / "checkpoint", "me/distrinews-agnews"))
    assert "datasets" not in meta and "model-index" not in meta
    assert "Not recorded: `data_source` was `auto`" in body
