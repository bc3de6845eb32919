"""Fine-tune a news classifier on AG News: the whole training program, top to bottom.

train_ddp.py is train_single.py plus DistributedDataParallel, each changed line marked `# DDP:`.
Options are the fields of distrinews.config.TrainConfig (`--epochs 1`); run again, it resumes.

    python train_single.py --preset kaggle-t4                                   # one T4, fp16
    torchrun --standalone --nproc_per_node=2 train_ddp.py --preset kaggle-t4x2  # Kaggle's 2 T4s
"""

import gc  # DDP: a clean exit
import json
import math
import sys
import time
from datetime import timedelta  # DDP: the process group's timeout
from functools import partial
from itertools import islice

import torch
import torch.distributed as dist  # DDP: the process group and its collectives
from torch.nn.parallel import DistributedDataParallel as DDP  # DDP: all-reduces the gradients
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from distrinews import checkpoint as ckpt
from distrinews.batching import build_loaders, describe_padding
from distrinews.config import TrainConfig, parse_command_line
from distrinews.distributed import attempt_store, backend_for, torchrun_ranks  # DDP: join, rank
from distrinews.distributed import pick_device, set_cpu_threads
from distrinews.evaluation import evaluate
from distrinews.modeling import build_tokenizer, count_parameters
from distrinews.precision import autocast, make_scaler, resolve_precision
from distrinews.training import (format_eval, format_header, load_data, load_model,
                                 make_optimizer, maybe_crash, progress_interval, resume_point,
                                 start_output_dir, tokenize_splits, write_metrics)


