"""Fine-tune a news classifier on AG News: the complete training program, top to bottom.

train_single.py trains on one device. train_ddp.py is the same program plus DistributedDataParallel, every
added line marked `# DDP:`; `diff -u train_single.py train_ddp.py` shows all of them. Every option is a field
of distrinews.config.TrainConfig (`--learning-rate 1e-4`, `--epochs 1`, ...), and running the same command
again resumes from OUTPUT_DIR/checkpoint.

    python train_single.py --preset smoke                                   # CPU, seconds: tiny model, synthetic news
    python train_single.py --preset kaggle-t4                               # one GPU: DistilBERT, fp16 on a T4
    torchrun --standalone --nproc_per_node=2 train_ddp.py --preset smoke         # 2 CPU processes (gloo)
    torchrun --standalone --nproc_per_node=2 train_ddp.py --preset kaggle-t4x2   # Kaggle's 2x T4 (NCCL)
    torchrun --nnodes=2 --nproc_per_node=2 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        train_ddp.py --preset kaggle-t4x2                                   # the same on each of 2 machines
"""

import datetime  # DDP: the process group's timeout
import gc  # DDP: a clean exit (see the end)
import json
import math
import sys
import time
from contextlib import nullcontext  # DDP: no_sync() on accumulation micro-batches, nothing on the last

import torch
import torch.distributed as dist  # DDP: the process group and its collectives
from torch.nn.parallel import DistributedDataParallel as DDP  # DDP: the wrapper that all-reduces gradients
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from distrinews import checkpoint as ckpt
from distrinews.batching import build_eval_loader, build_train_loader, describe_padding
from distrinews.config import TrainConfig, describe_batch, parse_command_line
from distrinews.distributed import (attempt_store, backend_for, launched_by_torchrun, pick_device,  # DDP: the
                                    set_cpu_threads, torchrun_ranks)  # process group's parts
from distrinews.evaluation import evaluate
from distrinews.modeling import build_model, build_tokenizer, count_parameters
from distrinews.precision import autocast, make_scaler, resolve_precision
from distrinews.training import (check_resumable, disable_dropout, format_eval, load_data, maybe_crash,
                                 progress_interval, start_output_dir, tokenize_splits, write_metrics)


