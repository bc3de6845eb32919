"""Shared test helpers: run the real CLI in a subprocess, find the real AG News rows beside the project."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata" / "ag_news"
# `make test` runs two pytest processes (pytest-xdist) on the cores; PYTEST_WORKERS=0 runs one.
SHARED_CORES = bool(os.environ.get("PYTEST_XDIST_WORKER"))
# A notebook kernel's environment: the smoke preset keeps the suite fast. Its torch threads: with the cores shared,
# one for everything a notebook starts, or a 2-thread process and its neighbour fight over 2 cores (two 2-thread
# smoke trainings side by side take 2.7 times as long as two 1-thread ones); alone, unset, as on a learner's
# machine, where torchrun gives each of its workers one thread.
NOTEBOOK_ENV = {"DISTRINEWS_PRESET": "smoke", "OMP_NUM_THREADS": "1" if SHARED_CORES else None}


# Tests that `make test` hands out one by one; every other test goes with its whole file (module fixtures are
# built once). The eleven notebook runs are most of one file's time: together they would keep one of the two
# pytest processes busy while the other ran out of work.
ONE_BY_ONE = ("tests/test_notebooks.py::test_notebook_runs_top_to_bottom_and_renders[",)


def work_unit(nodeid: str) -> str:
    """What `make test` hands to a pytest process at once: the test itself (ONE_BY_ONE), or its file."""
    return nodeid if nodeid.startswith(ONE_BY_ONE) else nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs `--dist loadfile`: whole files, except the tests of ONE_BY_ONE."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndNotebooks(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FilesAndNotebooks(config, log)


def pytest_collection_modifyitems(config, items):
    """Work units holding a `slow` test (minutes each) run first, the fewest tests first (a unit that is one slow
    test is all long): `make test` hands them to its two pytest processes in this order (--no-loadscope-reorder),
    and a slow unit handed out last would keep one process busy alone at the end."""
    units = {item: work_unit(item.nodeid) for item in items}
    slow = {units[item] for item in items if item.get_closest_marker("slow")}
    size = Counter(units.values())
    items.sort(key=lambda item: (units[item] not in slow, size[units[item]] if units[item] in slow else 0))


@pytest.fixture(autouse=True, scope="session")
def offline_and_isolated(tmp_path_factory):
    """No test may reach the network, and the token cache starts empty for the test session."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["DISTRINEWS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    # with the cores shared by two test processes, one thread each, so they do not fight
    os.environ.setdefault("OMP_NUM_THREADS", "1" if SHARED_CORES else "2")


def run_cli(*args: str, launcher: tuple[str, ...] = (sys.executable, "-m", "distrinews"), timeout: int = 600,
            check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m distrinews ARGS` (or another launcher) and return the finished process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), **(env or {})}
    proc = subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


def torchrun(*args: str, nproc: int = 2, options: tuple[str, ...] = (), check: bool = True,
             timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=N [OPTIONS] -m distrinews ARGS` with this interpreter's torchrun.

    --standalone runs a c10d rendezvous on a free port, as the README recommends on one machine.
    """
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                *options, "-m", "distrinews")
    return run_cli(*args, launcher=launcher, check=check, timeout=timeout, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_START_TIMEOUT = 120  # seconds: importing gradio and torch on a busy 2-core CI machine


@contextlib.contextmanager
def running_server(command: list[str], url: str, log: Path, cwd: Path = ROOT, env: dict | None = None):
    """Start a web server process, wait until GET /health answers, and always stop it afterwards."""
    import httpx

    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{command} exited {proc.returncode} before serving:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer on {url}/health in {SERVER_START_TIMEOUT}s:\n"
                                     f"{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not (REALDATA / "test.csv").exists():
        pytest.skip(f"real AG News data not found at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """One `distrinews train --preset smoke` run shared by the tests that inspect its outputs."""
    out = tmp_path_factory.mktemp("smoke")
    run_cli("train", "--preset", "smoke", "--output-dir", str(out))
    return out
