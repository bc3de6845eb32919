"""Prediction: a classifier from a checkpoint directory or a hub id, on the device it will run on.

    clf = NewsClassifier.load("runs/cpu-demo/checkpoint")
    clf.predict("Stocks rally as oil prices fall")   # {"label": "Business", "probabilities": {...}, ...}

`device="auto"` runs the model on CUDA when torch sees a GPU, else on the CPU. On the CPU the default
`optimize="auto"` picks, at load time, the fastest path this machine and its installed packages allow, and says
which in `clf.engine` (and why, in `clf.engine_note`, when it fell back):

1. `onnx-int8`: the model exported to ONNX and run by ONNX Runtime with dynamic int8 weights (7-bit on x86 without
   VNNI; see `distrinews.onnx_export`), when onnxruntime, onnx and onnxscript are installed and the export works;
   the exported files are cached, keyed by the weights, so only the first load pays for the export (~15 s);
2. `torch-int8`: PyTorch's dynamic int8 quantization of every Linear layer, the fallback, with a one-line
   warning naming the reason.

Why ONNX Runtime: PyTorch's dynamic int8 gains much less where the CPU lacks VNNI (`distrinews bench infer`, int8/pipeline p50
0.42 on a 2-core AVX2 EPYC, 0.29 on another machine), and ONNX Runtime runs each layer's attention as one fused
int8 kernel (QAttention), with LayerNorm and GELU fused too. Measured
side by side with `distrinews bench infer` (every candidate, the CPU's instruction sets named in the report) and
`distrinews bench accuracy` (each path's accuracy on the full test set and its label agreement with fp32); the
figures are in docs/inference.md. On CUDA the weights stay float32 in torch (the int8 kernels here are CPU kernels) and
`optimize="auto"` computes under fp16 or bf16 autocast (`torch-fp16`/`torch-bf16`; "none" keeps fp32), held to
int8's rules by `distrinews bench accuracy --device cuda`: at most 0.5 points of accuracy, 99% agreement.
`num_threads` sets torch's threads, and ONNX Runtime's follow torch's count.
"""

from __future__ import annotations

import logging
import warnings

import torch

from .labels import LABEL_NAMES
from .modeling import build_model, build_tokenizer
from .prebuilt import Prediction, predict_by_length  # the torch-free parts, shared with the CPU Space
from .precision import autocast, resolve_precision

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZE = ("auto", "onnx-int8", "onnx-fp32", "int8", "none")  # int8: PyTorch's dynamic int8
ENGINES = {  # what runs the model, as `NewsClassifier.engine` names it
    "onnx-int8": "ONNX Runtime, dynamic int8", "onnx-fp32": "ONNX Runtime, float32",
    "torch-int8": "PyTorch, dynamic int8", "torch-fp32": "PyTorch, float32",
    "torch-fp16": "PyTorch, fp16 autocast (GPU)", "torch-bf16": "PyTorch, bf16 autocast (GPU)",
}
LOG = logging.getLogger(__name__)


