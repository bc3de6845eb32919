"""The Makefile as a newcomer meets it: `make` alone lists the targets, `make clean` keeps the training runs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_alone_lists_every_target_and_runs_nothing():
    phony = re.search(r"(?m)^\.PHONY:(.*)$", (ROOT / "Makefile").read_text()).group(1).split()
    listed = [line.split()[1] for line in make().splitlines() if line.startswith("make ")]
    assert sorted(listed) == sorted(name for name in phony if name != "help")
    assert make("-n") == make("-n", "help")  # the default goal is help, not the demo


def test_make_clean_keeps_runs_and_clean_runs_removes_them():
    clean, clean_runs = make("-n", "clean"), make("-n", "clean-runs")
    assert ".venv" in clean and not re.search(r"\bruns\b", clean)
    assert clean_runs.split() == ["rm", "-rf", "runs"]