def train_step(model, micro_batches, optimizer, scheduler, scaler, precision, max_grad_norm):
    """One optimizer step over `micro_batches` (gradient accumulation); returns the mean loss, on the device."""
    device = next(model.parameters()).device
    total = torch.zeros((), device=device)
    for i, batch in enumerate(micro_batches):  # DDP: i tells the last micro-batch
        skip_sync = isinstance(model, DDP) and i < len(micro_batches) - 1  # DDP: an accumulation micro-batch
        with model.no_sync() if skip_sync else nullcontext():  # DDP: gradients add up locally until the last one
            with autocast(precision, device):  # matrix multiplies in fp16/bf16, the weights stay fp32
                loss = model(**{k: batch[k].to(device, non_blocking=True)
                                for k in ("input_ids", "attention_mask", "labels")}).loss / len(micro_batches)
            scaler.scale(loss).backward()  # DDP: on the last micro-batch, hooks all-reduce gradient buckets here
        total += loss.detach()  # no .item() here: on a GPU it would wait for the step to finish
    if max_grad_norm:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)  # skipped when an fp16 gradient overflowed; update() then lowers the scale
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def train(config: TrainConfig, device: torch.device, rank=0, local_rank=0, world_size=1) -> dict:  # DDP: who am I
    """Train, evaluate after every epoch, checkpoint; returns the test metrics (also written to eval.json)."""
    ddp = dist.is_initialized()  # DDP: a process group exists (launched by torchrun)
    is_main = rank == 0  # DDP: rank 0 alone prints, draws progress bars and writes files
    log = print if is_main else lambda *args, **kwargs: None  # DDP: the other ranks stay quiet
    threads = set_cpu_threads(config.num_threads, device)  # --num-threads, else this process's share of the cores
    precision = resolve_precision(config.precision, device)  # by compute capability: fp16 on a T4, bf16 from 8.0
    resume_from = ckpt.agree_on_checkpoint(config.output_dir) if config.resume else None  # DDP: rank 0's call
    if resume_from:
        check_resumable(resume_from, config)  # the same recipe, or --resume false to start over
    log("config: " + " ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    log(f"device: {device} | world size {world_size} | precision {precision} | "  # DDP: and the backend
        f"backend {dist.get_backend() if ddp else 'none'} | {threads} CPU threads per rank")
    log(describe_batch(config, world_size))  # DDP: global batch = per-device batch x world size x accumulation

    # Data: tokenized once (cached on disk), batched by similar length, each batch padded to its longest text
    data = load_data(config, log)
    tokenizer = build_tokenizer(str(resume_from or config.model_name))
    if ddp and local_rank != 0:  # DDP: the other ranks of this machine wait while its rank 0 tokenizes and
        dist.barrier()  # DDP: fills the on-disk cache (the barrier's first half) ...
    splits = tokenize_splits(data, tokenizer, config.max_length)
    if ddp and local_rank == 0:  # DDP: ... then rank 0 joins the barrier, and they read the cache instead
        dist.barrier()  # DDP: (one barrier call per rank, so it also works across machines)
    pad, pin = tokenizer.pad_token_id, device.type == "cuda"
    # DDP: each rank trains on its own shard. PyTorch's DistributedSampler deals out every world_size-th example
    # DDP: and repeats a few to even out the shards, so that all ranks run the same number of steps. The library's
    # DDP: length-grouped BatchSampler does the same with whole batches of similar length (far less padding).
    train_loader = build_train_loader(  # DDP: this rank's batches
        splits.train, config.padding, config.per_device_batch_size, config.max_length, config.seed, pad,
        rank=rank, world_size=world_size, pin_memory=pin, balanced=config.balanced_steps)
    # DDP: evaluation shards are unpadded instead: every example lands on exactly one rank, once
    eval_loader = build_eval_loader(splits.eval, config.eval_batch_size, pad, rank, world_size, pin)  # DDP: shard
    test_loader = build_eval_loader(splits.test, config.eval_batch_size, pad, rank, world_size, pin)  # DDP: shard

    # Model: the pretrained encoder with a fresh 4-class head, or the checkpoint's weights when resuming
    model = build_model(str(resume_from or config.model_name), tokenizer, seed=config.seed)
    model = model.float().to(device)  # fp32 master weights; autocast computes in 16 bits where it is safe
    if config.no_dropout:
        disable_dropout(model)
    log(f"model: {config.model_name} ({count_parameters(model) / 1e6:.1f}M parameters)"
        + (f", resuming from {resume_from}" if resume_from else ""))

    # AdamW with two groups: biases and LayerNorm weights set offsets and scales, not capacity: no decay
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":  # plain SGD: weights move linearly in the gradient (equivalence checks)
        optimizer = torch.optim.SGD(groups, lr=config.learning_rate)
    else:  # fused: one kernel launch for all tensors on a GPU; on a CPU torch's default was faster
        optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, fused=device.type == "cuda" or None)
    steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum_steps)
    total_steps = min(steps_per_epoch * config.epochs, config.max_steps or math.inf)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    scaler = make_scaler(precision, device)  # on for fp16 only: bf16 and fp32 have fp32's range
    log(f"steps: {steps_per_epoch} per epoch x {config.epochs} epochs, {total_steps} in all; "
        + describe_padding(train_loader, config.padding, config.grad_accum_steps))

    # Resume: optimizer, schedule, scaler, position in the epoch and RNG state, or a fresh start
    start_epoch, step, batches_done = 0, 0, 0
    if resume_from:
        start_epoch, step, batches_done = ckpt.restore_training_state(  # DDP: this rank's RNG state; refuses
            resume_from, optimizer, scheduler, scaler, precision, device, rank, world_size, log=log)  # another world
    else:
        torch.manual_seed(config.seed + rank)  # DDP: dropout masks differ per rank, reproducibly
    out = start_output_dir(config, fresh=not resume_from, create=is_main)  # DDP: rank 0 writes config.json
    # DDP: wrap after the checkpoint is loaded: DDP broadcasts rank 0's weights to every rank, and registers hooks
    # DDP: that all-reduce (average) the gradients during backward, in buckets of about 25 MB, overlapping the
    # DDP: communication with the rest of backward. `model` stays the plain model: evaluation and saving use it.
    ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if ddp else model  # DDP: wrap

    def save(epochs_done: int, batches_done: int) -> None:
        """Weights and tokenizer (from_pretrained layout) plus the training state; written atomically."""
        rng = [ckpt.capture_rng_state()] * world_size  # DDP: one slot per rank, filled by the gather below
        if ddp:  # DDP: a collective, so every rank calls it, outside the rank-0 gate
            dist.all_gather_object(rng, ckpt.capture_rng_state())  # DDP: every rank's dropout state
        if is_main:  # DDP: one writer
            state = ckpt.training_state(optimizer, scheduler, scaler, precision, epochs_done, step, batches_done, rng)
            ckpt.save_checkpoint(out, model, tokenizer, state, config)  # DDP: the plain model's weights
        if ddp:  # DDP: nobody reads it, goes on or exits before the checkpoint is complete
            dist.barrier()  # DDP: every rank waits here until rank 0 has written

    last_eval = {}
    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps:
            break
        last_eval = {}  # the weights are about to change
        # DDP: set_epoch gives every epoch a new shuffle, the same on all ranks (DistributedSampler needs it too);
        # DDP: skip_batches (this library's, not PyTorch's) resumes mid-epoch at this rank's next unseen batch
        train_loader.batch_sampler.set_epoch(epoch, skip_batches=batches_done)  # DDP: every rank, every epoch
        model.train()
        batches, remaining = iter(train_loader), len(train_loader) - batches_done
        steps_left = min(math.ceil(remaining / config.grad_accum_steps), total_steps - step)
        done = steps_per_epoch - math.ceil(remaining / config.grad_accum_steps)  # steps before a resume
        bar = tqdm(total=steps_per_epoch, initial=done, desc=f"epoch {epoch + 1}/{config.epochs}",  # DDP: one bar,
                   mininterval=progress_interval(), disable=not is_main)  # rank 0's
        clock, samples, tokens = time.perf_counter(), 0, 0
        for _ in range(steps_left):
            maybe_crash(config, step, is_last_rank=rank == world_size - 1)  # DDP: one rank dies; torchrun sees it
            micro = [next(batches) for _ in range(min(config.grad_accum_steps, remaining))]
            loss = train_step(ddp_model, micro, optimizer, scheduler, scaler, precision,  # DDP: the wrapper
                              config.max_grad_norm)
            step, batches_done, remaining = step + 1, batches_done + len(micro), remaining - len(micro)
            samples += sum(len(b["labels"]) for b in micro)
            tokens += sum(int(b["attention_mask"].sum()) for b in micro)  # real tokens, not padding
            bar.update()
            if step % config.log_every_steps == 0:
                loss = loss.item()  # the loop's one host-device sync, on logging steps only: a GPU never waits
                stats = torch.tensor([loss, samples, tokens], dtype=torch.float64, device=device)  # DDP: NCCL's side
                if ddp:  # DDP: every rank, outside the rank-0 gate
                    dist.all_reduce(stats)  # DDP: the job's samples and tokens, summed over ranks ...
                    stats[0] /= world_size  # DDP: ... and the loss averaged (each rank's is on its own examples)
                seconds = time.perf_counter() - clock
                bar.set_postfix(loss=f"{stats[0].item():.4f}", refresh=False)
                if is_main:  # DDP: one writer
                    write_metrics(out, {"epoch": epoch + 1, "step": step, "loss": stats[0].item(),
                                        "lr": scheduler.get_last_lr()[0], "samples_per_s": stats[1].item() / seconds,
                                        "tokens_per_s": stats[2].item() / seconds})
                clock, samples, tokens = time.perf_counter(), 0, 0
            if config.save_every_steps and step % config.save_every_steps == 0 and remaining:
                save(epoch, batches_done)
        bar.close()
        if remaining:  # stopped by max_steps in the middle of the epoch
            save(epoch, batches_done)
            break
        # DDP: every rank evaluates its shard of the plain model, and the counts are summed. Not ddp_model: its
        # DDP: forward may broadcast buffers, a collective that a rank without an evaluation batch never joins.
        last_eval = evaluate(model, eval_loader, device, precision)  # DDP: exact for any world size
        if is_main:  # DDP: one writer
            write_metrics(out, {"epoch": epoch + 1, "step": step, "eval": last_eval})
        log(format_eval(last_eval, f"epoch {epoch + 1} eval"))
        batches_done = 0
        save(epoch + 1, batches_done)

    final = last_eval if last_eval and splits.eval is splits.test else evaluate(model, test_loader, device, precision)
    if is_main:  # DDP: one writer
        (out / "eval.json").write_text(json.dumps(final, indent=2) + "\n")
    log(format_eval(final, "test"))
    return final


