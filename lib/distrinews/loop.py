"""The training loop's parts: one code path for one CPU process, one GPU, and N processes under torchrun.

`distrinews.train_ddp.train` strings them together: `prepare_run` -> `run_epoch` -> `run_step`, then
`end_epoch` (exact evaluation) and `save`. Everything a rank needs is in a `Run`; the lines that exist
because of DDP carry `# DDP:` comments.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from . import checkpoint as ckpt
from .batching import build_eval_loader, build_train_loader, padding_ratio, tokenize_split
from .config import ConfigError, TrainConfig, describe_batch, field_names
from .data import NewsData, NewsSplit, load_news, read_news_csv
from .distributed import DistContext, all_reduce_sum, barrier, restart_count
from .evaluation import evaluate
from .modeling import build_model, build_tokenizer, count_parameters
from .precision import autocast, make_scaler, resolve_precision


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs fully completed
    step: int = 0  # optimizer steps taken in total
    batches_done: int = 0  # this rank's micro-batches already consumed in the current epoch


@dataclass
class Run:
    config: TrainConfig
    ctx: DistContext
    model: torch.nn.Module  # possibly DDP-wrapped; `unwrapped` is the HF model underneath
    tokenizer: object
    train_loader: torch.utils.data.DataLoader
    eval_loader: torch.utils.data.DataLoader
    test_loader: torch.utils.data.DataLoader | None  # None when per-epoch evaluation already uses test
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    precision: str
    progress: Progress
    steps_per_epoch: int
    log: callable = print
    last_eval: dict = field(default_factory=dict)

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.model.module if isinstance(self.model, DDP) else self.model

    @property
    def out(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def total_steps(self) -> int:
        full = self.steps_per_epoch * self.config.epochs
        return min(full, self.config.max_steps) if self.config.max_steps else full

    @property
    def epoch_done(self) -> bool:
        return self.progress.batches_done == len(self.train_loader.batch_sampler)

    @property
    def finished(self) -> bool:
        return self.progress.epoch >= self.config.epochs or self.progress.step >= self.total_steps


def final_evaluation(run: Run) -> dict:
    """Test metrics: the last epoch's evaluation when it already used the test split, else a new pass."""
    final = run.last_eval if run.test_loader is None and run.last_eval else \
        evaluate(run.model, run.test_loader or run.eval_loader, run.ctx, run.precision)
    if run.ctx.is_main:
        (run.out / "eval.json").write_text(json.dumps(final, indent=2) + "\n")
        run.log(format_eval(final, "test"))
    return final


def end_epoch(run: Run) -> None:
    run.last_eval = evaluate(run.model, run.eval_loader, run.ctx, run.precision)  # DDP: all ranks, exact
    write_metrics(run, {"epoch": run.progress.epoch + 1, "step": run.progress.step, "eval": run.last_eval})
    run.progress = Progress(epoch=run.progress.epoch + 1, step=run.progress.step)


def prepare_run(config: TrainConfig, ctx: DistContext, log=print) -> Run:
    """Data, model, loaders, optimizer and schedule; resumed from a checkpoint when one exists."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    precision = resolve_precision(config.precision, ctx.device)
    log = log if ctx.is_main else (lambda *_: None)  # DDP: only rank 0 talks
    resume_from = ckpt.find_checkpoint(config.output_dir) if config.resume else None
    if resume_from:
        check_resumable(TrainConfig.load(resume_from / ckpt.CONFIG_FILE), config, resume_from)
    log(f"device: {ctx.device} | world size {ctx.world_size} | precision {precision} | backend {ctx.backend}")
    log(describe_batch(config, ctx.world_size))
    data = load_data(config, log)
    model, tokenizer = load_model(config, resume_from, ctx, log)
    train_loader, eval_loader, test_loader = build_loaders(data, tokenizer, config, ctx)
    steps_per_epoch = -(-len(train_loader.batch_sampler) // config.grad_accum_steps)
    total_steps = steps_per_epoch * config.epochs
    total_steps = min(total_steps, config.max_steps) if config.max_steps else total_steps
    optimizer = build_optimizer(model, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    scaler = make_scaler(precision, ctx.device)
    if resume_from:
        progress = restore_state(resume_from, optimizer, scheduler, scaler, ctx)
    else:
        progress = Progress()
        torch.manual_seed(config.seed + ctx.rank)  # dropout differs per rank, reproducibly
    log(f"steps: {steps_per_epoch} per epoch x {config.epochs} epochs, {total_steps} in all; padding "
        f"{config.padding}: {padding_ratio(train_loader):.3f} tokens processed per real token")
    if ctx.is_distributed:  # DDP: wrap after loading the checkpoint, so every rank starts from the same weights
        model = DDP(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if ctx.is_main:
        start_output_dir(config, fresh=not resume_from)
    return Run(config, ctx, model, tokenizer, train_loader, eval_loader, test_loader, optimizer, scheduler, scaler,
               precision, progress, steps_per_epoch, log)


def load_model(config: TrainConfig, resume_from: Path | None, ctx: DistContext, log):
    """The configured model, or the checkpoint's weights when resuming; fp32 master weights on the device."""
    source = str(resume_from) if resume_from else config.model_name
    tokenizer = build_tokenizer(source)
    model = build_model(source, tokenizer, seed=config.seed).float().to(ctx.device)  # AMP needs fp32 weights
    if config.no_dropout:
        disable_dropout(model)
    log(f"model: {config.model_name} ({count_parameters(model) / 1e6:.1f}M parameters)"
        + (f", resuming from {resume_from}" if resume_from else ""))
    return model, tokenizer


