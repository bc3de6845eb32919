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
              event("gloo:all_reduce", 200, 10, tid=2),
              event("autograd::engine::evaluate_function: MmBackward0", 205, 20),
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


def test_a_gpu_trace_is_read_on_the_gpus_side():
    """On CUDA the host runs ahead of the kernels: the rows are GPU spans and kernels, CPU spans are left out."""
    events = [event("backward", 0, 5, cat="user_annotation"),  # the host queued backward's kernels in 5 ms ...
              event("autograd::engine::evaluate_function: AddmmBackward0", 0, 4),
              event("backward", 10, 100, cat="gpu_user_annotation"),  # ... which the GPU ran for 100 ms
              event("forward", 0, 10, cat="gpu_user_annotation"),
              event("ampere_sgemm_fwd", 2, 5, cat="kernel"),  # forward compute: not backward's
              event("ampere_sgemm_bwd", 10, 60, cat="kernel"),
              event("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 50, 30, cat="kernel", tid=7),  # 20 ms hidden
              event("gloo:all_reduce", 0, 3)]
    tl = internals.timeline(events)
    assert sorted(zip(tl["row"], tl["name"])) == [
        ("all-reduce", "ncclDevKernel_AllReduce_Sum_f32_RING_LL"), ("backward compute", "ampere_sgemm_bwd"),
        ("step phase", "backward"), ("step phase", "forward")]
    summary = internals.overlap_summary(tl)
    assert summary["backward ms"] == pytest.approx(100)
    assert summary["all-reduce ms during backward compute"] == pytest.approx(20)
    assert summary["exposed all-reduce ms"] == pytest.approx(10)


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


DUMP = """Timeout (0:00:02)!
Thread 0x00007f3200001000 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait

Thread 0x00007f3239630b80 (most recent call first):
  File "/venv/torch/distributed/distributed_c10d.py", line 3252 in all_reduce
  File "/venv/torch/distributed/c10d_logger.py", line 83 in wrapper
  File "{script}", line 2 in <module>
"""


def test_a_stack_dump_says_where_the_main_thread_waits(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text("import torch\ndist.all_reduce(torch.zeros(4))  # the count\n")
    dump = tmp_path / "skip-rank0.txt"
    dump.write_text(DUMP.format(script=script))
    text = internals.read_stack_dump(dump)
    assert internals.frames(text)[0] == ("/venv/torch/distributed/distributed_c10d.py", 3252, "all_reduce")
    assert internals.waiting_at(text) == "all_reduce, from hang.py line 2: dist.all_reduce(torch.zeros(4))"
    assert internals.waiting_at("Timeout (0:00:02)!") == "?"


def test_an_empty_stack_dump_is_a_clear_error_not_an_index_error(tmp_path):
    """NCCL's collectives return at once: a script that does not synchronize cancels its dumps before they fire."""
    (tmp_path / "skip-rank0.txt").write_text("")
    for path in (tmp_path / "skip-rank0.txt", tmp_path / "missing.txt"):
        with pytest.raises(AssertionError, match="is empty: that rank did not wait.*synchronize"):
            internals.read_stack_dump(path)


def test_one_process_skips_the_hang_steps_and_says_why(capsys):
    assert internals.skip_hang(2, "x") is False and capsys.readouterr().out == ""
    assert internals.skip_hang(1, "a collective one rank skips") is True
    assert "Skipped (a collective one rank skips): one process, so no rank can miss a collective" in (
        capsys.readouterr().out)


def notebook_cells() -> list[str]:
    return ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]


def test_every_hang_the_notebook_expects_is_skipped_with_one_process():
    """With one GPU, NPROC is 1: a cell expecting a hang (or reading its dumps) must not run, and must say so."""
    hangs = [cell for cell in notebook_cells() if not cell.startswith("%%writefile")
             and ("--case skip" in cell or '"eval"' in cell or "stacks/" in cell)]
    assert len(hangs) >= 5, hangs  # skip, its dumps, DETAIL, the evaluation hang, its dumps (+ the summary)
    for cell in hangs:
        assert "internals.skip_hang(NPROC" in cell or "NPROC > 1" in cell, cell


def test_the_hang_script_synchronizes_on_cuda_before_it_cancels_the_dumps(scripts):
    """NCCL's collectives return before they run: without a synchronize the dumps are cancelled before a hang shows,
    and the files stay empty. Every script that arms a dump waits for the GPU before cancelling it."""
    import ast

    armed = [name for name in SCRIPTS if "dump_traceback_later" in (scripts / name).read_text()]
    assert armed == ["hang.py"]
    for name in armed:
        tree = ast.parse((scripts / name).read_text())
        lines = {}
        for node in tree.body:  # module level: the statements every case runs
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
                    lines.setdefault(ast.unparse(call.func), node.lineno)
        assert "faulthandler.cancel_dump_traceback_later" in lines
        assert lines.get("torch.cuda.synchronize", 10**9) < lines["faulthandler.cancel_dump_traceback_later"]


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
    assert default["buckets"] == 1 and small["buckets"] > 1  # the tiny model fits one 25 MiB bucket
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
    stacks = [internals.read_stack_dump(scripts / "stacks" / f"skip-rank{r}.txt") for r in range(2)]
    assert all(" in all_reduce" in stack for stack in stacks), stacks
    # gloo: both ranks wait inside the second all_reduce, the count's
    count = "dist.all_reduce(torch.zeros(4, device=ctx.device))"
    line = next(i for i, text in enumerate((scripts / "hang.py").read_text().splitlines(), 1) if count in text)
    assert {internals.waiting_at(stack) for stack in stacks} == {f"all_reduce, from hang.py line {line}: {count}"}
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
    held, losses, precision = {}, {}, {}
    for wrap in ("ddp", "fsdp"):
        proc = launch(scripts, "memory.py", "--wrap", wrap, *TINY)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads((scripts / f"memory-{wrap}.json").read_text())
        ranks, precision[wrap] = result["ranks"], result["precision"]
        assert [r["rank"] for r in ranks] == [0, 1]
        held[wrap] = [r["held MiB"] for r in ranks]
        losses[wrap] = ranks[0]["losses"]
    n = internals.count_parameters_of("tiny")
    assert held["ddp"] == [pytest.approx(n * 16 / 2**20)] * 2  # 16 bytes per parameter on every DDP rank
    assert sum(held["fsdp"]) == pytest.approx(held["ddp"][0], rel=0.01)  # the shards add up to one replica
    assert max(held["fsdp"]) < 0.6 * held["ddp"][0]
    assert losses["fsdp"] == pytest.approx(losses["ddp"], abs=1e-3)
    assert precision == {"ddp": "fp32", "fsdp": "fp32"}  # the same recipe for both: fp16 + one scaler each on CUDA


def test_memory_script_gives_fsdp2_the_same_scaler_as_ddp(scripts):
    """On a GPU, DDP with a GradScaler against FSDP2 without one compares two recipes, not two wrappers."""
    text = (scripts / "memory.py").read_text()
    scalers = [line for line in text.splitlines() if "GradScaler(" in line]
    assert scalers == ["scaler = torch.amp.GradScaler(enabled=use_amp)  # both wraps: FSDP2's DTensor reduces the "
                       "inf check over ranks"]
