"""Precision follows compute capability, never torch.cuda.is_bf16_supported()."""

import pytest
import torch

from distrinews.precision import PrecisionError, make_scaler, resolve_precision

CUDA = torch.device("cuda", 0)


def pretend_gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers


def test_cpu_trains_in_fp32_and_refuses_half_precision():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(PrecisionError, match="needs a CUDA GPU"):
        resolve_precision("fp16", torch.device("cpu"))


def test_t4_gets_fp16_even_though_it_claims_bf16(monkeypatch):
    pretend_gpu(monkeypatch, (7, 5))
    assert resolve_precision("auto", CUDA) == "fp16"
    with pytest.raises(PrecisionError, match="capability 8.0"):
        resolve_precision("bf16", CUDA)


def test_ampere_and_newer_get_bf16(monkeypatch):
    pretend_gpu(monkeypatch, (8, 0))
    assert resolve_precision("auto", CUDA) == "bf16"
    assert resolve_precision("fp16", CUDA) == "fp16"


def test_only_fp16_scales_the_loss():
    assert not make_scaler("fp32", torch.device("cpu")).is_enabled()
