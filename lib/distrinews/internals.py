"""Helpers for notebook 10 (DDP's internals): the parts its scripts call, and what the kernel reads back.

    build_model("tiny"); random_batch(8, 64, vocab_size, seed)   # the workload of every script (random weights)
    timeline(read_trace("traces/small-rank0.json"))              # profiler trace -> one row per interval (GPU-side
                                                                 # spans and kernels on CUDA, CPU spans on a CPU)
    overlap_summary(tl); plot_timeline(tl, "title")              # is the all-reduce hidden behind backward?
    held_bytes(model, optimizer)                                 # weights, gradients, optimizer state on this rank
    peak_memory_mib(device)                                      # max_memory_allocated on a GPU, peak RSS on a CPU
    memory_budget(n_params, ...)                                 # the arithmetic: 16 bytes per parameter + activations
    py_spy_dump(pid); dump_stacks_while_hanging(command, "pids") # where each rank of a hung job waits
    waiting_at(read_stack_dump("stacks/skip-rank0.txt"))         # a faulthandler dump's innermost and script frames
    skip_hang(nproc, "step")                                     # one rank cannot hang: say so, and skip

The DDP code itself stays in the scripts the notebook writes; these are the parts around it.
"""

from __future__ import annotations

import gzip
import json
import linecache
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 2**20


@dataclass(frozen=True)
class Workload:
    model: str  # "tiny" (2 layers, 64 wide) or "distilbert" (DistilBERT-base's shape)
    batch: int  # examples per rank and step
    seq: int  # tokens per example
    steps: int  # timed steps per measurement
    small_bucket_mb: float  # the bucket_cap_mb that splits this model's gradients into several buckets


WORKLOADS = {  # cpu: seconds on 2 CPU processes; gpu: DistilBERT-base on Kaggle's two T4s
    "cpu": Workload(model="tiny", batch=8, seq=64, steps=6, small_bucket_mb=0.1),
    "gpu": Workload(model="distilbert", batch=32, seq=128, steps=10, small_bucket_mb=5.0),
}


def workload_for(preset: str, gpus: int) -> Workload:
    """DistilBERT-base's shape on a GPU preset with GPUs present; the tiny model on CPUs, whatever the preset
    (DistilBERT-base on two CPU processes would take minutes per measurement, and the mechanics are the same)."""
    return WORKLOADS["gpu" if gpus and preset.startswith("kaggle") else "cpu"]


def build_model(size: str, seed: int = 0) -> torch.nn.Module:
    """A DistilBERT classifier with random weights: the shape is what profiling and memory need, not the weights.

    "distilbert" has DistilBERT-base's 66 M parameters (built offline from its config, no hub download);
    "tiny" the smoke preset's 2-layer, 64-wide version.
    """
    from transformers import AutoModelForSequenceClassification, DistilBertConfig

    torch.manual_seed(seed)  # the same initial weights on every rank, as DDP's broadcast would make them anyway
    if size == "tiny":
        from .modeling import tiny_config

        config = tiny_config(vocab_size=1000, pad_token_id=0)
    elif size == "distilbert":
        config = DistilBertConfig(num_labels=4)
    else:
        raise ValueError(f"model size must be tiny or distilbert, got {size!r}")
    return AutoModelForSequenceClassification.from_config(config)


def random_batch(batch: int, seq: int, vocab_size: int, seed: int, device="cpu") -> dict[str, torch.Tensor]:
    """Random token ids and labels: each rank passes its own seed, so each sees different data, as in training."""
    gen = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, vocab_size, (batch, seq), generator=gen).to(device),
            "labels": torch.randint(0, 4, (batch,), generator=gen).to(device)}


# -- the profiler trace ---------------------------------------------------------------------------------------

PHASES = ("forward", "backward", "optimizer")  # the record_function labels the overlap script puts on each step
ROWS = ("step phase", "backward compute", "all-reduce")


