"""`distrinews bench train|compare-trainer|allreduce`: what a training step costs, alone and under DDP.

    distrinews bench train --preset kaggle-t4 --padding max_length dynamic grouped --precision fp32 fp16
    torchrun --standalone --nproc_per_node=2 -m distrinews bench train --preset kaggle-t4x2 \\
        --bucket-cap-mb 25 100 --comm-hook none fp16            # DDP knobs, summed over both GPUs
    distrinews bench train --preset smoke --model tiny --steps 5   # toy size, seconds on a CPU
    distrinews bench compare-trainer --preset smoke --model tiny    # this library's loop vs HF Trainer
    torchrun --standalone --nproc_per_node=2 -m distrinews bench allreduce --max-mb 64

Timing runs the training program's own step (`train_ddp.train_step`, over the loaders, optimizer, precision and
scaler that `train_ddp.py` builds), so a figure here is what `distrinews train` gets.
The model defaults to DistilBERT-base with random weights (timing only; the output says so). Rows go to
RESULTS_DIR/train.csv and allreduce.csv (`distrinews.results`), which notebook 07 plots.
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import json
import tempfile
import time
from dataclasses import dataclass

import torch

from .results import DEFAULT_RESULTS_DIR, append_rows, describe_hardware, timestamp

# Options that vary between the measured variants: several values each, one row per combination.
AXES = ("padding", "precision", "grad_accum_steps")
# TrainConfig fields with no meaning for a timing run (or replaced by bench options such as --model).
NOT_OPTIONS = {"model_name", "output_dir", "log_every_steps", "save_every_steps", "resume", "fail_at_step",
               "epochs", "max_steps", "eval_batch_size", *AXES}
DEFAULT_BUCKET_MB = 25.0  # torch's own DDP default
DISTILBERT_PARAMETERS = 66_956_548  # DistilBERT-base with a 4-class head: its fp32 gradient is ~268 MB


def add_commands(tasks) -> None:
    """Register `bench train`, `bench compare-trainer` and `bench allreduce`."""
    add_train_command(tasks)
    add_compare_command(tasks)
    add_allreduce_command(tasks)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="data and recipe to time (default: the hardware's, as the notebooks pick)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="a checkpoint directory to time")
    source.add_argument("--model", help="a model name (hub id, 'minilm', 'tiny'); default: DistilBERT-base "
                                        "architecture with random weights")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (kernels, allocator)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object as the last line")


def add_config_fields(parser: argparse.ArgumentParser) -> None:
    """TrainConfig fields as single-value overrides of the preset (the data, batch, length, threads...)."""
    from .config import add_config_options

    add_config_options(parser, skip=NOT_OPTIONS)


def add_train_command(tasks) -> None:
    train = tasks.add_parser("train", help="training throughput (samples/s, tokens/s) for padding, precision, "
                                           "accumulation and DDP variants", allow_abbrev=False)
    add_model_options(train)
    train.add_argument("--steps", type=int, default=30, help="timed optimizer steps per variant (default 30)")
    train.add_argument("--padding", nargs="+", choices=("grouped", "dynamic", "max_length"),
                       help="padding strategies to time (default: the preset's)")
    train.add_argument("--precision", nargs="+", choices=("auto", "fp32", "fp16", "bf16"),
                       help="precisions to time; fp16 and bf16 need a GPU (default: the preset's)")
    train.add_argument("--grad-accum-steps", nargs="+", type=int, help="micro-batches per step (default: preset's)")
    train.add_argument("--bucket-cap-mb", nargs="+", type=float, default=[DEFAULT_BUCKET_MB],
                       help="DDP gradient bucket sizes in MB, under torchrun (default 25, torch's)")
    train.add_argument("--comm-hook", nargs="+", choices=("none", "fp16"), default=["none"],
                       help="DDP gradient communication: none (fp32) or fp16 (compress before all-reduce)")
    train.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="where train.csv gets the rows")
    train.add_argument("--label", help="hardware label for the rows (default: the GPU or CPU name)")
    add_config_fields(train)
    train.set_defaults(command=command_bench_train)


def add_compare_command(tasks) -> None:
    compare = tasks.add_parser("compare-trainer", help="this library's training loop vs the Hugging Face Trainer, "
                                                       "same model, data, batch, padding and precision",
                               allow_abbrev=False)
    add_model_options(compare)
    compare.add_argument("--rounds", type=int, default=3, help="timed epochs per side, taking turns (default 3)")
    compare.add_argument("--padding", choices=("grouped", "dynamic", "max_length"), help="default: the preset's")
    compare.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), help="default: the preset's")
    compare.add_argument("--grad-accum-steps", type=int, help="micro-batches per step (default: the preset's)")
    compare.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="where compare_trainer.csv gets a row")
    compare.add_argument("--label", help="hardware label for the row (default: the GPU or CPU name)")
    add_config_fields(compare)
    compare.set_defaults(command=command_compare_trainer)


def add_allreduce_command(tasks) -> None:
    allreduce = tasks.add_parser("allreduce", help="all-reduce algorithm and bus bandwidth across message sizes "
                                                   "(under torchrun)", allow_abbrev=False)
    allreduce.add_argument("--max-mb", type=float, default=DISTILBERT_PARAMETERS * 4 / 1e6,
                           help="largest message in MB (default: DistilBERT-base's fp32 gradient, ~268 MB)")
    allreduce.add_argument("--min-kb", type=float, default=4.0, help="smallest message in KB (default 4)")
    allreduce.add_argument("--seconds", type=float, default=0.3, help="time to spend per size (default 0.3)")
    allreduce.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                           help="auto: NCCL on GPUs when visible, else gloo on CPU")
    allreduce.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="where allreduce.csv gets the rows")
    allreduce.add_argument("--label", help="hardware label for the rows (default: the GPU or CPU name)")
    allreduce.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    allreduce.set_defaults(command=command_bench_allreduce)


# ---- shared set-up ---------------------------------------------------------------------------


def bench_config(args: argparse.Namespace):
    """The preset (or the hardware's choice) with this command's config-field overrides."""
    from .config import apply_overrides, field_names, get_preset
    from .course import choose_preset

    preset = args.preset or choose_preset()
    overrides = {name: getattr(args, name) for name in field_names() if name not in NOT_OPTIONS and hasattr(args, name)}
    if "train_files" in overrides:
        overrides["train_files"] = tuple(overrides["train_files"])
    # Timing never resumes, checkpoints or fails on purpose; metrics.jsonl goes to a throwaway folder.
    fixed = {"resume": False, "save_every_steps": 0, "fail_at_step": 0, "max_steps": 0}
    return preset, apply_overrides(get_preset(preset), overrides).replace(**fixed)


def load_bench_model(args: argparse.Namespace):
    """(model on CPU in fp32, tokenizer, name, random_weights) for --checkpoint, --model or the default."""
    from .modeling import build_timing_model
    from .checkpoint import require_checkpoint

    source = str(require_checkpoint(args.checkpoint)) if args.checkpoint else args.model
    torch.manual_seed(0)  # the same random weights on every rank and every run
    model, tokenizer, name, random_weights = build_timing_model(source)
    return model, tokenizer, name, random_weights


def resolve_variants(values: list[str], device) -> tuple[list[str], list[str]]:
    """Precisions this device runs (deduplicated after resolving auto), and notes on the ones skipped."""
    from .precision import PrecisionError, resolve_precision

    kept, skipped = [], []
    for value in values:
        try:
            resolved = resolve_precision(value, device)
        except PrecisionError as err:
            skipped.append(f"precision {value} skipped: {err}")
            continue
        if resolved not in kept:
            kept.append(resolved)
    return kept, skipped


@dataclass
class StepSetup:
    """What `train_ddp.train_step` needs, built as train_ddp.py builds it, around an already built model."""

    model: torch.nn.Module  # DDP-wrapped under torchrun
    train_loader: torch.utils.data.DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    config: object  # its precision is the variant's, resolved
    device: torch.device

    def step(self, micro_batches: list[dict]) -> torch.Tensor:
        from .train_ddp import train_step

        return train_step(self.model, micro_batches, self.optimizer, self.scheduler, self.scaler,
                          self.config.precision, self.device, self.config.max_grad_norm)

    def optimizer_steps_taken(self) -> int:
        """Updates the optimizer really applied (the scaler skips the ones whose fp16 gradients overflowed)."""
        state = self.optimizer.state.get(next(iter(self.optimizer.param_groups[0]["params"])), {})
        return int(state.get("step", 0))


def build_step(config, ctx, model, tokenizer, data, precision: str, total_steps: int,
               bucket_cap_mb: float | None = None, comm_hook: str | None = None) -> StepSetup:
    """Loaders, optimizer, schedule and scaler as in train_ddp.py; the DDP knobs being measured on top."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    from transformers import get_linear_schedule_with_warmup

    from .batching import build_train_loader, tokenize_split
    from .precision import make_scaler

    config = config.replace(precision=precision)
    train = tokenize_split(tokenizer, data.train, config.max_length)
    loader = build_train_loader(train, config.padding, config.per_device_batch_size, config.max_length, config.seed,
                                tokenizer.pad_token_id, ctx.rank, ctx.world_size, ctx.device.type == "cuda",
                                balanced=config.balanced_steps)
    decay = [p for p in model.parameters() if p.ndim >= 2]  # the two AdamW groups of train_ddp.py
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=ctx.device.type == "cuda" or None)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    if ctx.is_distributed:
        model = DDP(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,  # DDP: as training
                    bucket_cap_mb=bucket_cap_mb)  # DDP: bigger buckets, fewer all-reduces, later overlap
        if comm_hook == "fp16":
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

            model.register_comm_hook(None, default_hooks.fp16_compress_hook)  # DDP: send half the bytes
    return StepSetup(model, loader, optimizer, scheduler, make_scaler(precision, ctx.device), config, ctx.device)


