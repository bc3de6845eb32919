"""Command line: `distrinews train|evaluate ...`, also as `python -m distrinews` and under torchrun.

    distrinews train --preset smoke                                  # seconds, CPU, synthetic data
    distrinews train --preset cpu-demo --train-file a.csv b.csv --test-file test.csv
    torchrun --standalone --nproc_per_node=2 -m distrinews train --preset kaggle-t4x2
    torchrun --standalone --nproc_per_node=2 -m distrinews diagnose    # one all-reduce, prints the group
    distrinews evaluate --checkpoint runs/smoke/checkpoint --data synthetic

Every TrainConfig field is an option (`--learning-rate 1e-4` or `--learning_rate 1e-4`); a user error
exits with status 2 and one line saying what to fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import distributed
from .checkpoint import CONFIG_FILE, require_checkpoint
from .config import (PRESETS, ConfigError, TrainConfig, add_config_options, apply_overrides, build_config,
                     overrides_from, reject_unknown_options)
from .data import DataError
from .distributed import DistError
from .modeling import ModelError
from .precision import PrecisionError
from .serving import PublishError

USER_ERRORS = (ConfigError, DataError, ModelError, PrecisionError, DistError, PublishError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        reject_unknown_options(unknown)
        return args.command(args)
    except USER_ERRORS as err:
        print(f"distrinews: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distrinews", description=__doc__.split("\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="fine-tune a classifier and evaluate it", allow_abbrev=False)
    train.add_argument("--preset", default="smoke", help=f"starting config: {', '.join(PRESETS)} (default smoke)")
    add_config_options(train)
    train.set_defaults(command=command_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint and write eval.json", allow_abbrev=False)
    evaluate.add_argument("--checkpoint", required=True, help="a checkpoint directory (DIR/checkpoint)")
    evaluate.add_argument("--output", help="where to write the metrics (default: print only)")
    add_config_options(evaluate)
    evaluate.set_defaults(command=command_evaluate)
    diagnose = commands.add_parser("diagnose", help="run one all-reduce on every rank and print the group",
                                   allow_abbrev=False)
    diagnose.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    diagnose.set_defaults(command=command_diagnose)

    from .bench import add_commands as add_bench_commands  # predict, bench ...
    from .gpu_check import add_command as add_gpu_check_command  # gpu-check
    from .serving import add_commands as add_serving_commands  # serve, publish ...
    from .site import add_commands as add_site_commands  # site

    add_bench_commands(commands)
    add_serving_commands(commands)
    add_site_commands(commands)
    add_gpu_check_command(commands)
    return parser


def command_train(args: argparse.Namespace) -> int:
    from .train_ddp import main as train_main

    train_main(build_config(args.preset, overrides_from(args)))
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from .training import evaluate_checkpoint

    checkpoint = require_checkpoint(args.checkpoint)
    saved = checkpoint / CONFIG_FILE
    base = TrainConfig.load(saved) if saved.exists() else TrainConfig()
    config = apply_overrides(base, overrides_from(args))
    ctx = distributed.setup(config.device)
    try:
        metrics = evaluate_checkpoint(checkpoint, config, ctx)
        if ctx.is_main:
            print(json.dumps({k: metrics[k] for k in ("n_examples", "accuracy", "macro_f1", "loss")}))
            if args.output:
                Path(args.output).parent.mkdir(parents=True, exist_ok=True)
                Path(args.output).write_text(json.dumps(metrics, indent=2) + "\n")
    finally:
        distributed.teardown(ctx)
    return 0


def command_diagnose(args: argparse.Namespace) -> int:
    ctx = distributed.setup(args.device)
    try:
        report = distributed.diagnose(ctx)
        if ctx.is_main:
            for key, value in report.items():
                if key != "ranks":
                    print(f"{key}: {value}")
            for entry in report["ranks"]:
                print(f"rank {entry['rank']} (local {entry['local_rank']}): {entry['device']} {entry['name']}")
            print(json.dumps(report))
        return 0 if report["all_reduce_ok"] else 1
    finally:
        distributed.teardown(ctx)
