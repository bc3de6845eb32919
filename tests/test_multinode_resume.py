"""Two "machines" without a shared disk: only global rank 0's machine holds the checkpoint.

Each rank runs in its own folder (node0/, node1/) with a relative --output-dir, so each sees only its own
machine's disk. The resume decision is rank 0's, and a rank that cannot follow it stops every rank with a
message that says what to do, instead of training from another step and hanging until the timeout.
"""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

AS_ITS_OWN_MACHINE = """import os, runpy, sys
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "node" + os.environ["RANK"]))
sys.argv = ["distrinews", *sys.argv[1:]]
runpy.run_module("distrinews", run_name="__main__", alter_sys=True)
"""


def launch(tmp_path, *args, timeout=300):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(tmp_path / "machine.py"), "train", "--preset", "smoke", "--save-every-steps", "2",
               "--output-dir", "run", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)


@pytest.mark.slow
def test_a_rank_that_cannot_see_rank_0s_checkpoint_stops_every_rank_with_what_to_do(tmp_path):
    (tmp_path / "machine.py").write_text(AS_ITS_OWN_MACHINE)
    for node in ("node0", "node1"):
        (tmp_path / node).mkdir()
    crashed = launch(tmp_path, "--fail-at-step", "4")
    assert crashed.returncode != 0
    assert (tmp_path / "node0" / "run" / "checkpoint").is_dir()  # rank 0 wrote it on its machine ...
    assert not (tmp_path / "node1" / "run" / "checkpoint").exists()  # ... and rank 1's machine has none
    try:
        again = launch(tmp_path, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("the ranks decided differently (rank 0 resumed, rank 1 started fresh) and the job hung")
    assert again.returncode != 0, "rank 1 trained from scratch while rank 0 resumed"
    assert "rank 1 sees no checkpoint" in again.stderr
    assert "storage every machine mounts" in again.stderr
    assert "at step 2" in again.stderr