def synchronize(device) -> None:
    """Wait for queued GPU work: a CUDA call returns before the kernel finishes, a clock must not."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_source(name: str, random_weights: bool) -> str:
    return f"{name}, " + ("RANDOM weights (timing only)" if random_weights else "trained weights")


def print_json_last(report: dict, enabled: bool) -> None:
    if enabled:
        print(json.dumps(report), flush=True)


# ---- bench train -----------------------------------------------------------------------------


def command_bench_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .config import ConfigError

    if args.steps < 1 or args.warmup_steps < 0:
        raise ConfigError(f"--steps must be at least 1 and --warmup-steps at least 0; got {args.steps}, "
                          f"{args.warmup_steps}")
    preset, config = bench_config(args)
    ctx = distributed.setup(config.device)  # DDP: under torchrun every rank measures its share
    try:
        report = benchmark_training(args, preset, config, ctx)
        if ctx.is_main:  # DDP: one table, one set of rows, from rank 0
            print_training_table(report)
            print_json_last(report, args.json)
    finally:
        distributed.teardown(ctx)
    return 0


def benchmark_training(args: argparse.Namespace, preset: str, config, ctx) -> dict:
    """Time every variant (padding x precision x accumulation x DDP knobs); rows to train.csv on rank 0."""
    from .training import load_data
    from .modeling import count_parameters

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    log = print if ctx.is_main else (lambda *_: None)  # DDP: only rank 0 talks
    base, tokenizer, name, random_weights = load_bench_model(args)
    data = load_data(config, log)
    precisions, skipped = resolve_variants(args.precision or [config.precision], ctx.device)
    # DDP: bucket size and communication hook exist only with a process group to all-reduce in
    knobs = list(itertools.product(args.bucket_cap_mb, args.comm_hook)) if ctx.is_distributed else [(None, None)]
    if not ctx.is_distributed and (args.bucket_cap_mb != [DEFAULT_BUCKET_MB] or args.comm_hook != ["none"]):
        skipped.append("--bucket-cap-mb and --comm-hook skipped: they tune DDP, which runs under torchrun only")
    hardware = describe_hardware(ctx.device)
    common = {"timestamp": timestamp(), "label": args.label or hardware["label"], **hardware,
              "backend": ctx.backend or "none", "model": name, "random_weights": random_weights, "preset": preset,
              "gradient_bytes": count_parameters(base) * 4,  # fp32: what DDP all-reduces per step
              "data": data.source, "max_length": config.max_length, "per_device_batch": config.per_device_batch_size,
              "world_size": ctx.world_size, "warmup_steps": args.warmup_steps, "steps": args.steps}
    rows = []
    for padding, precision, accum, (bucket, hook) in itertools.product(
            args.padding or [config.padding], precisions, args.grad_accum_steps or [config.grad_accum_steps], knobs):
        variant = config.replace(padding=padding, grad_accum_steps=accum)
        model = copy.deepcopy(base).to(ctx.device)  # every variant starts from the same weights
        setup = build_step(variant, ctx, model, tokenizer, data, precision, args.warmup_steps + args.steps,
                           bucket, hook)
        measured = time_steps(setup, args.warmup_steps, args.steps, ctx)
        del setup, model
        gc.collect()  # DDP: the wrapper holds itself in reference cycles (1.4 GB of buckets on a GPU): free it now
        empty_cache(ctx.device)
        rows.append({**common, "padding": padding, "precision": precision, "grad_accum_steps": accum,
                     "global_batch": config.per_device_batch_size * ctx.world_size * accum,
                     "bucket_cap_mb": bucket, "comm_hook": hook, **measured})
    results_file = append_rows(args.results_dir, "train", rows) if ctx.is_main else None  # DDP: rank 0 writes
    return {"command": "bench train", "rows": rows, "skipped": skipped, "results_file": str(results_file),
            "world_size": ctx.world_size, "label": common["label"], "model": name, "random_weights": random_weights}


def empty_cache(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the next variant gets the memory the last one cached


def endless_batches(loader):
    """This rank's batches, epoch after epoch, each epoch shuffled as training shuffles it."""
    for epoch in itertools.count():
        loader.batch_sampler.set_epoch(epoch)
        yield from loader