def read_trace(path) -> list[dict]:
    """The events of a Chrome trace (`prof.export_chrome_trace`), plain or gzipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


def classify(event: dict, on_gpu: bool = False) -> str | None:
    """Which timeline row a complete event belongs to, or None.

    On a CPU: the `record_function` spans (`user_annotation`), the autograd engine's functions, and gloo's worker
    threads (`gloo:all_reduce`). On a GPU the host only launches kernels and runs ahead of them, so CPU spans do not
    say when anything ran: the rows are the GPU's own, the `record_function` spans as the GPU executed them
    (`gpu_user_annotation`), NCCL's kernels (`ncclDevKernel_AllReduce...`) and every other kernel.
    """
    name, cat = event.get("name", ""), event.get("cat", "")
    if event.get("ph") != "X":
        return None
    if on_gpu:
        if name in PHASES and cat == "gpu_user_annotation":
            return "step phase"
        if cat == "kernel":
            return "all-reduce" if "nccl" in name.lower() else "backward compute"
        return None
    if name in PHASES and cat == "user_annotation":
        return "step phase"
    if name.startswith("gloo:all_reduce"):
        return "all-reduce"
    if cat == "cpu_op" and name.startswith("autograd::engine::evaluate_function"):
        return "backward compute"
    return None


def timeline(events: list[dict]):
    """One row per interval: row, name, start_ms, end_ms (from the first kept event), thread.

    A trace with GPU kernels is read on the GPU's side only, and its compute row keeps the kernels that started
    inside a backward span; a CPU trace is read from its CPU spans.
    """
    import pandas as pd

    on_gpu = any(e.get("cat") == "kernel" for e in events)
    rows = [{"row": row, "name": e["name"], "start_us": float(e["ts"]), "dur_us": float(e.get("dur", 0)),
             "thread": e.get("tid")} for e in events if (row := classify(e, on_gpu))]
    if on_gpu:
        backward = [(r["start_us"], r["start_us"] + r["dur_us"]) for r in rows if r["name"] == "backward"
                    and r["row"] == "step phase"]
        rows = [r for r in rows if r["row"] != "backward compute"
                or any(a <= r["start_us"] <= b for a, b in backward)]
    if not rows:
        return pd.DataFrame(columns=["row", "name", "start_ms", "end_ms", "thread"])
    df = pd.DataFrame(rows)
    origin = df["start_us"].min()
    df["start_ms"] = (df["start_us"] - origin) / 1000
    df["end_ms"] = df["start_ms"] + df["dur_us"] / 1000
    return df[["row", "name", "start_ms", "end_ms", "thread"]].sort_values("start_ms", ignore_index=True)


def merge(intervals) -> list[tuple[float, float]]:
    """The union of (start, end) intervals, as disjoint sorted intervals."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def intersection_ms(a, b) -> float:
    """Total length of the overlap between two unions of intervals."""
    total, a, b = 0.0, merge(a), merge(b)
    i = j = 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def overlap_summary(tl) -> dict:
    """How much all-reduce time ran while backward compute was running, and how much was left exposed."""
    def spans(row, name=None):
        sel = tl[(tl["row"] == row) & ((tl["name"] == name) if name else True)]
        return list(zip(sel["start_ms"], sel["end_ms"]))

    comm, compute = spans("all-reduce"), spans("backward compute")
    comm_ms = sum(b - a for a, b in merge(comm))
    hidden = intersection_ms(comm, compute)
    backward = spans("step phase", "backward")
    return {
        "all-reduces": len(comm),
        "all-reduce ms": round(comm_ms, 2),
        "backward ms": round(sum(b - a for a, b in merge(backward)), 2),
        "all-reduce ms during backward compute": round(hidden, 2),
        "hidden %": round(100 * hidden / comm_ms, 1) if comm_ms else 0.0,
        "exposed all-reduce ms": round(comm_ms - hidden, 2),
    }