class NewsClassifier:
    """A loaded model and tokenizer that turn headlines into AG News labels and probabilities."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int = 128, batch_size: int = 32,
                 device: str | None = None, engine: str | None = None, engine_note: str | None = None,
                 precision: str = "fp32"):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        # Where the weights are, so the inputs go there too; None: ask the model (an int8 model is on the CPU).
        self.device = device or str(next(model.parameters(), torch.empty(0)).device)
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.precision = precision  # fp16/bf16: the forward pass under autocast, the weights stay fp32
        self.engine = engine or ("torch-" + precision if precision != "fp32" else guess_engine(model))
        self.engine_note = engine_note  # why `optimize="auto"` fell back from its first choice; None when it did not

    def describe(self) -> str:
        """`onnx-int8 on the CPU (ONNX Runtime, dynamic int8)`, plus the fallback reason when there was one."""
        where = "the GPU" if self.device.startswith("cuda") else "the CPU"
        note = f"; {self.engine_note}" if self.engine_note else ""
        return f"{self.engine} on {where} ({ENGINES[self.engine]}{note})"

    @classmethod
    def load(cls, source: str, optimize: str = "auto", device: str = "auto", max_length: int = 128,
             num_threads: int = 0):
        """Load from a checkpoint directory or hub id onto the device it will run on.

        Args:
            optimize: "auto" (on the CPU: ONNX Runtime int8, else PyTorch int8; on CUDA fp16/bf16 autocast),
                "onnx-int8", "onnx-fp32", "int8" (PyTorch's dynamic int8; these three on the CPU only) or "none"
                (float32).
            device: "auto" (CUDA when torch sees a GPU and optimize allows it, else the CPU), "cpu" or "cuda".
            num_threads: torch CPU threads, ONNX Runtime's too (0 = leave torch's default: one per physical core).
        """
        device = pick_device(device, optimize)
        if num_threads:
            torch.set_num_threads(num_threads)
        tokenizer = build_tokenizer(source)
        model = build_model(source, tokenizer).float().eval()
        if device == "cpu" and optimize in ("auto", "onnx-int8", "onnx-fp32"):
            from .onnx_export import OnnxUnavailable, load_onnx_model

            try:
                onnx_model = load_onnx_model(model, quantize=optimize != "onnx-fp32")
                engine = "onnx-fp32" if optimize == "onnx-fp32" else "onnx-int8"
                return cls(onnx_model, tokenizer, max_length=max_length, device="cpu", engine=engine)
            except OnnxUnavailable as err:
                if optimize != "auto":
                    raise ValueError(f"optimize={optimize!r} cannot run here: {err}") from err
                note = f"ONNX Runtime not used: {err}"
                LOG.warning("distrinews: %s; running PyTorch's dynamic int8 instead", note)
                return cls(quantize_int8(model), tokenizer, max_length=max_length, device="cpu",
                           engine="torch-int8", engine_note=note)
        if optimize == "int8":
            return cls(quantize_int8(model), tokenizer, max_length=max_length, device="cpu", engine="torch-int8")
        # On CUDA "auto" computes in 16 bits under autocast: fp16 below capability 8.0 (a T4), bf16 from 8.0, by
        # the capability and never by is_bf16_supported(), which is True on a T4 by emulation.
        precision = "fp32" if device == "cpu" or optimize == "none" else gpu_precision(torch.device(device))
        # On ZeroGPU this runs when app.py is imported, where `spaces` emulates CUDA: it replays the move on the
        # real GPU that each @spaces.GPU call borrows.
        return cls(model.to(device), tokenizer, max_length=max_length, device=device, precision=precision)

    @torch.inference_mode()
    def predict(self, texts: str | list[str]) -> Prediction | list[Prediction]:
        """Label one text or a list; a list is batched by length, results come back in input order."""
        return predict_by_length(self.predict_batch, texts, self.batch_size)

    def predict_batch(self, texts: list[str]) -> list[Prediction]:
        # One tokenizer pass: overflowing chunks mark the texts that were cut; only each first chunk is scored.
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                                 return_overflowing_tokens=True, return_tensors="pt")
        owner = encoded["overflow_to_sample_mapping"].tolist()
        first = [owner.index(i) for i in range(len(texts))]
        with autocast(self.precision, torch.device(self.device)):
            logits = self.model(input_ids=encoded["input_ids"][first].to(self.device),  # tokenized on the CPU
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
        raise ValueError(f"optimize must be one of {', '.join(OPTIMIZE)}; got {optimize!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    cpu_only = optimize not in ("auto", "none")
    if device == "auto":
        return "cuda" if not cpu_only and torch.cuda.is_available() else "cpu"
    if device == "cuda" and cpu_only:
        raise ValueError(f"optimize={optimize!r} runs only on the CPU (its int8 and ONNX Runtime kernels here are "
                         "CPU kernels): use device='cpu', or optimize='auto' for float32 weights on CUDA")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU: use device='auto' or 'cpu'")
    return device


def gpu_precision(device: torch.device) -> str:
    """The 16-bit format a GPU computes natively: fp16 below compute capability 8.0, bf16 from 8.0."""
    return resolve_precision("auto", device)


def guess_engine(model) -> str:
    """The engine of a model handed to NewsClassifier directly (not through `load`)."""
    if hasattr(model, "session"):
        return "onnx-int8" if model.int8 else "onnx-fp32"
    quantized = any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    return "torch-int8" if quantized else "torch-fp32"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear layer, on the CPU: the only device with int8 kernels."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch announces a future move of this API to torchao
        return quantize_dynamic(model.cpu(), {torch.nn.Linear}, dtype=torch.qint8)


__all__ = ["DEVICES", "ENGINES", "LABEL_NAMES", "NewsClassifier", "OPTIMIZE", "Prediction", "pick_device",
           "quantize_int8"]
