"""`make gpu-check`: refuses clearly without a GPU, and every step it plans is a command the CLI accepts."""

import sys

import pytest
from conftest import run_cli

from distrinews import gpu_check
from distrinews.cli import build_parser


def test_without_a_gpu_it_says_so_and_fails():
    proc = run_cli("gpu-check", "--out", "unused", check=False, env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 1
    assert "no CUDA GPU is visible" in proc.stderr


@pytest.mark.parametrize("bf16", [False, True])
def test_every_planned_step_is_a_command_the_cli_accepts(tmp_path, bf16):
    steps = gpu_check.plan(tmp_path, bf16=bf16)
    names = [step["name"] for step in steps]
    assert ("train bf16" in names) == bf16
    assert {"DDP: 2 ranks share the GPU (gloo)", "resume on CUDA, same result", "serve on CUDA: /health, /predict",
            "bench train fp16 and bf16", "bench infer on CUDA", "bench allreduce (NCCL, 1 rank)"} <= set(names)
    parser = build_parser()
    commands = [step["cmd"] if "cmd" in step else gpu_check.serve_command(step["serve"], 7860) for step in steps]
    for step, cmd in zip(steps, commands):
        assert cmd[0] == sys.executable
        args = cmd[cmd.index("distrinews") + 1:]  # after `-m distrinews`, as the CLI sees them
        parsed, unknown = parser.parse_known_args(args)
        assert unknown == [], f"{step['name']}: options the CLI does not know: {unknown}"
        assert callable(parsed.command)


def test_the_ddp_step_shares_one_gpu_through_the_documented_override(tmp_path, monkeypatch):
    import torch

    from distrinews.distributed import backend_for, pick_device

    ddp = next(s for s in gpu_check.plan(tmp_path, bf16=False) if s["name"].startswith("DDP"))
    assert ddp["env"] == {"DISTRINEWS_BACKEND": "gloo"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("DISTRINEWS_BACKEND", "gloo")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert pick_device("cuda", local_rank=1) == torch.device("cuda", 0)
    assert backend_for(torch.device("cuda", 0)) == "gloo"