def train_step(model, batches, optimizer, scheduler, scaler, precision, device, max_grad_norm):
    """One optimizer step over micro-batches (gradient accumulation); returns the loss."""
    total = torch.zeros((), device=device)
    for batch in batches:
        model.require_backward_grad_sync = batch is batches[-1]  # DDP: all-reduce the last
        inputs = {k: batch[k].to(device, non_blocking=True)  # from pinned memory: an async copy
                  for k in ("input_ids", "attention_mask", "labels")}
        with autocast(precision, device):  # matrix multiplies in fp16/bf16, the weights stay fp32
            loss = model(**inputs).loss / len(batches)
        scaler.scale(loss).backward()  # the scale keeps small fp16 gradients from flushing to zero
        total += loss.detach()  # no .item(): on a GPU it would wait for the step to finish
    if max_grad_norm:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)  # skipped if an fp16 gradient overflowed; update() then lowers the scale
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def train(config: TrainConfig, device, rank, local_rank, world_size) -> dict:  # DDP: who am I
    """Train, evaluate on validation after every epoch, checkpoint; returns the test metrics."""
    log = print if rank == 0 else lambda *args, **kwargs: None  # DDP: rank 0 alone prints
    threads = set_cpu_threads(config.num_threads, device)  # --num-threads, or a share of the cores
    precision = resolve_precision(config.precision, device)  # fp16 on a T4, bf16 from compute 8.0
    resume_from = resume_point(config)  # this recipe's last checkpoint, or None: a fresh start
    log(format_header(config, device, precision, threads))  # config, device, batch arithmetic

    # Data: tokenized once (cached on disk), batched by similar length, padded to the longest text
    data = load_data(config, log)
    tokenizer = build_tokenizer(str(resume_from or config.model_name))
    if local_rank == 0:  # DDP: one rank per machine tokenizes, filling the cache, ...
        tokenize_splits(data, tokenizer, config.max_length)  # DDP: ... while the others wait
    dist.barrier()  # DDP: here; then every rank reads the cache
    splits = tokenize_splits(data, tokenizer, config.max_length)
    loaders = build_loaders(splits, config, device, rank, world_size)  # DDP: this rank's shards

    # Model: the pretrained encoder with a new 4-class head, or the checkpoint's weights on a resume
    model = load_model(resume_from or config.model_name, tokenizer, config, device)  # fp32 weights
    log(f"model: {config.model_name}, {count_parameters(model) / 1e6:.1f}M parameters")
    optimizer = make_optimizer(config, model, device)  # AdamW, no weight decay on biases and norms
    steps_per_epoch = math.ceil(len(loaders.train) / config.grad_accum_steps)
    total_steps = min(steps_per_epoch * config.epochs, config.max_steps or math.inf)
    warmup_steps = round(config.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    scaler = make_scaler(precision, device)  # on for fp16 only: bf16 and fp32 have fp32's range
    log(f"steps: {steps_per_epoch} per epoch, {total_steps} in all; "
        + describe_padding(loaders.train, config.padding, config.grad_accum_steps))

    # Resume: optimizer, schedule, scaler, position in the epoch and RNG state; or start fresh
    torch.manual_seed(config.seed + rank)  # DDP: dropout masks differ per rank, reproducibly
    start_epoch, step, batches_done = ckpt.restore_training_state(  # (0, 0, 0) when fresh
        resume_from, optimizer, scheduler, scaler, precision, device, log=log)
    out = start_output_dir(config, fresh=not resume_from, create=rank == 0)  # DDP: rank 0 writes
    log_metrics = partial(write_metrics, out) if rank == 0 else lambda record: None  # DDP: rank 0's
    ddp_model = DDP(model, device_ids=[device] if device.type == "cuda" else None)  # DDP: wrap

    def save(epochs_done: int, batches_done: int) -> None:  # atomically (checkpoint.py)
        rng = [None] * world_size  # DDP: a slot per rank ...
        dist.all_gather_object(rng, ckpt.capture_rng_state())  # DDP: ... for each rank's state
        state = ckpt.training_state(optimizer, scheduler, scaler, precision, epochs_done, step,
                                    batches_done, rng)
        if rank == 0:  # DDP: one writer, of the plain model's weights
            ckpt.save_checkpoint(out, model, tokenizer, state, config)
        dist.barrier()  # DDP: no rank reads it, or exits, before rank 0 is done writing

    for epoch in range(start_epoch, math.ceil(total_steps / steps_per_epoch)):  # or max_steps
        loaders.train.batch_sampler.set_epoch(epoch, skip_batches=batches_done)  # a new order
        model.train()
        done = batches_done // config.grad_accum_steps  # steps of this epoch taken before a resume
        bar = tqdm(range(min(steps_per_epoch - done, total_steps - step)),  # or up to max_steps
                   initial=done, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                   mininterval=progress_interval(), disable=rank != 0)  # DDP: rank 0's bar
        batches, clock, samples, tokens = iter(loaders.train), time.perf_counter(), 0, 0
        for _ in bar:
            maybe_crash(config, step)  # --fail-at-step N: the crash that notebook 06 recovers from
            micro = list(islice(batches, config.grad_accum_steps))  # the epoch's last may be short
            loss = train_step(ddp_model, micro, optimizer, scheduler, scaler,  # DDP: the wrapper
                              precision, device, config.max_grad_norm)
            step, batches_done = step + 1, batches_done + len(micro)
            samples += sum(len(b["labels"]) for b in micro)
            tokens += sum(int(b["attention_mask"].sum()) for b in micro)  # real tokens, no padding
            if step % config.log_every_steps == 0:
                loss = loss.item()  # the loop's one host-device sync, on logging steps only
                sums = torch.tensor([loss / world_size, samples, tokens], device=device)  # DDP: GPU
                dist.all_reduce(sums)  # DDP: over ranks; every rank calls it, outside the gate
                loss, samples, tokens = sums.tolist()  # DDP: the job's mean loss, samples, tokens
                seconds = time.perf_counter() - clock
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                record = dict(epoch=epoch + 1, step=step, loss=loss, lr=scheduler.get_last_lr()[0],
                              samples_per_s=samples / seconds, tokens_per_s=tokens / seconds)
                log_metrics(record)
                clock, samples, tokens = time.perf_counter(), 0, 0
            mid_epoch = batches_done < len(loaders.train)  # an epoch's end saves after evaluating
            if mid_epoch and config.save_every_steps and step % config.save_every_steps == 0:
                save(epoch, batches_done)
        if batches_done < len(loaders.train):  # max_steps stopped the run inside this epoch
            save(epoch, batches_done)
            break
        metrics = evaluate(model, loaders.eval, device, precision)  # the validation split
        log_metrics({"epoch": epoch + 1, "step": step, "eval": metrics})
        log(format_eval(metrics, f"epoch {epoch + 1} eval"))
        batches_done = 0
        save(epoch + 1, batches_done)

    final = evaluate(model, loaders.test, device, precision)  # the test split, once
    if rank == 0:  # DDP: one writer
        (out / "eval.json").write_text(json.dumps(final, indent=2) + "\n")
    log(format_eval(final, "test"))
    return final


def main(config: TrainConfig) -> dict:
    rank, local_rank, world_size = torchrun_ranks()  # DDP: torchrun's environment, or (0, 0, 1)
    device = pick_device(config.device, local_rank)  # DDP: cuda:LOCAL_RANK, or the CPU
    if device.type == "cuda":  # DDP: set the device before init, or every rank uses GPU 0 too
        torch.cuda.set_device(device)  # DDP: cuda:LOCAL_RANK
    backend, timeout = backend_for(device), timedelta(minutes=10)  # DDP: gloo's default is 30
    dist.init_process_group(backend, store=attempt_store(timeout), rank=rank,  # DDP: store: see 06
        world_size=world_size, timeout=timeout, device_id=device if backend == "nccl" else None)
    try:  # DDP: leave the group on success and on error alike
        return train(config, device, rank, local_rank, world_size)  # DDP: which rank
    finally:
        gc.collect()  # DDP: free the DDP wrapper (reference cycles) while its group exists
        dist.destroy_process_group()  # DDP: torchrun sees a clean exit


if __name__ == "__main__":
    main(parse_command_line(sys.argv[1:]))
