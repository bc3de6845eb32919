"""Notebook 10 (DDP's internals): its helpers (distrinews.internals) and the scripts it writes, run under torchrun.

The scripts are read from the notebook itself, exactly as IPython's %%writefile would write them, and run on two
gloo processes: the assertions are about what each step claims on its page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import matplotlib
import pytest
import torch
from conftest import ROOT
from test_course_scripts import written_files

from distrinews import internals

matplotlib.use("Agg")

NOTEBOOK = ROOT / "notebooks" / "10_ddp_internals.ipynb"
SCRIPTS = ("overlap.py", "hang.py", "options.py", "memory.py")
TINY = ("--model", "tiny", "--batch", "4", "--seq", "32", "--steps", "3")


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """A folder holding the scripts notebook 10 writes."""
    folder = tmp_path_factory.mktemp("internals")
    written = written_files(NOTEBOOK)
    for name in SCRIPTS:
        assert name in written, f"notebook 10 no longer writes {name} with %%writefile"
        (folder / name).write_text(written[name])
    return folder


def launch(folder, *args, env=None, timeout=180) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 ARGS` in `folder`, as the notebook's `!torchrun` runs it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), **(env or {})}
    full_env.pop("OMP_NUM_THREADS", None)  # torchrun gives each worker one thread, as on a learner's machine
    return subprocess.run(command, cwd=folder, env=full_env, capture_output=True, text=True, timeout=timeout)


# -- helpers ---------------------------------------------------------------------------------------------------

def event(name, ts_ms, dur_ms, cat="cpu_op", tid=1):
    """A complete event of a Chrome trace, whose times are in microseconds."""
    return {"ph": "X", "name": name, "cat": cat, "ts": ts_ms * 1000, "dur": dur_ms * 1000, "tid": tid}


def test_the_timeline_puts_phases_compute_and_all_reduces_on_their_rows():
    events = [event("backward", 0, 100, cat="user_annotation"),
              event("autograd::engine::evaluate_function: AddmmBackward0", 0, 60),
              event("aten::mm", 5, 10),  # nested op: not a row of its own
              event("gloo:all_reduce", 40, 30, tid=2),  # 20 ms during compute, 10 after it
              event("ncclDevKernel_AllReduce_Sum_f32", 200, 10, cat="kernel"),
              event("ampere_sgemm", 205, 20, cat="kernel"),
              {"ph": "i", "name": "marker", "ts": 1}]
    tl = internals.timeline(events)
    assert list(tl["row"]) == ["step phase", "backward compute", "all-reduce", "all-reduce", "backward compute"]
    summary = internals.overlap_summary(tl)
    assert summary["all-reduces"] == 2
    assert summary["all-reduce ms"] == pytest.approx(40)
    assert summary["all-reduce ms during backward compute"] == pytest.approx(25)  # 20 ms + 5 ms
    assert summary["exposed all-reduce ms"] == pytest.approx(15)
    assert summary["hidden %"] == pytest.approx(62.5)
    assert summary["backward ms"] == pytest.approx(100)


def test_interval_arithmetic():
    assert internals.merge([(3, 4), (0, 2), (1, 2.5)]) == [(0, 2.5), (3, 4)]
    assert internals.intersection_ms([(0, 10)], [(2, 3), (5, 20)]) == pytest.approx(6)
    assert internals.intersection_ms([(0, 1)], [(1, 2)]) == 0


def test_memory_arithmetic_is_16_bytes_per_parameter_plus_buckets_and_activations():
    budget = internals.memory_budget(1_000_000, batch=32, seq=128, hidden=768, heads=12, layers=6)
    per_param = budget["bytes per parameter"]
    assert per_param.iloc[:3].sum() == 16 and per_param.iloc[3] == 4  # weights, grads, AdamW; then DDP buckets
    # Korthikanti et al.: s*b*h*(34 + 5*a*s/h) bytes per layer in 16 bit: 128*32*768*(34 + 10) * 6 layers
    assert internals.activation_bytes(32, 128, 768, 12, 6) == 128 * 32 * 768 * 44 * 6
    assert internals.activation_bytes(32, 128, 768, 12, 6, bytes_per_value=4) == 2 * 128 * 32 * 768 * 44 * 6
    assert budget.loc["total", "MiB"] == pytest.approx(budget["MiB"].iloc[:-1].sum(), abs=0.2)


def test_parameters_are_counted_without_building_the_weights():
    assert internals.count_parameters_of("tiny") == sum(p.numel() for p in internals.build_model("tiny").parameters())
    assert 66_000_000 < internals.count_parameters_of("distilbert") < 68_000_000  # DistilBERT-base + 4-class head


def test_held_bytes_counts_weights_gradients_and_adamw_state():
    model = torch.nn.Linear(10, 10)  # 110 parameters
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 10)).sum().backward()
    optimizer.step()
    assert internals.held_bytes(model, optimizer) == {"weights": 440, "gradients": 440, "optimizer state": 880}
    assert internals.held_bytes(model) == {"weights": 440, "gradients": 440, "optimizer state": 0}


def test_peak_memory_on_a_cpu_is_the_process_peak_rss():
    before = internals.peak_rss_mib()
    block = bytearray(64 * 2**20)  # touch 64 MiB
    block[::4096] = b"x" * len(block[::4096])
    value, what = internals.peak_memory_mib(torch.device("cpu"))
    assert value >= before and value > 64 and "resident" in what
    del block


def test_the_workload_follows_the_preset():
    assert internals.workload_for("smoke", gpus=2).model == "tiny"
    assert internals.workload_for("cpu-course", gpus=0).model == "tiny"
    assert internals.workload_for("kaggle-t4x2", gpus=0).model == "tiny"
    assert internals.workload_for("kaggle-t4x2", gpus=2).model == "distilbert"
    with pytest.raises(ValueError, match="tiny or distilbert"):
        internals.build_model("huge")


def test_py_spy_dump_says_why_when_it_cannot(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(internals.sys, "executable", str(tmp_path / "python"))
    assert "py-spy is not installed" in internals.py_spy_dump(os.getpid())
    fake = tmp_path / "py-spy"  # a py-spy that is refused ptrace, as in a container without SYS_PTRACE
    fake.write_text("#!/bin/sh\necho 'Error: Permission denied (os error 13)' >&2\nexit 1\n")
    fake.chmod(0o755)
    message = internals.py_spy_dump(os.getpid())
    assert "Permission denied" in message and "SYS_PTRACE" in message


def test_wait_for_pids_reads_every_rank_and_times_out(tmp_path):
    (tmp_path / "rank0.pid").write_text("11")
    with pytest.raises(TimeoutError, match="only 1 of 2"):
        internals.wait_for_pids(tmp_path, 2, timeout=0.3)
    (tmp_path / "rank1.pid").write_text("12")
    assert internals.wait_for_pids(tmp_path, 2, timeout=1) == {0: 11, 1: 12}


# -- the scripts, under torchrun -------------------------------------------------------------------------------

def test_overlap_script_profiles_buckets_that_overlap_backward(scripts):
    proc = launch(scripts, "overlap.py", *TINY, "--small-bucket-mb", "0.1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((scripts / "overlap.json").read_text())
    default, small, view = results.values()
    assert default["buckets"] == 1 and small["buckets"] > 1  # the tiny model fits one 25 MB bucket
    assert view["gradient storages"] == view["buckets"] < view["parameters"] == small["gradient storages"]
    summaries = []
    for r in results.values():
        tl = internals.timeline(internals.read_trace(scripts / r["trace"]))
        assert set(tl["row"]) == set(internals.ROWS)
        summaries.append(internals.overlap_summary(tl))
    assert summaries[1]["all-reduces"] > summaries[0]["all-reduces"]
    # small buckets: some all-reduce really runs while the autograd engine still computes gradients
    assert summaries[1]["all-reduce ms during backward compute"] > 0
    fig = internals.plot_timelines({name: internals.timeline(internals.read_trace(scripts / r["trace"]))
                                    for name, r in results.items()}, "test")
    assert len(fig.axes) == 3


def test_a_skipped_collective_times_out_and_detail_names_the_mismatch(scripts):
    start = time.monotonic()
    proc = launch(scripts, "hang.py", "--case", "skip", "--timeout", "3")
    assert proc.returncode != 0
    assert "Timed out" in proc.stderr or "timed out" in proc.stderr.lower()
    assert time.monotonic() - start < 90, "the short timeout must end the hang"
    stacks = [(scripts / "stacks" / f"skip-rank{r}.txt").read_text() for r in range(2)]
    assert all(" in all_reduce" in stack for stack in stacks), stacks
    # gloo paired rank 0's all_reduce of the loss with rank 1's of the count, so rank 0 went on and waits alone
    assert "rank 0: all_reduce(correct)" in proc.stderr
    detail = launch(scripts, "hang.py", "--case", "skip", "--timeout", "3", env={"TORCH_DISTRIBUTED_DEBUG": "DETAIL"})
    assert detail.returncode != 0
    assert "Detected mismatch between collectives" in detail.stderr
    assert re.search(r"OpType=ALLREDUCE, TensorShape=\[1\]", detail.stderr)
    assert re.search(r"OpType=ALLREDUCE, TensorShape=\[4\]", detail.stderr)


def test_evaluation_through_ddp_hangs_in_the_buffer_broadcast_and_the_unwrapped_model_does_not(scripts):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "hang.py",
               "--case", "eval", "--timeout", "3", "--pid-dir", "pids"]
    cwd = os.getcwd()
    os.chdir(scripts)  # the helper launches the command where it is called, as in the notebook's folder
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT / "lib")
    try:
        stacks, status = internals.dump_stacks_while_hanging(command, "pids", "eval.log", ranks=2)
    finally:
        os.chdir(cwd)
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
    assert status != 0
    assert set(stacks) == {0, 1}
    inside = [(scripts / "stacks" / f"eval-rank{r}.txt").read_text() for r in range(2)]
    assert "_sync_buffers" in inside[0] and "all_reduce" in inside[1], inside
    fixed = launch(scripts, "hang.py", "--case", "eval-fixed", "--timeout", "3")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert re.search(r"rank 0: accuracy over 8 examples", fixed.stderr)


def test_unused_parameters_fail_and_the_options_fix_them(scripts):
    proc = launch(scripts, "options.py", "--case", "unused", env={"TORCH_DISTRIBUTED_DEBUG": "INFO"})
    assert proc.returncode != 0
    assert "Expected to have finished reduction in the prior iteration" in proc.stderr
    assert "spare_head.weight" in proc.stderr
    fixed = launch(scripts, "options.py", "--case", "measure", "--steps", "2")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    results = json.loads((scripts / "options.json").read_text())
    assert results["Join: steps per rank"] == [5, 3]
    for name in ("spare head, find_unused_parameters=True", "spare head, static_graph=True"):
        assert results[name] > 0


def test_fsdp2_holds_less_state_per_rank_than_ddp_and_trains_the_same(scripts):
    held, losses = {}, {}
    for wrap in ("ddp", "fsdp"):
        proc = launch(scripts, "memory.py", "--wrap", wrap, *TINY)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ranks = json.loads((scripts / f"memory-{wrap}.json").read_text())["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        held[wrap] = [r["held MiB"] for r in ranks]
        losses[wrap] = ranks[0]["losses"]
    n = internals.count_parameters_of("tiny")
    assert held["ddp"] == [pytest.approx(n * 16 / 2**20)] * 2  # 16 bytes per parameter on every DDP rank
    assert sum(held["fsdp"]) == pytest.approx(held["ddp"][0], rel=0.01)  # the shards add up to one replica
    assert max(held["fsdp"]) < 0.6 * held["ddp"][0]
    assert losses["fsdp"] == pytest.approx(losses["ddp"], abs=1e-3)
