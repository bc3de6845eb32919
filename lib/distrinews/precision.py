"""Mixed precision: which dtype to compute in, the autocast and GradScaler that go with it, and whether this
torch build has kernels for the GPU at all."""

from __future__ import annotations

import contextlib
import re

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


def arch_supported(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether this torch build has kernels for a GPU of `capability`, judged from `torch.cuda.get_arch_list()`.

    `sm_XY` is machine code: it runs on XY and on later GPUs of the same major version (sm_80 on an 8.6), except
    the architecture-specific `sm_90a` kind, which runs on 9.0 alone. `compute_XY` is PTX, which the driver
    compiles for any later GPU. An empty list (a CPU-only build, an unusual one) is not judged: True.
    """
    if not arch_list:
        return True
    major, minor = capability
    mine = major * 10 + minor
    for arch in arch_list:
        kind, _, code = arch.partition("_")
        digits = re.match(r"\d+", code)
        if not digits:
            continue
        number = int(digits.group())
        if kind == "compute" and number <= mine:
            return True
        if kind == "sm" and (number == mine or (code.isdigit() and number // 10 == major and number <= mine)):
            return True
    return False


def unsupported_gpu_message(index: int = 0) -> str | None:
    """Why this torch cannot run on GPU `index` (e.g. a P100, sm_60, under torch 2.10 with CUDA 12.8), or None."""
    capability = torch.cuda.get_device_capability(index)
    arch_list = torch.cuda.get_arch_list()
    if arch_supported(capability, arch_list):
        return None
    from .environment import GPU_SETTING

    name, (major, minor) = torch.cuda.get_device_name(index), capability
    return (f"GPU {index} ({name}, sm_{major}{minor}) is not supported by torch {torch.__version__}, which has "
            f"kernels for {' '.join(arch_list)} only: its first kernel would fail with \"no kernel image is "
            f"available\". On Kaggle pick {GPU_SETTING}; elsewhere use a GPU of a supported architecture, or "
            f"hide this one (CUDA_VISIBLE_DEVICES=) to run on the CPU")


def check_gpus_supported() -> None:
    """Stop with `unsupported_gpu_message` when any visible GPU has no kernels in this torch build."""
    for index in range(torch.cuda.device_count()):
        message = unsupported_gpu_message(index)
        if message:
            raise PrecisionError(message)
