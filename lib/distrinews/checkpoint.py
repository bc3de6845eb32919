"""Checkpoints: a `from_pretrained`-loadable directory plus the training state needed to resume.

Layout of `OUTPUT_DIR/checkpoint/`: `model.safetensors`, `config.json`, the tokenizer files,
`distrinews_config.json` (the run's TrainConfig) and `training_state.pt` (optimizer, scheduler, scaler,
epoch, step, sampler position, every rank's RNG states).

A save is atomic: it is written to `checkpoint.tmp/`, the previous checkpoint is renamed to
`checkpoint.old/`, the new one renamed into place, and only then is the old one deleted. A crash at any
moment leaves either `checkpoint/` or `checkpoint.old/` complete, and `find_checkpoint` returns it.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from .config import TrainConfig

CHECKPOINT = "checkpoint"
STATE_FILE = "training_state.pt"
CONFIG_FILE = "distrinews_config.json"


def save_checkpoint(output_dir: str | Path, model, tokenizer, state: dict, config: TrainConfig) -> Path:
    """Write model, tokenizer, config and training state; returns the final directory."""
    output_dir = Path(output_dir)
    final, tmp, old = (output_dir / f"{CHECKPOINT}{suffix}" for suffix in ("", ".tmp", ".old"))
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a save that died are never trusted
    tmp.mkdir(parents=True)
    hf_logging.disable_progress_bar()  # a bar per save would bury the training log
    model.save_pretrained(tmp)  # safetensors weights + config.json with the label names
    tokenizer.save_pretrained(tmp)
    config.save(tmp / CONFIG_FILE)
    torch.save(state, tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def require_checkpoint(path: str | Path) -> Path:
    """A directory `from_pretrained` can load, or a FileNotFoundError that says what to pass instead."""
    checkpoint = Path(path)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint directory (no config.json); "
                                f"pass the checkpoint/ folder a training run wrote, e.g. runs/smoke/checkpoint")
    return checkpoint


def find_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under output_dir, or None."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        candidate = Path(output_dir) / name
        if (candidate / STATE_FILE).exists():
            return candidate
    return None


def load_training_state(checkpoint_dir: str | Path, device: torch.device) -> dict:
    """Read the training state without unpickling arbitrary objects (`weights_only=True`)."""
    return torch.load(Path(checkpoint_dir) / STATE_FILE, map_location=device, weights_only=True)


def capture_rng_state() -> dict:
    """This process's random generators: Python's and torch's (CPU and, when present, CUDA)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
