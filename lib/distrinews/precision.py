"""Mixed precision: which dtype to compute in, and the autocast and GradScaler that go with it."""

from __future__ import annotations

import contextlib

import torch


class PrecisionError(ValueError):
    """A precision the device cannot run; the message says which would work."""


def resolve_precision(requested: str, device: torch.device) -> str:
    """fp32 on CPU; on CUDA fp16 below compute capability 8.0 (Kaggle's T4 is 7.5), bf16 from 8.0.

    The capability decides, not `torch.cuda.is_bf16_supported()`: that answers True on a T4 because bf16
    is emulated there: the T4's tensor cores compute in fp16 and int8, not bf16 (NVIDIA Turing GPU Architecture
    whitepaper, 2018, "Turing Tensor Cores").
    """
    if device.type != "cuda":
        if requested in ("fp16", "bf16"):
            raise PrecisionError(f"precision {requested} needs a CUDA GPU; on CPU use --precision fp32 (or auto)")
        return "fp32"
    major, _ = torch.cuda.get_device_capability(device)
    if requested == "bf16" and major < 8:
        raise PrecisionError(f"bf16 needs compute capability 8.0+, this GPU has {major}.x: use --precision fp16")
    if requested != "auto":
        return requested
    return "bf16" if major >= 8 else "fp16"


def autocast(precision: str, device: torch.device):
    """The forward-pass context: autocast for fp16/bf16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 keep fp32's range and need none."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