# fp16 loss scaling starts at 2**16 and halves after every overflow; a warm-up ends only after this many clean steps
SETTLED_STEPS = 5
MAX_WARMUP_STEPS = 200


def warm_up(setup: StepSetup, batches, steps: int) -> int:
    """`steps` untimed steps, then more until the fp16 loss scale has settled; returns the steps run.

    Every overflow (an fp16 gradient hitting inf, more likely with the fp16 communication hook, which sums
    scaled gradients in fp16) makes the scaler skip the update and halve its scale: a step timed then would be
    a step that did not update the weights.
    """
    accum, clean, run = setup.config.grad_accum_steps, 0, 0
    while run < steps or (setup.scaler.is_enabled() and clean < SETTLED_STEPS and run < MAX_WARMUP_STEPS):
        before = setup.scaler.get_scale() if setup.scaler.is_enabled() else 1.0
        setup.step([next(batches) for _ in range(accum)])
        clean = clean + 1 if not setup.scaler.is_enabled() or setup.scaler.get_scale() >= before else 0
        run += 1
    return run


def time_steps(setup: StepSetup, warmup: int, steps: int, ctx) -> dict:
    """Throughput over `steps` optimizer steps of `train_ddp.train_step` after a warm-up, all ranks summed."""
    from .distributed import all_reduce_sum, barrier

    batches, accum = endless_batches(setup.train_loader), setup.config.grad_accum_steps
    setup.model.train()
    warmed = warm_up(setup, batches, warmup)
    applied_before = setup.optimizer_steps_taken()
    synchronize(ctx.device)
    barrier(ctx)  # DDP: every rank starts its clock together
    counts, start = torch.zeros(4, dtype=torch.float64), time.perf_counter()
    for _ in range(steps):
        micro = [next(batches) for _ in range(accum)]
        setup.step(micro).item()  # DDP: gradients all-reduced in backward; .item() once a step, as training does
        for batch in micro:  # samples, tokens processed (padding included), real tokens: CPU tensors, no GPU sync
            counts[:3] += torch.tensor([len(batch["labels"]), batch["input_ids"].numel(),
                                        int(batch["attention_mask"].sum())])
    synchronize(ctx.device)
    counts[3] = time.perf_counter() - start
    skipped = steps - (setup.optimizer_steps_taken() - applied_before)
    totals = counts.to(ctx.device)
    all_reduce_sum(totals, ctx)  # DDP: samples and tokens over every rank's batches (and the ranks' seconds)
    seconds = float(totals[3]) / ctx.world_size  # the ranks' mean wall time
    return {"samples_per_s": round(float(totals[0]) / seconds, 3), "tokens_per_s": round(float(totals[2]) / seconds, 1),
            "padding_ratio": round(float(totals[1] / totals[2]), 4), "step_ms": round(seconds / steps * 1000, 2),
            "warmup_steps_run": warmed, "skipped_steps": skipped}