def plot_timeline(tl, title: str, ax=None):
    """Step phases, backward compute and all-reduces on their own rows, against time in milliseconds."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(12, 2.4))
    colours = {"forward": "#9ecae1", "backward": "#fdae6b", "optimizer": "#a1d99b"}
    for y, row in enumerate(ROWS):
        sel = tl[tl["row"] == row]
        bars = list(zip(sel["start_ms"], sel["end_ms"] - sel["start_ms"]))
        if row == "step phase":
            ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=[colours.get(n, "grey") for n in sel["name"]])
        else:
            ax.broken_barh(bars, (y - 0.4, 0.8), facecolors="#d62728" if row == "all-reduce" else "#3182bd")
    ax.set(title=title, xlabel="time since the first event (ms)", yticks=range(len(ROWS)), yticklabels=ROWS,
           ylim=(-0.6, len(ROWS) - 0.4))
    ax.invert_yaxis()
    return ax


def plot_timelines(timelines: dict, suptitle: str):
    """One timeline per configuration, stacked, each on its own time axis."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(timelines), 1, figsize=(12, 2.3 * len(timelines)), squeeze=False)
    for ax, (name, tl) in zip(axes[:, 0], timelines.items()):
        plot_timeline(tl, name, ax)
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


# -- memory ---------------------------------------------------------------------------------------------------

def local_numel(t: torch.Tensor) -> int:
    """Elements this rank holds: a DTensor's local shard (FSDP2), else the whole tensor."""
    return t.to_local().numel() if hasattr(t, "to_local") else t.numel()


def local_bytes(t: torch.Tensor) -> int:
    return local_numel(t) * t.element_size()


def held_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes this rank holds in weights, gradients and optimizer state, counted tensor by tensor."""
    params = list(model.parameters())
    state = [v for s in (optimizer.state.values() if optimizer else ()) for v in s.values()
             if isinstance(v, torch.Tensor) and v.dim() > 0]  # AdamW's step counter is a 0-dim tensor: ignored
    return {"weights": sum(local_bytes(p) for p in params),
            "gradients": sum(local_bytes(p.grad) for p in params if p.grad is not None),
            "optimizer state": sum(local_bytes(v) for v in state)}


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    """(MiB, what it is): the CUDA caching allocator's peak on a GPU, else the process's peak RSS (an approximation:
    it includes the Python interpreter, torch's own code and every imported library, and never goes down)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB, "torch.cuda.max_memory_allocated"
    return peak_rss_mib(), "peak resident memory of the process (ru_maxrss)"


def activation_bytes(batch: int, seq: int, hidden: int, heads: int, layers: int, bytes_per_value: int = 2) -> int:
    """Activations a transformer keeps for backward: s*b*h*(34 + 5*a*s/h) bytes per layer in 16-bit precision.

    Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 1 (with dropout
    masks); scaled by bytes_per_value / 2 for fp32 activations. An estimate: embeddings and head are left out.
    """
    per_layer = seq * batch * hidden * (34 + 5 * heads * seq / hidden)
    return int(layers * per_layer * bytes_per_value / 2)


def memory_budget(n_params: int, batch: int, seq: int, hidden: int, heads: int, layers: int,
                  activation_bytes_per_value: int = 2, ddp_buckets: bool = True):
    """The arithmetic of one data-parallel rank: a table of bytes per parameter and MiB, activations last."""
    import pandas as pd

    rows = [("weights (fp32)", 4), ("gradients (fp32)", 4), ("AdamW exp_avg + exp_avg_sq (fp32)", 8)]
    if ddp_buckets:
        rows.append(("DDP gradient buckets (unless gradient_as_bucket_view)", 4))
    table = [{"item": item, "bytes per parameter": b, "MiB": n_params * b / MIB} for item, b in rows]
    acts = activation_bytes(batch, seq, hidden, heads, layers, activation_bytes_per_value)
    table.append({"item": f"activations, batch {batch} x {seq} tokens ({8 * activation_bytes_per_value}-bit)",
                  "bytes per parameter": acts / n_params, "MiB": acts / MIB})
    df = pd.DataFrame(table).set_index("item")
    df.loc["total"] = df.sum()
    return df.round(1)


def count_parameters_of(size: str) -> int:
    """Parameters of build_model(size), counted on the meta device: no memory, no initialisation."""
    from .modeling import count_parameters

    with torch.device("meta"):
        return count_parameters(build_model(size))


# -- stacks of a hung job --------------------------------------------------------------------------------------

def py_spy_dump(pid: int, timeout: float = 30) -> str:
    """The Python stack of a running process from py-spy, or a sentence saying why there is none."""
    exe = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if exe is None:
        return ("py-spy is not installed (pip install py-spy); each rank's faulthandler dump above shows the "
                "same stacks from inside the process")
    proc = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        why = err[0] if err else f"exit status {proc.returncode}"
        hint = (" (py-spy needs ptrace: run as root, or in a container started with --cap-add SYS_PTRACE)"
                if "ermission" in why or "ptrace" in why.lower() else "")
        return f"py-spy could not read process {pid}: {why}{hint}"
    return re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)  # py-spy colours its output even into a pipe


