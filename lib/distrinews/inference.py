"""Prediction: a classifier from a checkpoint directory or a hub id, on the device it will run on.

    clf = NewsClassifier.load("runs/cpu-demo/checkpoint")
    clf.predict("Stocks rally as oil prices fall")   # {"label": "Business", "probabilities": {...}, ...}

`device="auto"` runs the model on CUDA when torch sees a GPU, else on the CPU. Where it runs on the CPU, the
default `optimize="auto"` applies dynamic int8 quantization to the Linear layers (weights stored in int8,
activations quantized on the fly): the encoder's matrix multiplies dominate CPU time, and int8 runs them several
times faster at a small accuracy cost that `distrinews bench accuracy` measures. On CUDA the weights stay
float32: the int8 kernels (`quantized::linear_dynamic`) exist only for CPUs, so an int8 model on a GPU fails on
its first forward.

Measured on the 2-core course machine, idle (`distrinews bench infer`, DistilBERT-base architecture, random
weights, 52-token headline, p50 of single-text latency): with torch's default 2 threads, transformers
pipeline 48.5 ms, fp32 NewsClassifier 47.4 ms, int8 14.9 ms, ratio 0.31; with 1 thread 69.4, 68.5 and
19.4 ms, ratio 0.28. The default keeps torch's thread count (fastest on an idle machine); on a machine
shared with other busy processes one thread did better for every variant (`num_threads=1`).
Accuracy cost (`distrinews bench accuracy`, MiniLM fine-tuned on 4,000 real rows, full AG News test set of
7,600): fp32 0.8933, int8 0.8921, -0.12 points, inside the 0.5-point budget, so every Linear layer is quantized,
the classifier head included (keeping the head in fp32 would buy nothing measurable).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .labels import LABEL_NAMES
from .modeling import build_model, build_tokenizer

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZE = ("auto", "int8", "none")


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]  # all four classes, summing to 1
    truncated: bool  # the text was longer than the model's limit and was cut

    def to_dict(self) -> dict:
        return {"label": self.label, "probabilities": self.probabilities, "truncated": self.truncated}


class NewsClassifier:
    """A loaded model and tokenizer that turn headlines into AG News labels and probabilities."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int = 128, batch_size: int = 32,
                 device: str | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        # Where the weights are, so the inputs go there too; None: ask the model (an int8 model is on the CPU).
        self.device = device or str(next(model.parameters(), torch.empty(0)).device)
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    @classmethod
    def load(cls, source: str, optimize: str = "auto", device: str = "auto", max_length: int = 128,
             num_threads: int = 0):
        """Load from a checkpoint directory or hub id onto the device it will run on.

        Args:
            optimize: "auto" (int8 where the model runs on the CPU, float32 on CUDA), "int8" (CPU only) or "none".
            device: "auto" (CUDA when torch sees a GPU, else the CPU; the CPU for optimize="int8"), "cpu" or "cuda".
            num_threads: torch CPU threads (0 = leave torch's default: one per physical core).
        """
        device = pick_device(device, optimize)
        if num_threads:
            torch.set_num_threads(num_threads)
        tokenizer = build_tokenizer(source)
        model = build_model(source, tokenizer).float().eval()
        if optimize == "int8" or (optimize == "auto" and device == "cpu"):
            model = quantize_int8(model)
        # On ZeroGPU this runs when app.py is imported, where `spaces` emulates CUDA: it replays the move on the
        # real GPU that each @spaces.GPU call borrows.
        return cls(model.to(device), tokenizer, max_length=max_length, device=device)

    @torch.inference_mode()
    def predict(self, texts: str | list[str]) -> Prediction | list[Prediction]:
        """Label one text or a list; a list is batched by length, results come back in input order."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))  # similar lengths share a batch
        results: list[Prediction | None] = [None] * len(batch)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for i, prediction in zip(chunk, self.predict_batch([batch[i] for i in chunk])):
                results[i] = prediction
        return results[0] if single else results

    def predict_batch(self, texts: list[str]) -> list[Prediction]:
        # One tokenizer pass: overflowing chunks mark the texts that were cut; only each first chunk is scored.
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                                 return_overflowing_tokens=True, return_tensors="pt")
        owner = encoded["overflow_to_sample_mapping"].tolist()
        first = [owner.index(i) for i in range(len(texts))]
        logits = self.model(input_ids=encoded["input_ids"][first].to(self.device),  # the tokenizer builds on CPU
                            attention_mask=encoded["attention_mask"][first].to(self.device)).logits
        probabilities = logits.float().softmax(-1).tolist()
        return [
            Prediction(label=self.labels[max(range(len(p)), key=p.__getitem__)],
                       probabilities=dict(zip(self.labels, p)), truncated=owner.count(i) > 1)
            for i, p in enumerate(probabilities)
        ]


def pick_device(device: str, optimize: str) -> str:
    """Where the model runs: "cpu" or "cuda"; the error names a combination that cannot run."""
    if optimize not in OPTIMIZE:
        raise ValueError(f"optimize must be auto, int8 or none; got {optimize!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "auto":
        return "cuda" if optimize != "int8" and torch.cuda.is_available() else "cpu"
    if device == "cuda" and optimize == "int8":
        raise ValueError("optimize='int8' runs only on the CPU (quantized::linear_dynamic has no CUDA kernel): "
                         "use device='cpu', or optimize='auto' for float32 weights on CUDA")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU: use device='auto' or 'cpu'")
    return device


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear layer, on the CPU: the only device with int8 kernels."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch announces a future move of this API to torchao
        return quantize_dynamic(model.cpu(), {torch.nn.Linear}, dtype=torch.qint8)


__all__ = ["DEVICES", "LABEL_NAMES", "NewsClassifier", "Prediction", "pick_device", "quantize_int8"]