def build_loaders(data: NewsData, tokenizer, config: TrainConfig, ctx: DistContext):
    """Train loader (this rank's batches), per-epoch evaluation loader, and a test loader when they differ."""
    train_split, eval_split, test_split = tokenize_splits(data, tokenizer, config, ctx)
    pad, pin = tokenizer.pad_token_id, ctx.device.type == "cuda"
    train_loader = build_train_loader(train_split, config.padding, config.per_device_batch_size, config.max_length,
                                      config.seed, pad, ctx.rank, ctx.world_size, pin)
    eval_loaders = [None if split is None else
                    build_eval_loader(split, config.eval_batch_size, pad, ctx.rank, ctx.world_size, pin)
                    for split in (eval_split, test_split)]
    return train_loader, *eval_loaders


def start_output_dir(config: TrainConfig, fresh: bool) -> None:
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.json")
    if fresh:
        (out / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run, a fresh log


# Fields that may change between an interrupted run and its resumption; all others define the run.
RESUMABLE_CHANGES = {"output_dir", "log_every_steps", "save_every_steps", "resume", "num_threads", "device",
                     "eval_batch_size", "fail_at_step"}


def disable_dropout(model: torch.nn.Module) -> None:
    """Zero every dropout, whatever the architecture calls it: training becomes a pure function of the data."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def check_resumable(saved: TrainConfig, config: TrainConfig, where: Path) -> None:
    changed = [f"{name} {getattr(saved, name)!r} -> {getattr(config, name)!r}" for name in field_names()
               if name not in RESUMABLE_CHANGES and getattr(saved, name) != getattr(config, name)]
    if changed:
        raise ConfigError(f"{where} is a checkpoint of a different run ({'; '.join(changed)}): "
                          f"pass --resume false to start over in that folder, or choose another --output-dir")


def load_data(config: TrainConfig, log) -> NewsData:
    return load_news(
        config.data_source, train_files=config.train_files, test_file=config.test_file or None,
        max_train_rows=config.max_train_rows or None, max_test_rows=config.max_test_rows or None,
        val_fraction=config.val_fraction, seed=config.seed, synthetic_train_size=config.synthetic_train_size,
        synthetic_test_size=config.synthetic_test_size, bad_rows=config.bad_rows, log=log,
    )


def load_test_split(config: TrainConfig, log) -> NewsSplit:
    """`config.test_file` when one is named, else the test split of the configured source (same caps and seed)."""
    if not config.test_file:
        return load_data(config, log).test
    texts, labels, skipped = read_news_csv(config.test_file, config.bad_rows)
    log(f"data: {config.test_file} | test {len(labels)}" + (f" ({skipped} bad rows skipped)" if skipped else ""))
    return NewsSplit("test", tuple(texts), tuple(labels))


def tokenize_splits(data: NewsData, tokenizer, config: TrainConfig, ctx: DistContext):
    """Train, per-epoch evaluation and (when they differ) test splits, tokenized through the cache."""
    def tokenize_all():
        splits = [data.train, data.validation or data.test] + ([data.test] if data.validation else [])
        return [tokenize_split(tokenizer, split, config.max_length) for split in splits]

    if ctx.is_local_main:
        tokenized = tokenize_all()  # DDP: one rank per machine fills the cache ...
    barrier(ctx)  # DDP: ... while the others wait, then read it
    if not ctx.is_local_main:
        tokenized = tokenize_all()
    train_split, eval_split = tokenized[:2]
    return train_split, eval_split, (tokenized[2] if len(tokenized) == 3 else None)


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD); biases and LayerNorm weights are not decayed (they set scale and offset, not capacity)."""
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate)
    # The fused CUDA kernel updates every tensor in one launch (the Trainer's default on GPU too); on a CPU the
    # fused path was faster alone but several times slower on a busy machine, so CPUs keep the default.
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=on_cuda or None)


