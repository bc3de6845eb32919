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

import json
import math
import sys
import time

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from distrinews import checkpoint as ckpt
from distrinews.batching import build_eval_loader, build_train_loader, describe_padding
from distrinews.config import TrainConfig, describe_batch, parse_command_line
from distrinews.distributed import pick_device, set_cpu_threads
from distrinews.evaluation import evaluate
from distrinews.modeling import build_model, build_tokenizer, count_parameters
from distrinews.precision import autocast, make_scaler, resolve_precision
from distrinews.training import (check_resumable, disable_dropout, format_eval, load_data, maybe_crash,
                                 progress_interval, start_output_dir, tokenize_splits, write_metrics)


def train_step(model, micro_batches, optimizer, scheduler, scaler, precision, max_grad_norm):
    """One optimizer step over `micro_batches` (gradient accumulation); returns the mean loss, on the device."""
    device = next(model.parameters()).device
    total = torch.zeros((), device=device)
    for batch in micro_batches:
        with autocast(precision, device):  # matrix multiplies in fp16/bf16, the weights stay fp32
            loss = model(**{k: batch[k].to(device, non_blocking=True)
                            for k in ("input_ids", "attention_mask", "labels")}).loss / len(micro_batches)
        scaler.scale(loss).backward()  # the scale keeps small fp16 gradients from flushing to zero
        total += loss.detach()  # no .item() here: on a GPU it would wait for the step to finish
    if max_grad_norm:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)  # skipped when an fp16 gradient overflowed; update() then lowers the scale
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def train(config: TrainConfig, device: torch.device) -> dict:
    """Train, evaluate after every epoch, checkpoint; returns the test metrics (also written to eval.json)."""
    log = print  # one name for "say it" (train_ddp.py: rank 0 alone)
    threads = set_cpu_threads(config.num_threads, device)  # --num-threads, else this process's share of the cores
    precision = resolve_precision(config.precision, device)  # by compute capability: fp16 on a T4, bf16 from 8.0
    resume_from = ckpt.find_checkpoint(config.output_dir) if config.resume else None
    if resume_from:
        check_resumable(resume_from, config)  # the same recipe, or --resume false to start over
    log("config: " + " ".join(f"{k}={v}" for k, v in config.to_dict().items()))
    log(f"device: {device} | world size 1 | precision {precision} | {threads} CPU threads")
    log(describe_batch(config, world_size=1))

    # Data: tokenized once (cached on disk), batched by similar length, each batch padded to its longest text
    data = load_data(config, log)
    tokenizer = build_tokenizer(str(resume_from or config.model_name))
    splits = tokenize_splits(data, tokenizer, config.max_length)
    pad, pin = tokenizer.pad_token_id, device.type == "cuda"
    train_loader = build_train_loader(splits.train, config.padding, config.per_device_batch_size,
                                      config.max_length, config.seed, pad, pin_memory=pin)
    eval_loader = build_eval_loader(splits.eval, config.eval_batch_size, pad, pin_memory=pin)
    test_loader = build_eval_loader(splits.test, config.eval_batch_size, pad, pin_memory=pin)

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
        start_epoch, step, batches_done = ckpt.restore_training_state(
            resume_from, optimizer, scheduler, scaler, precision, device, log=log)
    else:
        torch.manual_seed(config.seed)  # dropout masks, reproducibly
    out = start_output_dir(config, fresh=not resume_from)

    def save(epochs_done: int, batches_done: int) -> None:
        """Weights and tokenizer (from_pretrained layout) plus the training state; written atomically."""
        rng = [ckpt.capture_rng_state()]
        state = ckpt.training_state(optimizer, scheduler, scaler, precision, epochs_done, step, batches_done, rng)
        ckpt.save_checkpoint(out, model, tokenizer, state, config)

    last_eval = {}
    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps:
            break
        last_eval = {}  # the weights are about to change
        # a new shuffle every epoch; skip_batches (this library's, not PyTorch's) resumes mid-epoch
        train_loader.batch_sampler.set_epoch(epoch, skip_batches=batches_done)
        model.train()
        batches, remaining = iter(train_loader), len(train_loader) - batches_done
        steps_left = min(math.ceil(remaining / config.grad_accum_steps), total_steps - step)
        done = steps_per_epoch - math.ceil(remaining / config.grad_accum_steps)  # steps before a resume
        bar = tqdm(total=steps_per_epoch, initial=done, desc=f"epoch {epoch + 1}/{config.epochs}",
                   mininterval=progress_interval())
        clock, samples, tokens = time.perf_counter(), 0, 0
        for _ in range(steps_left):
            maybe_crash(config, step)  # --fail-at-step N: the crash that notebook 06 recovers from
            micro = [next(batches) for _ in range(min(config.grad_accum_steps, remaining))]
            loss = train_step(model, micro, optimizer, scheduler, scaler, precision, config.max_grad_norm)
            step, batches_done, remaining = step + 1, batches_done + len(micro), remaining - len(micro)
            samples += sum(len(b["labels"]) for b in micro)
            tokens += sum(int(b["attention_mask"].sum()) for b in micro)  # real tokens, not padding
            bar.update()
            if step % config.log_every_steps == 0:
                loss = loss.item()  # the loop's one host-device sync, on logging steps only: a GPU never waits
                stats = torch.tensor([loss, samples, tokens], dtype=torch.float64)
                seconds = time.perf_counter() - clock
                bar.set_postfix(loss=f"{stats[0].item():.4f}", refresh=False)
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
        last_eval = evaluate(model, eval_loader, device, precision)
        write_metrics(out, {"epoch": epoch + 1, "step": step, "eval": last_eval})
        log(format_eval(last_eval, f"epoch {epoch + 1} eval"))
        batches_done = 0
        save(epoch + 1, batches_done)

    final = last_eval if last_eval and splits.eval is splits.test else evaluate(model, test_loader, device, precision)
    (out / "eval.json").write_text(json.dumps(final, indent=2) + "\n")
    log(format_eval(final, "test"))
    return final


def main(config: TrainConfig) -> dict:
    device = pick_device(config.device)  # CUDA when there is a GPU (and --device allows it), else the CPU
    return train(config, device)


if __name__ == "__main__":
    main(parse_command_line(sys.argv[1:]))
