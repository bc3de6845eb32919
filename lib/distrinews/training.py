"""Parts the training programs use: data and model for a run, resume checks, log lines, fault injection.

The loop itself lives in the programs a learner reads, `train_single.py` and `train_ddp.py`; this module holds
the pieces they call that are not the lesson (file formats, refusals with helpful messages, the crash that
notebook 06 recovers from). `evaluate_checkpoint` evaluates a saved model outside training.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from .batching import TokenizedSplit, build_eval_loader, tokenize_split
from .checkpoint import CONFIG_FILE, agree_on_checkpoint
from .config import ConfigError, TrainConfig, describe_batch, field_names
from .data import NewsData, NewsSplit, load_news, read_news_csv
from .distributed import DistContext, group_rank_and_size, restart_count
from .evaluation import evaluate
from .modeling import build_model, build_tokenizer
from .precision import resolve_precision


def load_data(config: TrainConfig, log=print) -> NewsData:
    """The run's train, validation and test splits, from the configured source (files, Kaggle, hub, synthetic)."""
    return load_news(
        config.data_source, train_files=config.train_files, test_file=config.test_file or None,
        max_train_rows=config.max_train_rows or None, max_test_rows=config.max_test_rows or None,
        val_fraction=config.val_fraction, seed=config.seed, synthetic_train_size=config.synthetic_train_size,
        synthetic_test_size=config.synthetic_test_size, bad_rows=config.bad_rows, log=log,
    )


class Splits(NamedTuple):
    train: TokenizedSplit
    eval: TokenizedSplit  # evaluated after every epoch: the validation split (the test split when none)
    test: TokenizedSplit  # evaluated once, at the end
    pad_id: int  # the tokenizer's padding token, which batching pads with


def tokenize_splits(data: NewsData, tokenizer, max_length: int) -> Splits:
    """Token ids for the three splits, through the on-disk cache (a second call reads it)."""
    train, test = (tokenize_split(tokenizer, split, max_length) for split in (data.train, data.test))
    evaluation = tokenize_split(tokenizer, data.validation, max_length) if data.validation else test
    return Splits(train, evaluation, test, tokenizer.pad_token_id)


def load_model(source, tokenizer, config: TrainConfig, device: torch.device) -> torch.nn.Module:
    """The classifier from `source` (a model name or a checkpoint), in fp32 on `device`; --no-dropout applied.

    fp32 master weights: autocast computes in 16 bits where that is safe, the optimizer updates fp32 weights.
    """
    model = build_model(str(source), tokenizer, seed=config.seed).float().to(device)
    if config.no_dropout:  # for the equivalence checks: training becomes a function of the data
        disable_dropout(model)
    return model


def disable_dropout(model: torch.nn.Module) -> None:
    """Zero every dropout, whatever the architecture calls it: training becomes a pure function of the data."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


# Fields that may change between an interrupted run and its resumption; all others define the run.
RESUMABLE_CHANGES = {"output_dir", "log_every_steps", "save_every_steps", "resume", "num_threads", "device",
                     "eval_batch_size", "fail_at_step", "precision"}


def check_resumable(checkpoint_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume a checkpoint written by a different recipe (other data, model, batch, schedule...)."""
    saved = TrainConfig.load(Path(checkpoint_dir) / CONFIG_FILE)
    changed = [f"{name} {getattr(saved, name)!r} -> {getattr(config, name)!r}" for name in field_names()
               if name not in RESUMABLE_CHANGES and getattr(saved, name) != getattr(config, name)]
    if changed:
        raise ConfigError(f"{checkpoint_dir} is a checkpoint of a different run ({'; '.join(changed)}): "
                          f"pass --resume false to start over in that folder, or choose another --output-dir")


def resume_point(config: TrainConfig) -> Path | None:
    """The checkpoint this run goes on from, or None to start fresh (--resume false, or nothing saved yet).

    A checkpoint of another recipe is refused (check_resumable). Under DDP every rank gets rank 0's answer, and
    a rank that cannot see rank 0's checkpoint stops them all (checkpoint.agree_on_checkpoint).
    """
    if not config.resume:
        return None
    found = agree_on_checkpoint(config.output_dir)
    if found:
        check_resumable(found, config)
    return found


