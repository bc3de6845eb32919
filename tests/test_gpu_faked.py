"""What a GPU machine does that a CPU cannot show, faked on the CPU.

Capability, architecture list, device count and NCCL's presence are faked; the code under test is the real one.
"""

from __future__ import annotations

import ast
import datetime
import types

import pytest
import torch
import torch.distributed as dist
from conftest import ROOT, free_port

from distrinews import distributed
from distrinews.distributed import DistError, backend_for, pick_device

# Kaggle's torch 2.10 with CUDA 12.8: no sm_60 (the P100) and no sm_50 any more
TORCH_210_CU128 = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


def pretend_gpus(monkeypatch, capability=(7, 5), count=1, arch_list=TORCH_210_CU128, name="Tesla T4"):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch_list))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


# ---- case 3: two ranks sharing one GPU ------------------------------------------------------------------------


def ddp_calls(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "DDP", "DistributedDataParallel"):
            yield node


def test_every_ddp_wrap_in_the_library_names_the_ranks_actual_device(monkeypatch):
    """Under DISTRINEWS_BACKEND=gloo rank 1 of a one-GPU machine runs on cuda:0: device_ids=[local_rank] would be
    [1], and DDP would move its inputs to a GPU that does not exist ("invalid device ordinal")."""
    monkeypatch.setenv("DISTRINEWS_BACKEND", "gloo")
    pretend_gpus(monkeypatch, count=1)
    device = pick_device("cuda", local_rank=1)
    assert device == torch.device("cuda", 0)
    wraps = 0
    for path in sorted((ROOT / "lib" / "distrinews").glob("*.py")):
        for call in ddp_calls(path):
            ids = next((k.value for k in call.keywords if k.arg == "device_ids"), None)
            if ids is None:
                continue
            wraps += 1
            names = {n.id for n in ast.walk(ids) if isinstance(n, ast.Name)}
            where = f"{path.name}:{call.lineno}: device_ids={ast.unparse(ids)}"
            assert "local_rank" not in names, where
            # evaluated for the shared-GPU rank, the expression names its real device (an index or the device)
            scope = {"device": device, "ctx": types.SimpleNamespace(device=device), "local_rank": 1}
            named = eval(compile(ast.Expression(ids), where, "eval"), scope)
            assert [torch.device("cuda", d) if isinstance(d, int) else d for d in named] == [device], where
    assert wraps >= 2  # train_ddp.py and bench_train.py


# ---- case 4: a GPU this torch has no kernels for -----------------------------------------------------------


def test_a_p100_under_a_torch_without_sm_60_stops_the_device_pick_and_names_kaggles_setting(monkeypatch):
    pretend_gpus(monkeypatch, capability=(6, 0), name="Tesla P100-PCIE-16GB")
    with pytest.raises(DistError, match=r"sm_60.*GPU T4 x2"):
        pick_device("auto")
    pretend_gpus(monkeypatch, capability=(7, 5))
    assert pick_device("auto") == torch.device("cuda", 0)


def test_the_hardware_check_of_a_notebook_stops_on_an_unsupported_gpu(monkeypatch, capsys):
    from distrinews import course

    pretend_gpus(monkeypatch, capability=(6, 0), name="Tesla P100-PCIE-16GB")
    props = types.SimpleNamespace(name="Tesla P100-PCIE-16GB", major=6, minor=0, total_memory=16 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "device", FakeDeviceContext)
    hardware = course.probe_hardware()
    assert "sm_60" in hardware["gpus"][0]["unsupported"]
    monkeypatch.setattr(course, "describe_hardware", lambda: hardware)
    with pytest.raises(course.HardwareError, match="GPU T4 x2"):
        course.check_environment("03")


class FakeDeviceContext:
    def __init__(self, index):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- case 5: PyTorch without NCCL (Windows) ----------------------------------------------------------------


def test_without_nccl_gpu_ranks_fall_back_to_gloo_and_say_so_once(monkeypatch, capsys):
    monkeypatch.delenv("DISTRINEWS_BACKEND", raising=False)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    assert backend_for(torch.device("cuda", 0)) == "gloo"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "no NCCL" in lines[0] and "gloo" in lines[0]
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    assert backend_for(torch.device("cuda", 0)) == "nccl"
    assert backend_for(torch.device("cpu")) == "gloo"
    assert capsys.readouterr().out == ""


# ---- case 7: a dead attempt's NCCL keys in torchrun's store --------------------------------------------------


def test_a_new_attempt_clears_the_dead_attempts_exception_dump_from_the_raw_store(monkeypatch):
    """ProcessGroupNCCL polls "exception_dump" in its store with every PrefixStore unwrapped (its globalStore_),
    so the attempt prefix cannot hide a key a timed-out earlier attempt set in torchrun's agent store."""
    port = free_port()
    agent = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=30))
    agent.set("exception_dump", "dead attempt's rank 1 timed out")  # what its watchdog left
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                       "TORCHELASTIC_USE_AGENT_STORE": "True"}.items():
        monkeypatch.setenv(key, value)
    store = distributed.attempt_store(datetime.timedelta(seconds=30))
    assert isinstance(store, dist.PrefixStore)
    assert not agent.check(["exception_dump"]), "the next NCCL group's heartbeat monitor would read it and dump"
    assert not store.underlying_store.check(["exception_dump"])