def print_training_table(report: dict) -> None:
    rows = report["rows"]
    first = rows[0] if rows else {}
    print(f"model: {describe_source(report['model'], report['random_weights'])} | {report['label']} | "
          f"torch {first.get('torch_version', '?')}, transformers {first.get('transformers_version', '?')}")
    if first:
        print(f"data: {first['data']} | max length {first['max_length']} | world size {first['world_size']} "
              f"({first['backend']}) | {first['steps']} timed steps after {first['warmup_steps']} warm-up")
    print(f"{'padding':<11}{'precision':<10}{'accum':>6}{'bucket':>8}{'hook':>6}{'batch':>7}{'global':>7}"
          f"{'samples/s':>11}{'tokens/s':>11}{'pad ratio':>10}{'step ms':>9}{'skipped':>8}")
    for row in rows:
        bucket = f"{row['bucket_cap_mb']:g}" if row["bucket_cap_mb"] is not None else "-"
        print(f"{row['padding']:<11}{row['precision']:<10}{row['grad_accum_steps']:>6}{bucket:>8}"
              f"{row['comm_hook'] or '-':>6}{row['per_device_batch']:>7}{row['global_batch']:>7}"
              f"{row['samples_per_s']:>11.1f}{row['tokens_per_s']:>11.0f}{row['padding_ratio']:>10.3f}"
              f"{row['step_ms']:>9.1f}{row['skipped_steps']:>8}")
    for note in report["skipped"]:
        print(f"note: {note}")
    print("samples/s and tokens/s (real tokens, padding excluded) are summed over all processes; skipped: timed "
          "steps whose update the fp16 loss scaler skipped after an overflow (0 = every timed step updated)")
    print(f"results: {report['results_file']} (+{len(rows)} rows)")


