"""Checkpoints load with from_pretrained, give the same logits, and survive a save that dies midway."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distrinews import checkpoint as ckpt
from distrinews.config import PRESETS
from distrinews.modeling import build_model_and_tokenizer

TEXTS = ["Stocks rally as oil prices fall", "Striker scores twice in cup final"]


def logits_of(model, tokenizer):
    model.eval()
    with torch.inference_mode():
        return model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits


def save_tiny(output_dir, seed, step):
    model, tokenizer = build_model_and_tokenizer("tiny", seed=seed)
    state = {"progress": {"epoch": 0, "step": step, "batches_done": step}, "rng": [ckpt.capture_rng_state()]}
    ckpt.save_checkpoint(output_dir, model, tokenizer, state, PRESETS["smoke"])
    return model, tokenizer


def test_round_trip_gives_the_same_logits(tmp_path):
    model, tokenizer = save_tiny(tmp_path, seed=0, step=3)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "checkpoint")
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "checkpoint")
    assert torch.equal(logits_of(model, tokenizer), logits_of(loaded, loaded_tokenizer))
    assert loaded.config.id2label[3] == "Sci/Tech"
    state = ckpt.load_training_state(tmp_path / "checkpoint", torch.device("cpu"))  # weights_only=True inside
    assert state["progress"]["step"] == 3


def test_rng_state_round_trips():
    saved = ckpt.capture_rng_state()
    expected = torch.rand(3)
    torch.rand(5)
    ckpt.restore_rng_state(saved)
    assert torch.equal(torch.rand(3), expected)


def test_a_save_that_dies_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    first, tokenizer = save_tiny(tmp_path, seed=0, step=1)

    def die(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.torch, "save", die)  # dies after the weights of the new save are written
    with pytest.raises(OSError, match="simulated"):
        save_tiny(tmp_path, seed=1, step=2)
    found = ckpt.find_checkpoint(tmp_path)
    assert found == tmp_path / "checkpoint"
    assert ckpt.load_training_state(found, torch.device("cpu"))["progress"]["step"] == 1
    loaded = AutoModelForSequenceClassification.from_pretrained(found)
    assert torch.equal(logits_of(first, tokenizer), logits_of(loaded, tokenizer))


def test_a_crash_between_the_renames_falls_back_to_the_old_checkpoint(tmp_path):
    save_tiny(tmp_path, seed=0, step=1)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")  # the moment before the new one moves in
    assert ckpt.find_checkpoint(tmp_path) == tmp_path / "checkpoint.old"
    save_tiny(tmp_path, seed=0, step=2)
    assert ckpt.find_checkpoint(tmp_path) == tmp_path / "checkpoint"
    assert not (tmp_path / "checkpoint.old").exists()