def restore_state(checkpoint_dir: Path, optimizer, scheduler, scaler, ctx: DistContext) -> Progress:
    state = ckpt.load_training_state(checkpoint_dir, ctx.device)  # map_location: this rank's device
    if state["world_size"] != ctx.world_size:
        raise ConfigError(f"{checkpoint_dir} was written by {state['world_size']} processes and this run has "
                          f"{ctx.world_size}: its position in the epoch counts batches per rank, so resume with "
                          f"the same number of processes, or pass --resume false to start over")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    ckpt.restore_rng_state(state["rng"][ctx.rank])  # DDP: each rank gets back its own dropout stream
    return Progress(**state["progress"])


def run_epoch(run: Run) -> None:
    """This rank's batches from where the run stands, to the epoch's end or max_steps."""
    sampler = run.train_loader.batch_sampler
    sampler.set_epoch(run.progress.epoch, skip_batches=run.progress.batches_done)  # DDP: new shuffle, same on all ranks
    run.model.train()
    batches = iter(run.train_loader)
    remaining = len(sampler) - run.progress.batches_done
    steps_left = min(-(-remaining // run.config.grad_accum_steps), run.total_steps - run.progress.step)
    bar = tqdm(total=run.steps_per_epoch, initial=run.steps_per_epoch - steps_left, mininterval=bar_interval(),
               desc=f"epoch {run.progress.epoch + 1}/{run.config.epochs}", disable=not run.ctx.is_main)
    meter = Throughput(run.ctx)
    for _ in range(steps_left):
        maybe_fail(run)
        micro = [next(batches) for _ in range(min(run.config.grad_accum_steps, remaining))]
        remaining -= len(micro)
        loss = run_step(run, micro)
        meter.add(micro)
        run.progress.step += 1
        run.progress.batches_done += len(micro)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if run.progress.step % run.config.log_every_steps == 0:
            write_metrics(run, {"epoch": run.progress.epoch + 1, "step": run.progress.step,
                                "loss": mean_over_ranks(loss, run.ctx), "lr": run.scheduler.get_last_lr()[0],
                                **meter.read()})
        if run.config.save_every_steps and run.progress.step % run.config.save_every_steps == 0 and remaining:
            save(run)
    bar.close()


def maybe_fail(run: Run) -> None:
    """Fault injection for the elastic-restart lesson: the last rank dies hard, on the first attempt only."""
    cfg, ctx = run.config, run.ctx
    if cfg.fail_at_step and run.progress.step + 1 == cfg.fail_at_step and restart_count() == 0 \
            and ctx.rank == ctx.world_size - 1:
        print(f"rank {ctx.rank}: injected failure before step {cfg.fail_at_step} (--fail-at-step)",
              file=sys.stderr, flush=True)
        os._exit(1)  # no cleanup, as a real crash; torchrun notices and (with --max-restarts) restarts all


def mean_over_ranks(value: float, ctx: DistContext) -> float:
    total = all_reduce_sum(torch.tensor(value, dtype=torch.float64, device=ctx.device), ctx)  # DDP: every rank
    return float(total) / ctx.world_size


def bar_interval() -> float:
    """Seconds between progress-bar redraws: live in a terminal or notebook, sparse in a log file.

    A command launched from a notebook cell (`!torchrun ...`) sees a terminal, but every redraw is kept in the
    cell's output: 2 s keeps it short.
    """
    if os.environ.get("DISTRINEWS_NOTEBOOK"):
        return 2.0
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return 0.1 if interactive else 15.0


def run_step(run: Run, micro_batches: list[dict]) -> float:
    """One optimizer step over grad_accum_steps micro-batches; returns the mean loss."""
    total = 0.0
    for i, batch in enumerate(micro_batches):
        is_last = i == len(micro_batches) - 1
        sync = nullcontext() if is_last or not isinstance(run.model, DDP) else run.model.no_sync()
        with sync:  # DDP: skip the gradient all-reduce until the last micro-batch of the step
            loss = forward_loss(run, batch) / len(micro_batches)
            run.scaler.scale(loss).backward()  # DDP: on the last micro-batch this also averages gradients
        total += loss.item()
    if run.config.max_grad_norm:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return total


def forward_loss(run: Run, batch: dict) -> torch.Tensor:
    device = run.ctx.device
    with autocast(run.precision, device):
        out = run.model(input_ids=batch["input_ids"].to(device, non_blocking=True),
                        attention_mask=batch["attention_mask"].to(device, non_blocking=True),
                        labels=batch["labels"].to(device, non_blocking=True))
    return out.loss


class Throughput:
    """Samples and real (non-padding) tokens per second, summed over all ranks."""

    def __init__(self, ctx: DistContext):
        self.ctx, self.start, self.samples, self.tokens = ctx, time.perf_counter(), 0, 0

    def add(self, micro_batches: list[dict]) -> None:
        self.samples += sum(len(b["labels"]) for b in micro_batches)
        self.tokens += sum(int(b["attention_mask"].sum()) for b in micro_batches)

    def read(self) -> dict:
        counts = torch.tensor([self.samples, self.tokens], dtype=torch.float64, device=self.ctx.device)
        all_reduce_sum(counts, self.ctx)  # DDP: the job's throughput is the sum over ranks
        seconds = max(time.perf_counter() - self.start, 1e-9)
        self.start, self.samples, self.tokens = time.perf_counter(), 0, 0
        return {"samples_per_s": float(counts[0]) / seconds, "tokens_per_s": float(counts[1]) / seconds}


def save(run: Run) -> None:
    """Checkpoint on rank 0 with every rank's RNG state; all ranks wait until it is on disk."""
    rng = [None] * run.ctx.world_size
    if run.ctx.is_distributed:
        dist.all_gather_object(rng, ckpt.capture_rng_state())  # DDP: a collective, so every rank calls it
    else:
        rng = [ckpt.capture_rng_state()]
    if run.ctx.is_main:
        state = {"progress": vars(run.progress).copy(), "optimizer": run.optimizer.state_dict(),
                 "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "rng": rng,
                 "world_size": run.ctx.world_size}
        ckpt.save_checkpoint(run.out, run.unwrapped, run.tokenizer, state, run.config)  # DDP: unwrapped weights
    barrier(run.ctx)  # DDP: nobody races ahead (or exits) before the checkpoint is complete


def write_metrics(run: Run, record: dict) -> None:
    if not run.ctx.is_main:
        return
    with open(run.out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    if "eval" in record:
        run.log(format_eval(record["eval"], f"epoch {record['epoch']} eval"))


def format_eval(metrics: dict, title: str) -> str:
    return (f"{title}: accuracy {metrics['accuracy']:.4f} | macro-F1 {metrics['macro_f1']:.4f} | "
            f"loss {metrics['loss']:.4f} | n={metrics['n_examples']}")


def evaluate_checkpoint(checkpoint_dir: str | Path, config: TrainConfig, ctx: DistContext | None = None,
                        log=print) -> dict:
    """Evaluate a saved checkpoint on `config.test_file` when given, else on the test split of its source."""
    ctx = ctx or DistContext()
    log = log if ctx.is_main else (lambda *_: None)
    tokenizer = build_tokenizer(str(checkpoint_dir))
    model = build_model(str(checkpoint_dir), tokenizer).to(ctx.device)
    test = load_test_split(config, log)
    loader = build_eval_loader(tokenize_split(tokenizer, test, config.max_length), config.eval_batch_size,
                               tokenizer.pad_token_id, ctx.rank, ctx.world_size)
    return evaluate(model, loader, ctx, resolve_precision(config.precision, ctx.device))