# ---- bench compare-trainer -------------------------------------------------------------------


def command_compare_trainer(args: argparse.Namespace) -> int:
    from . import distributed
    from .config import ConfigError

    if args.rounds < 1 or args.warmup_steps < 0:
        raise ConfigError(f"--rounds must be at least 1 and --warmup-steps at least 0; got {args.rounds}, "
                          f"{args.warmup_steps}")
    if distributed.launched_by_torchrun():
        raise ConfigError("compare-trainer times one process (the Trainer would start its own DDP): run it "
                          "without torchrun; `bench train` under torchrun measures DDP")
    preset, config = bench_config(args)
    chosen = {"padding": args.padding, "precision": args.precision, "grad_accum_steps": args.grad_accum_steps}
    config = config.replace(**{name: value for name, value in chosen.items() if value is not None})
    ctx = distributed.setup(config.device)
    report = compare_with_trainer(args, preset, config, ctx)
    print_comparison(report)
    print_json_last(report, args.json)
    return 0


def compare_with_trainer(args: argparse.Namespace, preset: str, config, ctx) -> dict:
    """Whole epochs of the same data through each loop, taking turns; samples/s of each and their ratio.

    Whole epochs, not N steps: both samplers then cover exactly the same texts, and a sampler that orders
    its batches by length (the Trainer's runs the longest first) cannot win or lose by which ones it timed.
    """
    from .precision import resolve_precision
    from .training import load_data

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    base, tokenizer, name, random_weights = load_bench_model(args)
    data = load_data(config, print)
    precision = resolve_precision(config.precision, ctx.device)
    with tempfile.TemporaryDirectory() as out:
        ours = LibraryLoop(config, ctx, copy.deepcopy(base).to(ctx.device), tokenizer, data, precision,
                           epochs=args.rounds + 1)
        theirs = TrainerLoop(config, ctx, copy.deepcopy(base), tokenizer, ours.setup.train_loader.dataset, precision,
                             out)
        ours.warm_up(args.warmup_steps)
        theirs.warm_up(args.warmup_steps)
        for round_ in range(args.rounds):  # take turns, and swap who goes first, so drift hits both alike
            for side in ((ours, theirs) if round_ % 2 == 0 else (theirs, ours)):
                side.time_epoch(round_)
    n = len(ours.setup.train_loader.dataset)
    report = {"command": "bench compare-trainer", "timestamp": timestamp(), "model": name,
              "random_weights": random_weights, "preset": preset, "data": data.source, "samples_per_epoch": n,
              "padding": config.padding, "precision": precision, "per_device_batch": config.per_device_batch_size,
              "grad_accum_steps": config.grad_accum_steps, "max_length": config.max_length, "rounds": args.rounds,
              "ours_samples_per_s": round(n * args.rounds / sum(ours.seconds), 3),
              "trainer_samples_per_s": round(n * args.rounds / sum(theirs.seconds), 3),
              "ours_epoch_s": [round(s, 3) for s in ours.seconds],
              "trainer_epoch_s": [round(s, 3) for s in theirs.seconds],
              "ours_padding_ratio": round(ours.padding_ratio, 4),
              "trainer_padding_ratio": round(theirs.padding_ratio, 4),
              "trainer_optimizer": str(theirs.optimizer_name), **describe_hardware(ctx.device)}
    report["ratio"] = round(report["ours_samples_per_s"] / report["trainer_samples_per_s"], 4)
    report["label"] = args.label or report["label"]
    report["results_file"] = str(append_rows(args.results_dir, "compare_trainer",
                                             [{k: v for k, v in report.items() if not isinstance(v, list)}]))
    return report


