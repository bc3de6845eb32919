"""Fine-tune a classifier on AG News with DistributedDataParallel: one script, 1 CPU process to many GPUs.

    python train_ddp.py --preset smoke                                  # 1 CPU process, seconds
    torchrun --standalone --nproc_per_node=2 train_ddp.py --preset smoke   # 2 CPU processes (gloo)
    python train_ddp.py --preset kaggle-t4                              # 1 GPU
    torchrun --standalone --nproc_per_node=2 train_ddp.py --preset kaggle-t4x2  # Kaggle's 2x T4 (NCCL)
    torchrun --nnodes=2 --nproc_per_node=2 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 train_ddp.py --preset kaggle-t4x2     # on each of 2 machines

It decides from torchrun's environment and runs as a single process otherwise. `distrinews train` and
`torchrun -m distrinews train` run this same `train()`; the course's DDP notebook writes this file to disk.
"""

import sys

from distrinews import distributed
from distrinews.config import TrainConfig
from distrinews.loop import end_epoch, final_evaluation, prepare_run, run_epoch, save


def train(config: TrainConfig, ctx: distributed.DistContext, log=print) -> dict:
    """Train, evaluate each epoch, checkpoint; return the test metrics (also written to eval.json)."""
    run = prepare_run(config, ctx, log)  # DDP: resumes the checkpoint, then wraps the model in DDP
    while not run.finished:
        run_epoch(run)  # DDP: this rank's shard of batches; gradients are all-reduced in backward
        if run.epoch_done:
            end_epoch(run)  # DDP: every rank evaluates its shard; counts are summed, each example once
        save(run)  # DDP: rank 0 writes the unwrapped model; every rank waits until it is on disk
    return final_evaluation(run)


def main(config: TrainConfig) -> dict:
    ctx = distributed.setup(config.device)  # DDP: join the process group (or stay one process)
    try:
        if ctx.is_main:  # DDP: print once, not once per rank
            print("config: " + " ".join(f"{k}={v}" for k, v in config.to_dict().items()))
        return train(config, ctx)
    finally:
        distributed.teardown(ctx)  # DDP: leave the group cleanly, also after an error


if __name__ == "__main__":
    from distrinews.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