def wait_for_pids(pid_dir, count: int, timeout: float) -> dict[int, int]:
    """{rank: pid} once `count` ranks have written pid_dir/rank{N}.pid; raises TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        found = {int(p.stem[4:]): int(p.read_text()) for p in Path(pid_dir).glob("rank*.pid") if p.read_text()}
        if len(found) >= count:
            return dict(sorted(found.items()))
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(found)} of {count} ranks wrote a pid file into {pid_dir}")
        time.sleep(0.2)


def dump_stacks_while_hanging(command: list[str], pid_dir, log, ranks: int = 2, wait_s: float = 1.5,
                              timeout: float = 120) -> tuple[dict[int, str], int]:
    """Launch a job that hangs, dump every rank's stack with py-spy while it waits, then let its timeout end it.

    Returns ({rank: stack text}, the job's exit status); the job's output goes to `log`. The script writes
    pid_dir/rank{N}.pid just before it enters the collective that hangs, so the dump catches each rank waiting.
    """
    Path(pid_dir).mkdir(parents=True, exist_ok=True)
    for old in Path(pid_dir).glob("rank*.pid"):
        old.unlink()
    with open(log, "w") as out:
        job = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        pids = wait_for_pids(pid_dir, ranks, timeout)
        time.sleep(wait_s)  # let every rank reach the collective it will wait in
        stacks = {rank: py_spy_dump(pid) for rank, pid in pids.items()}
        return stacks, job.wait(timeout=timeout)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


def skip_hang(nproc: int, step: str) -> bool:
    """True, after saying why, when a hang demo cannot run: with one process (one GPU) rank 0 calls every collective
    itself, so none is ever missing and the failure the step expects never comes."""
    if nproc > 1:
        return False
    print(f"Skipped ({step}): one process, so no rank can miss a collective; a hang needs two "
          "(two GPUs, or run the notebook without one: two gloo processes on the CPU).")
    return True


def read_stack_dump(path) -> str:
    """A rank's faulthandler dump, or AssertionError saying why it is empty (the rank never waited long enough)."""
    text = Path(path).read_text().strip() if Path(path).exists() else ""
    if not text:
        raise AssertionError(
            f"{path} is empty: that rank did not wait until its dump fired. On NCCL a collective returns before "
            "it runs, so the script must synchronize (torch.cuda.synchronize()) before it cancels the dump.")
    return text


def frames(dump: str, script: str = "hang.py") -> list[tuple[str, int, str]]:
    """(file, line, function) of each frame in a faulthandler dump, innermost first: of the thread running
    `script` (the main thread), else of the first thread dumped."""
    threads = [re.findall(r'File "([^"]+)", line (\d+) in (\S+)', block) for block in dump.split("Thread 0x")]
    threads = [t for t in threads if t]
    mine = [t for t in threads if any(Path(f).name == script for f, _, _ in t)]
    return [(f, int(line), fn) for f, line, fn in (mine or threads or [[]])[0]]


def waiting_at(dump: str, script: str = "hang.py") -> str:
    """Where a dumped rank waits: the innermost function, and the script's own line that led there."""
    stack = frames(dump, script)
    if not stack:
        return "?"
    mine = next(((f, line) for f, line, _ in stack if Path(f).name == script), None)
    if mine is None:
        return stack[0][2]
    code = linecache.getline(mine[0], mine[1]).split("#")[0].strip()  # the script's line, its comment left off
    return f"{stack[0][2]}, from {script} line {mine[1]}" + (f": {code}" if code else "")


def results_table(paths: dict[str, str | os.PathLike]):
    """JSON result files of the scripts side by side: one row per name."""
    import pandas as pd

    return pd.DataFrame({name: json.loads(Path(p).read_text()) for name, p in paths.items()}).T