def start_output_dir(config: TrainConfig, fresh: bool, create: bool = True) -> Path:
    """The run folder; with `create` (one process per job) make it and write config.json, and start a fresh
    metrics.jsonl when the run is fresh."""
    out = Path(config.output_dir)
    if not create:
        return out
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.json")
    if fresh:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    return out


def write_metrics(out: Path, record: dict) -> None:
    """Append one JSON line to OUT/metrics.jsonl (plots.load_metrics reads it back)."""
    with open(Path(out) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def format_header(config: TrainConfig, device: torch.device, precision: str, threads: int) -> str:
    """The lines a run prints first: its config, its device (and process group's backend and size), its batch
    arithmetic."""
    group = torch.distributed.is_available() and torch.distributed.is_initialized()
    backend = f" | backend {torch.distributed.get_backend()}" if group else ""
    world_size = group_rank_and_size()[1]
    return "\n".join([
        "config: " + " ".join(f"{k}={v}" for k, v in config.to_dict().items()),
        f"device: {device} | world size {world_size} | precision {precision}{backend} | {threads} CPU threads",
        describe_batch(config, world_size)])


def format_eval(metrics: dict, title: str) -> str:
    return (f"{title}: accuracy {metrics['accuracy']:.4f} | macro-F1 {metrics['macro_f1']:.4f} | "
            f"loss {metrics['loss']:.4f} | n={metrics['n_examples']}")


def make_optimizer(config: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with weight decay on the weight matrices only; plain SGD for the equivalence checks.

    Biases and LayerNorm weights (the 1-D tensors) set offsets and scales rather than capacity, so they get no
    decay (the BERT recipe). `fused=True` on a GPU runs the update as a few multi-tensor kernels instead of a
    loop of small ones; elsewhere torch picks its default. `--optimizer sgd` exists for the checks that compare
    a DDP step with a one-process step (tests/test_ddp.py, gpu-check): an SGD update is linear in the gradient.
    """
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate)
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=device.type == "cuda" or None)


def maybe_crash(config: TrainConfig, step: int) -> None:
    """Fault injection (--fail-at-step N): the last rank dies hard before step N, on the first attempt only.

    One rank of a DDP job (the last, so not the one that logs) fails as a real crash would: torchrun notices,
    stops the others, and with --max-restarts starts every rank again (notebook 06).
    """
    rank, world_size = group_rank_and_size()
    if config.fail_at_step and step + 1 == config.fail_at_step and restart_count() == 0 and rank == world_size - 1:
        print(f"rank {rank}: injected failure before step {config.fail_at_step} (--fail-at-step)",
              file=sys.stderr, flush=True)
        os._exit(1)  # no cleanup, as in a real crash


def progress_interval() -> float:
    """Seconds between progress-bar redraws: live in a terminal or notebook, sparse in a log file.

    A command launched from a notebook cell (`!torchrun ...`) sees a terminal, but every redraw is kept in the
    cell's output: 2 s keeps it short.
    """
    if os.environ.get("DISTRINEWS_NOTEBOOK"):
        return 2.0
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return 0.1 if interactive else 15.0


def load_test_split(config: TrainConfig, log=print) -> NewsSplit:
    """`config.test_file` when one is named, else the test split of the configured source (same caps and seed)."""
    if not config.test_file:
        return load_data(config, log).test
    texts, labels, skipped = read_news_csv(config.test_file, config.bad_rows)
    log(f"data: {config.test_file} | test {len(labels)}" + (f" ({skipped} bad rows skipped)" if skipped else ""))
    return NewsSplit("test", tuple(texts), tuple(labels))


def evaluate_checkpoint(checkpoint_dir: str | Path, config: TrainConfig, ctx: DistContext | None = None,
                        log=print) -> dict:
    """Evaluate a saved checkpoint on `config.test_file` when given, else on the test split of its source."""
    ctx = ctx or DistContext()
    log = log if ctx.is_main else (lambda *_: None)
    tokenizer = build_tokenizer(str(checkpoint_dir))
    model = build_model(str(checkpoint_dir), tokenizer).to(ctx.device)
    test = load_test_split(config, log)
    loader = build_eval_loader(tokenize_split(tokenizer, test, config.max_length), config.eval_batch_size,
                               tokenizer.pad_token_id, ctx.rank, ctx.world_size)  # DDP: an unpadded shard per rank
    return evaluate(model, loader, ctx.device, resolve_precision(config.precision, ctx.device))
