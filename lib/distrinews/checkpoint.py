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

from .config import ConfigError, TrainConfig
from .distributed import group_rank_and_size

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


def checkpoint_step(checkpoint_dir: str | Path) -> int:
    """The optimizer step a checkpoint was saved at, read without loading the optimizer state (mmap)."""
    state = torch.load(Path(checkpoint_dir) / STATE_FILE, map_location="cpu", weights_only=True, mmap=True)
    return state["progress"]["step"]


def agree_on_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint to resume from, decided by global rank 0 (its writer) and the same on every rank.

    On several machines without a shared disk only rank 0's machine has the checkpoint: a rank deciding alone
    would start fresh while rank 0 resumes, their steps would differ and the job would hang until the timeout.
    So every rank reports what it sees (checkpoint and step) and, when rank 0 resumes, every rank that cannot
    see the same checkpoint makes all of them stop with the same error, before any training collective.
    """
    found = find_checkpoint(output_dir)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return found
    views = [None] * torch.distributed.get_world_size()
    mine = (found.name, checkpoint_step(found)) if found else None
    torch.distributed.all_gather_object(views, mine)  # DDP: every rank learns rank 0's decision and the others'
    if views[0] is None:  # rank 0 starts fresh, so does everyone (a stale copy elsewhere is not used)
        return None
    lacking = {rank: view for rank, view in enumerate(views) if view != views[0]}
    if lacking:
        seen = "; ".join(f"rank {rank} sees {f'{v[0]} at step {v[1]}' if v else 'no checkpoint'}"
                         for rank, v in lacking.items())
        raise ConfigError(f"rank 0 resumes from {Path(output_dir) / views[0][0]} at step {views[0][1]}, but in "
                          f"its own {output_dir}: {seen}. On several machines put --output-dir on storage every "
                          f"machine mounts (NFS, a shared volume) or copy the checkpoint to each machine; or pass "
                          f"--resume false to start over")
    return found
def load_training_state(checkpoint_dir: str | Path, device: torch.device) -> dict:
    """Read the training state without unpickling arbitrary objects (`weights_only=True`)."""
    return torch.load(Path(checkpoint_dir) / STATE_FILE, map_location=device, weights_only=True)


def training_state(optimizer, scheduler, scaler, precision: str, epochs_done: int, step: int, batches_done: int,
                   rng: list[dict]) -> dict:
    """Everything besides the weights that a run needs to continue as if it had never stopped.

    Args:
        precision: the resolved precision (fp32, fp16 or bf16), so a resume on other hardware can adapt.
        batches_done: this rank's micro-batches already consumed in the current epoch (0 at an epoch's end).
        rng: every rank's `capture_rng_state()`, indexed by rank.
    """
    return {"progress": {"epoch": epochs_done, "step": step, "batches_done": batches_done},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "precision": precision, "rng": rng, "world_size": len(rng)}


def restore_training_state(checkpoint_dir: str | Path | None, optimizer, scheduler, scaler, precision: str,
                           device: torch.device, log=print) -> tuple[int, int, int]:
    """Load optimizer, schedule, scaler and this rank's RNG state; returns (epochs done, step, batches done),
    which is (0, 0, 0) for a fresh start (`checkpoint_dir` None: nothing is loaded).

    Under DDP the rank and world size come from the process group: each rank takes back its own RNG state
    (`train_ddp.py` saves one per rank), and a run with another number of processes is refused. A checkpoint may
    come from other hardware (a CPU run resumed on a T4, a T4 run on an H100): the optimizer keeps this machine's
    kernel choice (`fused`, `foreach`), and the loss scaler's state is used only when both runs compute in fp16.
    A change of precision is reported, never silent.
    """
    if not checkpoint_dir:
        return 0, 0, 0
    log(f"resuming from {checkpoint_dir}")
    rank, world_size = group_rank_and_size()
    state = load_training_state(checkpoint_dir, device)  # map_location: this rank's device
    if state["world_size"] != world_size:
        raise ConfigError(f"{checkpoint_dir} was written by {state['world_size']} processes and this run has "
                          f"{world_size}: its position in the epoch counts batches per rank, so resume with "
                          f"the same number of processes, or pass --resume false to start over")
    kernels = [{key: group[key] for key in ("fused", "foreach", "capturable") if key in group}
               for group in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    for group, kept in zip(optimizer.param_groups, kernels):
        group.update(kept)  # load_state_dict copies the saved run's choices, e.g. fused=None from a CPU run
    scheduler.load_state_dict(state["scheduler"])
    saved = state.get("precision", "fp16" if state["scaler"] else "fp32")  # checkpoints before it was recorded
    if saved == precision == "fp16":
        scaler.load_state_dict(state["scaler"])
    elif saved != precision:
        fresh = ", with a fresh loss scaler" if precision == "fp16" else ""
        keep = f" (pass --precision {saved} to keep it)" if device.type == "cuda" else ""
        log(f"precision: the checkpoint trained in {saved}, this run goes on in {precision} on {device}{fresh}{keep}")
    restore_rng_state(state["rng"][rank])  # each rank gets back its own dropout stream
    progress = state["progress"]
    return progress["epoch"], progress["step"], progress["batches_done"]


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
