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


def run_state(precision: str, fused, scaler_on: bool):
    """A tiny model's optimizer, schedule and scaler as train_*.py builds them, one step taken."""
    from transformers import get_linear_schedule_with_warmup

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, 1, 10)
    scaler = torch.amp.GradScaler("cpu", enabled=scaler_on)
    scaler.scale(model(torch.ones(1, 3)).sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return optimizer, scheduler, scaler


def save_state(tmp_path, precision, fused, scaler_on):
    optimizer, scheduler, scaler = run_state(precision, fused, scaler_on)
    model, tokenizer = build_model_and_tokenizer("tiny")
    state = ckpt.training_state(optimizer, scheduler, scaler, precision, 0, 1, 1, [ckpt.capture_rng_state()])
    return ckpt.save_checkpoint(tmp_path, model, tokenizer, state, PRESETS["smoke"])


def test_a_cpu_checkpoint_resumes_in_fp16_on_a_gpu_with_its_own_kernels_and_a_fresh_scaler(tmp_path):
    """Written on a CPU (fp32: empty scaler state, fused=None), resumed where fp16 and fused AdamW apply (a T4)."""
    saved = save_state(tmp_path, "fp32", fused=None, scaler_on=False)
    optimizer, scheduler, scaler = run_state("fp16", fused=True, scaler_on=True)
    said = []
    position = ckpt.restore_training_state(saved, optimizer, scheduler, scaler, "fp16", torch.device("cpu"),
                                           log=said.append)
    assert position == (0, 1, 1)
    assert all(group["fused"] is True for group in optimizer.param_groups)  # not the CPU run's None
    assert scaler.is_enabled() and scaler.get_scale() > 0
    assert said == [f"resuming from {saved}",
                    "precision: the checkpoint trained in fp32, this run goes on in fp16 on cpu, with a fresh loss scaler"]


def test_a_fp16_checkpoint_resumed_in_bf16_says_so_and_how_to_keep_fp16(tmp_path, monkeypatch):
    """A T4 run (fp16) resumed on an H100, where auto picks bf16: said, with the option that keeps fp16."""
    saved = save_state(tmp_path, "fp16", fused=None, scaler_on=True)
    on_cpu = ckpt.load_training_state
    monkeypatch.setattr(ckpt, "load_training_state", lambda folder, device: on_cpu(folder, torch.device("cpu")))
    optimizer, scheduler, scaler = run_state("bf16", fused=None, scaler_on=False)
    said = []
    ckpt.restore_training_state(saved, optimizer, scheduler, scaler, "bf16", torch.device("cuda", 0), log=said.append)
    assert said == [f"resuming from {saved}",
                    "precision: the checkpoint trained in fp16, this run goes on in bf16 on cuda:0 "
                    "(pass --precision fp16 to keep it)"]
    assert not scaler.is_enabled()


def test_an_fp16_checkpoint_resumed_in_fp16_keeps_its_loss_scale(tmp_path):
    saved = save_state(tmp_path, "fp16", fused=None, scaler_on=True)
    written = ckpt.load_training_state(saved, torch.device("cpu"))["scaler"]["scale"]
    optimizer, scheduler, scaler = run_state("fp16", fused=None, scaler_on=True)
    scaler.update(123.0)
    said = []
    ckpt.restore_training_state(saved, optimizer, scheduler, scaler, "fp16", torch.device("cpu"), log=said.append)
    assert scaler.get_scale() == written and said == [f"resuming from {saved}"]  # nothing about precision
