"""Exact evaluation: every example counts once on any number of ranks.

Each rank evaluates an unpadded shard (`EvalBatchSampler`) and builds a confusion matrix; the matrices
and loss sums are added across ranks, and every metric is read from the summed matrix. No sample is
repeated, so 7 examples on 3 ranks give the same numbers as on one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .labels import LABEL_NAMES, NUM_LABELS
from .precision import autocast


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader, device: torch.device, precision: str = "fp32") -> dict:
    """Loss, accuracy, macro-F1, per-class scores and the confusion matrix (rows = true labels).

    Under a process group every rank must call this with its own shard, and `model` must be the plain model,
    not its DDP wrapper: a DDP forward may broadcast buffers, a collective that a rank whose shard has no
    batch would never join (the others would wait until the timeout).
    """
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        raise TypeError("evaluate the plain model (ddp_model.module), not its DDP wrapper: a DDP forward can run "
                        "a collective, and a rank with no evaluation batch would never join it")
    was_training = model.training
    model.eval()
    confusion = torch.zeros(NUM_LABELS, NUM_LABELS, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for batch in loader:
        labels = batch["labels"].to(device)
        with autocast(precision, device):
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        confusion.index_put_((labels, logits.argmax(-1)), torch.ones_like(labels), accumulate=True)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(confusion)  # DDP: shards are disjoint, so summed counts cover each example once
        dist.all_reduce(loss_sum)  # DDP: same for the loss, averaged below over the true example count
    model.train(was_training)
    return metrics_from_confusion(confusion.cpu(), float(loss_sum))


def metrics_from_confusion(confusion: torch.Tensor, loss_sum: float = float("nan")) -> dict:
    confusion = confusion.to(torch.float64)
    true_positive = confusion.diag()
    support, predicted = confusion.sum(1), confusion.sum(0)
    precision = true_positive / predicted.clamp(min=1)
    recall = true_positive / support.clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    n = int(confusion.sum())
    return {
        "n_examples": n,
        "loss": loss_sum / max(n, 1),
        "accuracy": float(true_positive.sum()) / max(n, 1),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(LABEL_NAMES)
        },
        "confusion_matrix": confusion.to(torch.int64).tolist(),
        "labels": list(LABEL_NAMES),
    }