def main(config: TrainConfig) -> dict:
    rank, local_rank, world_size = torchrun_ranks()  # DDP: from torchrun's environment; (0, 0, 1) run plainly
    device = pick_device(config.device, local_rank)  # DDP: this rank's GPU, cuda:LOCAL_RANK (or the CPU)
    if launched_by_torchrun():  # DDP: join the process group
        if device.type == "cuda":  # DDP: set the device before init, or every rank allocates on GPU 0
            torch.cuda.set_device(device)  # DDP: cuda:LOCAL_RANK becomes this process's default GPU
        backend = backend_for(device)  # DDP: "nccl" between GPUs, "gloo" between CPUs
        timeout = datetime.timedelta(minutes=10)  # DDP: a stuck collective fails then, instead of hanging forever
        dist.init_process_group(  # DDP: meet through torchrun's store, under keys no earlier (crashed) attempt wrote
            backend=backend, store=attempt_store(timeout), rank=rank, world_size=world_size, timeout=timeout,
            device_id=device if backend == "nccl" else None)
    try:  # DDP: leave the group also when training fails, so torchrun sees how the rank ended
        return train(config, device, rank, local_rank, world_size)  # DDP: tell the program which rank it is
    finally:  # DDP: on success and on error alike
        if dist.is_initialized():  # DDP: joined above (not when run plainly)
            gc.collect()  # DDP: free the DDP wrapper (held in reference cycles) while its process group still exists,
            dist.destroy_process_group()  # DDP: or gloo's threads may abort the exit; then release the group


if __name__ == "__main__":
    main(parse_command_line(sys.argv[1:]))