class LibraryLoop:
    """The training program's step (`train_ddp.train_step`) over whole epochs of its loader, one loss read a step."""

    def __init__(self, config, ctx, model, tokenizer, data, precision: str, epochs: int):
        steps = -(-len(data.train) // (config.per_device_batch_size * config.grad_accum_steps)) * epochs
        self.setup = build_step(config, ctx, model, tokenizer, data, precision, total_steps=steps)
        self.seconds: list[float] = []
        self.padding_ratio = float("nan")

    def warm_up(self, steps: int) -> None:
        self.setup.model.train()
        warm_up(self.setup, endless_batches(self.setup.train_loader), steps)

    def time_epoch(self, epoch: int) -> None:
        from .batching import padding_ratio

        loader, accum = self.setup.train_loader, self.setup.config.grad_accum_steps
        loader.batch_sampler.set_epoch(epoch)
        synchronize(self.setup.device)
        start = time.perf_counter()
        batches = iter(loader)
        for first in batches:  # as train_ddp.py: accum micro-batches a step, the loss read once a step
            micro = [first] + list(itertools.islice(batches, accum - 1))
            self.setup.step(micro).item()
        synchronize(self.setup.device)
        self.seconds.append(time.perf_counter() - start)
        self.padding_ratio = padding_ratio(loader)  # of the epoch just run (same shuffle)


class TrainerLoop:
    """The Hugging Face Trainer at its best matching settings: dynamic padding with DataCollatorWithPadding,
    its length-grouped sampler for grouped padding, its default (fused) AdamW, no evaluation, saving or logging.
    """

    def __init__(self, config, ctx, model, tokenizer, split, precision: str, out: str):
        self.config, self.ctx, self.model, self.out = config, ctx, model, out
        self.dataset, self.collator = TrainerView(split), CountingCollator(tokenizer, config)
        self.precision, self.seconds, self.padding_ratio = precision, [], float("nan")
        self.optimizer_name = None

    def arguments(self, **limits):
        from transformers import TrainingArguments

        cfg, cuda = self.config, self.ctx.device.type == "cuda"
        args = TrainingArguments(**trainer_arguments(cfg, self.precision, self.out, cuda, trainer_fields()), **limits)
        return on_one_gpu(args)

    def trainer(self, callbacks=(), **limits):
        from transformers import PrinterCallback, Trainer

        trainer = Trainer(model=self.model, args=self.arguments(**limits), train_dataset=self.dataset,
                          data_collator=self.collator, callbacks=list(callbacks))
        trainer.remove_callback(PrinterCallback)  # its end-of-training summary would interleave with our table
        self.optimizer_name = trainer.args.optim.value if hasattr(trainer.args.optim, "value") else trainer.args.optim
        return trainer

    def warm_up(self, steps: int) -> None:
        if steps:
            self.trainer(max_steps=steps).train()

    def time_epoch(self, epoch: int) -> None:
        clock = epoch_clock(self.ctx.device, self.collator)
        self.trainer([clock], num_train_epochs=1, data_seed=self.config.seed + epoch).train()
        self.seconds.append(clock.seconds)
        self.padding_ratio = clock.padding_ratio


def on_one_gpu(args):
    """With several GPUs visible and no process group, the Trainer wraps the model in DataParallel (every batch
    split over all GPUs) while our loop uses one: pin it to one GPU, as the Trainer itself does for model
    parallelism, so the two sides compare like with like."""
    if args.n_gpu > 1:
        args._n_gpu = 1
    return args


def trainer_fields() -> set[str]:
    """The TrainingArguments this transformers version accepts; "warmup_steps:float" when it may be a ratio."""
    import dataclasses

    from transformers import TrainingArguments

    fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    warmup = next(field for field in dataclasses.fields(TrainingArguments) if field.name == "warmup_steps")
    return fields | ({"warmup_steps:float"} if "float" in str(warmup.type) else set())


def trainer_arguments(cfg, precision: str, output_dir: str, cuda: bool, fields: set[str]) -> dict:
    """TrainingArguments matching the library's recipe, spelled for the transformers version that has `fields`.

    Names moved between versions: length grouping is `group_by_length=True` up to 5.1 and
    `train_sampling_strategy="group_by_length"` from 5.2; `evaluation_strategy` became `eval_strategy` in 4.41;
    from 5.0 a `warmup_steps` below 1 is a ratio, and `warmup_ratio` (deprecated in 5.0, gone in 5.2) is only used
    where it is not.
    """
    grouped = cfg.padding == "grouped"
    arguments = dict(
        output_dir=output_dir, per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, lr_scheduler_type="linear", max_grad_norm=cfg.max_grad_norm,
        fp16=precision == "fp16", bf16=precision == "bf16", seed=cfg.seed, use_cpu=not cuda,
        save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=cuda)  # as the library's loader
    if "train_sampling_strategy" in fields:
        arguments["train_sampling_strategy"] = "group_by_length" if grouped else "random"
    else:
        arguments["group_by_length"] = grouped
    arguments["eval_strategy" if "eval_strategy" in fields else "evaluation_strategy"] = "no"
    if "warmup_steps:float" in fields:
        arguments["warmup_steps"] = cfg.warmup_ratio if cfg.warmup_ratio < 1 else 0
    else:
        arguments["warmup_ratio"] = cfg.warmup_ratio
    unknown = sorted(set(arguments) - fields)
    if unknown:
        raise RuntimeError(f"this transformers version's TrainingArguments lacks {', '.join(unknown)}")
    return arguments


class TrainerView(torch.utils.data.Dataset):
    """Our tokenized split as the Trainer expects it: dicts of input_ids (a list, as `datasets` gives) and labels."""

    def __init__(self, split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        _, ids, label = self.split[index]
        return {"input_ids": ids.tolist(), "labels": label}


class CountingCollator:
    """DataCollatorWithPadding (longest, or max_length for that strategy), counting the tokens it emits."""

    def __init__(self, tokenizer, config):
        from transformers import DataCollatorWithPadding

        fixed = config.padding == "max_length"
        self.collate = DataCollatorWithPadding(tokenizer, padding="max_length" if fixed else "longest",
                                               max_length=config.max_length if fixed else None)
        self.processed = self.real = 0

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        self.processed += batch["input_ids"].numel()
        self.real += sum(len(f["input_ids"]) for f in features)
        return batch


def epoch_clock(device, collator):
    """A Trainer callback timing one epoch, from before its first batch to after its last optimizer step."""
    from transformers import TrainerCallback

    class EpochClock(TrainerCallback):
        seconds, padding_ratio, start = 0.0, float("nan"), 0.0

        def on_epoch_begin(self, args, state, control, **kwargs):
            synchronize(device)
            collator.processed = collator.real = 0
            self.start = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kwargs):
            synchronize(device)
            self.seconds = time.perf_counter() - self.start
            self.padding_ratio = collator.processed / max(collator.real, 1)

    return EpochClock()


def print_comparison(report: dict) -> None:
    print(f"model: {describe_source(report['model'], report['random_weights'])} | {report['label']} | "
          f"torch {report['torch_version']}, transformers {report['transformers_version']}")
    print(f"data: {report['data']} | {report['samples_per_epoch']} samples per epoch, {report['rounds']} timed "
          f"epochs per side, alternating | padding {report['padding']}, precision {report['precision']}, "
          f"batch {report['per_device_batch']} x accum {report['grad_accum_steps']}")
    print(f"{'loop':<40}{'samples/s':>11}{'pad ratio':>11}  epoch seconds")
    print(f"{'distrinews (train_ddp.train_step)':<40}{report['ours_samples_per_s']:>11.1f}"
          f"{report['ours_padding_ratio']:>11.3f}  {report['ours_epoch_s']}")
    print(f"{'HF Trainer (' + report['trainer_optimizer'] + ')':<40}{report['trainer_samples_per_s']:>11.1f}"
          f"{report['trainer_padding_ratio']:>11.3f}  {report['trainer_epoch_s']}")
    print(f"ratio ours / Trainer: {report['ratio']:.3f} (target >= 1.0)")
    print(f"results: {report['results_file']}")


# ---- bench allreduce -------------------------------------------------------------------------


def command_bench_allreduce(args: argparse.Namespace) -> int:
    from . import distributed
    from .config import ConfigError

    if not distributed.launched_by_torchrun():
        raise ConfigError("bench allreduce needs a process group: run it under torchrun, e.g. `torchrun "
                          "--standalone --nproc_per_node=2 -m distrinews bench allreduce` (1 process works too)")
    if not 0 < args.min_kb * 1e3 <= args.max_mb * 1e6:
        raise ConfigError(f"need 0 < --min-kb <= --max-mb; got {args.min_kb} KB and {args.max_mb} MB")
    ctx = distributed.setup(args.device)  # DDP: NCCL on GPUs, gloo on CPU, as training would use
    try:
        report = benchmark_allreduce(ctx, message_sizes(args.min_kb * 1e3, args.max_mb * 1e6), args.seconds)
        if ctx.is_main:  # DDP: every rank measured; rank 0 reports and writes
            report["label"] = args.label or report["label"]
            rows = [{**report["common"], "label": report["label"], **row} for row in report["rows"]]
            report["results_file"] = str(append_rows(args.results_dir, "allreduce", rows))
            del report["common"]
            print_allreduce_table(report)
            print_json_last(report, args.json)
    finally:
        distributed.teardown(ctx)
    return 0


def message_sizes(smallest: float, largest: float) -> list[int]:
    """Bytes: 4x steps from the smallest (rounded to whole fp32 elements), and the largest itself."""
    sizes, size = [], max(4, int(smallest) // 4 * 4)
    while size < largest:
        sizes.append(size)
        size *= 4
    return sizes + [int(largest) // 4 * 4]


def benchmark_allreduce(ctx, sizes: list[int], seconds_per_size: float) -> dict:
    """Seconds per all-reduce of each size, the slowest rank's; algbw = bytes / time, busbw as nccl-tests."""
    n = ctx.world_size
    rows = []
    for size in sizes:
        per_op = time_allreduce(ctx, torch.zeros(size // 4, dtype=torch.float32, device=ctx.device),
                                seconds_per_size)
        algbw = size / per_op / 1e9
        rows.append({"size_bytes": size, "size_mb": round(size / 1e6, 4), "time_us": round(per_op * 1e6, 1),
                     "algbw_gbps": significant(algbw),
                     # nccl-tests' bus bandwidth: a ring all-reduce moves 2(n-1)/n of the data over each link
                     "busbw_gbps": significant(algbw * 2 * (n - 1) / n)})
    hardware = describe_hardware(ctx.device)
    common = {"timestamp": timestamp(), **hardware, "backend": ctx.backend, "world_size": n, "dtype": "fp32"}
    return {"command": "bench allreduce", "backend": ctx.backend, "world_size": n, "label": hardware["label"],
            "gradient_bytes": DISTILBERT_PARAMETERS * 4, "rows": rows, "common": common,
            "peak_busbw_gbps": max(row["busbw_gbps"] for row in rows)}


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def time_allreduce(ctx, tensor, seconds: float) -> float:
    """Seconds per all-reduce: warm once, size the repetitions to the time budget, time, take the slowest rank."""
    import torch.distributed as dist

    def timed(repeats: int) -> float:
        dist.barrier()  # DDP: start together, or a late rank's wait counts as bandwidth
        start = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(tensor)  # DDP: the collective DDP runs on every gradient bucket
        synchronize(ctx.device)
        slowest = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device=ctx.device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)  # DDP: the op is done when the slowest rank is
        return float(slowest) / repeats

    timed(1)  # first call: connections, buffers, NCCL's channels
    repeats = max(3, min(200, round(seconds / max(timed(1), 1e-6))))  # same on every rank: it is all-reduced
    return timed(repeats)


def print_allreduce_table(report: dict) -> None:
    print(f"all-reduce, {report['backend']}, world size {report['world_size']} | {report['label']} | fp32")
    print(f"{'size':>12}{'time (us)':>14}{'algbw (GB/s)':>15}{'busbw (GB/s)':>15}")
    for row in report["rows"]:
        print(f"{format_bytes(row['size_bytes']):>12}{row['time_us']:>14.1f}{row['algbw_gbps']:>15.3f}"
              f"{row['busbw_gbps']:>15.3f}")
    if report["world_size"] == 1:
        print("note: with one process there is nothing to exchange; busbw is 0 by definition")
    print(f"DistilBERT-base's fp32 gradient: {format_bytes(report['gradient_bytes'])} per step, all-reduced in "
          f"25 MB buckets by default")
    print(f"results: {report['results_file']} (+{len(report['rows'])} rows)")


def format_bytes(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
