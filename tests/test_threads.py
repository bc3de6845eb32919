"""Every core used on a CPU: torchrun's OMP_NUM_THREADS=1 default gives way to each rank's share of the cores,
a user's own setting does not (distributed.cpu_threads), and the training loop leaves the loss on the device."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from distrinews import distributed
from distrinews.distributed import cpu_threads

LAUNCHER_WITHOUT_OMP = {"PATH": "/usr/bin"}  # torchrun's own environment when the user did not set it


def torchrun_worker(monkeypatch, local_world_size: int, omp: str | None, launcher: dict | None):
    """This process as a torchrun worker on a machine running `local_world_size` of them."""
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": str(local_world_size),
                        "LOCAL_WORLD_SIZE": str(local_world_size)}.items():
        monkeypatch.setenv(name, value)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr(distributed, "launcher_environment", lambda: launcher)


@pytest.mark.parametrize("cores, processes, expected", [(8, 2, 4), (16, 4, 4), (3, 2, 1), (2, 4, 1), (7, 2, 3)])
def test_torchruns_default_gives_way_to_each_ranks_share_of_the_cores(monkeypatch, cores, processes, expected):
    torchrun_worker(monkeypatch, processes, omp="1", launcher=LAUNCHER_WITHOUT_OMP)
    assert cpu_threads(cores=cores) == expected
    torchrun_worker(monkeypatch, processes, omp="1", launcher=None)  # no /proc (macOS): 1 is taken for torchrun's
    assert cpu_threads(cores=cores) == expected


def test_the_users_own_setting_wins(monkeypatch):
    torchrun_worker(monkeypatch, 2, omp="1", launcher={"OMP_NUM_THREADS": "1"})  # OMP_NUM_THREADS=1 torchrun ...
    assert cpu_threads(cores=8) == 1
    torchrun_worker(monkeypatch, 2, omp="3", launcher={"OMP_NUM_THREADS": "3"})
    assert cpu_threads(cores=8) == 3
    torchrun_worker(monkeypatch, 2, omp="1", launcher=LAUNCHER_WITHOUT_OMP)
    assert cpu_threads(5, cores=8) == 5  # --num-threads 5
    torchrun_worker(monkeypatch, 2, omp=None, launcher=LAUNCHER_WITHOUT_OMP)  # another launcher: no default at all
    assert cpu_threads(cores=8) == 4


def test_one_plain_process_keeps_torchs_default(monkeypatch):
    import torch

    for name in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert cpu_threads(cores=64) == torch.get_num_threads()


def test_a_real_torchrun_worker_tells_torchruns_default_from_the_users(tmp_path):
    """Through torchrun itself: /proc/PPID/environ is torchrun's environment as the user started it."""
    if not os.path.exists(f"/proc/{os.getpid()}/environ"):
        pytest.skip("no /proc here: the launcher's environment cannot be read")
    script = tmp_path / "threads.py"
    script.write_text("import os\nfrom distrinews.distributed import cpu_threads\n"
                      "print(f'rank {os.environ[\"RANK\"]} OMP={os.environ[\"OMP_NUM_THREADS\"]} "
                      "threads={cpu_threads(cores=8)}')\n")
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script))
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "PYTHONPATH": str(ROOT / "lib")}
    proc = subprocess.run(launcher, capture_output=True, text=True, timeout=120, env=env, check=True)
    assert sorted(line for line in proc.stdout.splitlines() if line.startswith("rank ")) == [
        "rank 0 OMP=1 threads=4", "rank 1 OMP=1 threads=4"], proc.stdout


def test_the_training_loop_reads_the_loss_only_on_logging_steps():
    """A GPU never idles while the host waits for a number it does not print: every `.item()` of the step loop
    sits inside its `if step % config.log_every_steps == 0:` block."""
    for script in ("train_single.py", "train_ddp.py"):
        tree = ast.parse((ROOT / "lib" / "distrinews" / script).read_text())
        loop = next(node for node in ast.walk(tree) if isinstance(node, ast.For)  # the step loop: its body
                    and any(isinstance(s, ast.Assign) and ast.unparse(s.value).startswith("train_step(")  # calls
                            for s in node.body))  # train_step itself (the epoch loop only contains it)
        logging = [node for node in ast.walk(loop) if isinstance(node, ast.If)
                   and "log_every_steps" in ast.unparse(node.test)]
        inside = {id(call) for block in logging for call in ast.walk(block)}
        reads = [call for call in ast.walk(loop) if isinstance(call, ast.Call)
                 and isinstance(call.func, ast.Attribute) and call.func.attr in ("item", "tolist", "cpu")]
        assert logging and reads, script
        assert all(id(call) in inside for call in reads), f"{script}: a host sync outside the logging step"
