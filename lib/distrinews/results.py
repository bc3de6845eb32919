"""Benchmark results: the hardware a row was measured on, CSV rows on disk, scaling arithmetic and plots.

    rows = read_results("runs/results", "train")               # every `distrinews bench train` row so far
    reference = rows[rows.world_size == rows.world_size.max()].iloc[-1]
    scaling_table(comparable_to(rows, reference))               # speedup and efficiency against 1 process

`distrinews bench train|allreduce` append here (`--results-dir`, default runs/results, which git ignores);
notebook 07 reads the same files. Speedup = throughput(N) / throughput(1) at the same per-device batch,
padding, precision and hardware; efficiency = speedup / N.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
from pathlib import Path

DEFAULT_RESULTS_DIR = "runs/results"
# A scaling comparison holds these fixed; only the world size (and the DDP knobs, which need N > 1) may vary.
COMPARABLE = ("label", "model", "precision", "padding", "per_device_batch", "grad_accum_steps", "max_length")
DDP_KNOBS = ("bucket_cap_mb", "comm_hook")
SCALING_COLUMNS = ("label", "world_size", *DDP_KNOBS, "global_batch", "samples_per_s", "tokens_per_s",
                   "speedup", "efficiency")


class ScalingError(ValueError):
    """Rows that cannot be compared honestly; the message says which column differs and how to select."""


# ---- hardware --------------------------------------------------------------------------------


def describe_hardware(device) -> dict:
    """What a measurement ran on: device name and count, compute capability, P2P, library versions."""
    import torch
    import transformers

    info = {"device_type": device.type, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "transformers_version": transformers.__version__}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        nccl = torch.cuda.nccl.version()
        info.update(device_name=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count(),
                    compute_capability=f"{major}.{minor}", nccl_p2p=nccl_p2p_status(),
                    nccl_version=".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl))
    else:
        info.update(device_name="cpu", gpu_count=0, compute_capability="n/a", nccl_p2p="n/a (CPU)",
                    nccl_version="n/a")
    info["label"] = hardware_label(info)
    return info


def hardware_label(info: dict) -> str:
    """`Tesla T4` or `CPU: AMD EPYC (2 cores)`: the name rows are grouped and plotted by."""
    if info["device_type"] == "cuda":
        return info["device_name"]
    return f"CPU: {info['cpu']} ({info['cpu_count']} cores)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def nccl_p2p_status() -> str:
    """Whether GPU 0 can read GPU 1's memory directly (NCCL's P2P transport), and NCCL_P2P_DISABLE."""
    import torch

    if torch.cuda.device_count() < 2:
        return "n/a (one GPU)"
    peer = "yes" if torch.cuda.can_device_access_peer(0, 1) else "no"
    disabled = os.environ.get("NCCL_P2P_DISABLE", "unset")
    return f"peer access {peer}; NCCL_P2P_DISABLE={disabled}"


def timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- CSV rows --------------------------------------------------------------------------------


def append_rows(results_dir: str | Path, kind: str, rows: list[dict]) -> Path:
    """Add rows to RESULTS_DIR/KIND.csv; new columns widen the file instead of being dropped."""
    path = Path(results_dir) / f"{kind}.csv"
    old = read_rows(path) if path.exists() else []
    columns = list(dict.fromkeys(column for row in old + rows for column in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(old + rows)
    os.replace(tmp, path)  # a reader (the notebook) never sees half a file
    return path


def read_rows(path: str | Path) -> list[dict]:
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_results(results_dir: str | Path, kind: str):
    """RESULTS_DIR/KIND.csv as a pandas DataFrame (numbers parsed, empty cells as NaN)."""
    import pandas as pd

    path = Path(results_dir) / f"{kind}.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `distrinews bench {kind} --results-dir {results_dir}` first")
    return pd.read_csv(path)


def latest(rows):
    """The newest row of each distinct setup (a re-run notebook appends; it should not double count)."""
    key = [c for c in (*COMPARABLE, "world_size", *DDP_KNOBS, "size_bytes", "backend") if c in rows.columns]
    return rows.drop_duplicates(subset=key, keep="last").reset_index(drop=True)


def comparable_to(rows, reference):
    """The rows measured with the same settings as `reference` (a row), any world size."""
    same = rows[COMPARABLE[0]] == reference[COMPARABLE[0]]
    for column in COMPARABLE[1:]:
        same &= rows[column] == reference[column]
    return rows[same]


# ---- scaling arithmetic ----------------------------------------------------------------------


def scaling_table(rows):
    """Speedup and efficiency of each row against the single-process row, with absolute throughput.

    The rows must share hardware, model, precision, padding, per-device batch, accumulation and length:
    speedup at a different per-device batch measures the batch, not the processes. Raises ScalingError.
    """
    import pandas as pd

    table = pd.DataFrame(rows).reset_index(drop=True)
    if table.empty:
        raise ScalingError("no rows to compare: run `distrinews bench train` alone and under torchrun first")
    for column in COMPARABLE:
        values = table[column].astype(str).unique()
        if len(values) > 1:
            raise ScalingError(f"the rows differ in {column} ({', '.join(values)}): speedup compares runs at the "
                               f"same per-device batch, padding and hardware; select rows with one {column} "
                               f"(results.comparable_to(rows, reference))")
    baseline = table[table["world_size"] == 1]
    if len(baseline) != 1:
        raise ScalingError(f"need exactly one row with world_size 1 as the baseline, found {len(baseline)}: "
                           f"run `distrinews bench train` without torchrun once (results.latest keeps the newest)")
    knobs = [c for c in DDP_KNOBS if c in table.columns]
    repeated = table.duplicated(subset=["world_size", *knobs], keep=False)
    if repeated.any():
        raise ScalingError(f"{int(repeated.sum())} rows share a world size and DDP settings: pass one row per "
                           f"setup (results.latest(rows) keeps the newest)")
    base = baseline.iloc[0]
    table["speedup"] = table["samples_per_s"] / base["samples_per_s"]
    table["efficiency"] = table["speedup"] / table["world_size"]
    columns = [c for c in SCALING_COLUMNS if c in table.columns]
    return table.sort_values(["world_size", *knobs], na_position="first")[columns].reset_index(drop=True)


def allreduce_ms(bandwidth, size_bytes: float, world_size: int) -> float:
    """Milliseconds to all-reduce `size_bytes` among `world_size` processes, read off measured rows.

    Between measured sizes, log-log interpolation; beyond the largest, that size's bandwidth (large
    messages run at a steady bandwidth, so time grows linearly).
    """
    import numpy as np

    rows = bandwidth[bandwidth["world_size"] == world_size].sort_values("size_bytes")
    if rows.empty:
        raise ScalingError(f"no all-reduce rows for world size {world_size}: run `torchrun "
                           f"--nproc_per_node={world_size} -m distrinews bench allreduce` first")
    sizes, times = rows["size_bytes"].to_numpy(float), rows["time_us"].to_numpy(float)
    if size_bytes >= sizes[-1]:
        return times[-1] * size_bytes / sizes[-1] / 1000
    return float(np.exp(np.interp(np.log(size_bytes), np.log(sizes), np.log(times)))) / 1000


def step_budget(rows, bandwidth):
    """Per DDP setup: one device's step (compute), the gradient's all-reduce, their sum, and the measured step.

    `hidden_ms` is how much of the all-reduce the DDP step did not pay for: bucketed all-reduces that ran
    while backward was still computing. `rows` are comparable train rows (see comparable_to).
    """
    import pandas as pd

    table = pd.DataFrame(rows)
    single = table[table["world_size"] == 1]
    if len(single) != 1:
        raise ScalingError(f"need one single-process row for the compute time, found {len(single)}")
    compute = float(single["step_ms"].iloc[0])
    budget = []
    for _, row in table[table["world_size"] > 1].iterrows():
        sent = row["gradient_bytes"] / (2 if row.get("comm_hook") == "fp16" else 1)  # the hook sends fp16
        comm = allreduce_ms(bandwidth, sent, int(row["world_size"]))
        budget.append({"world_size": row["world_size"], "bucket_cap_mb": row.get("bucket_cap_mb"),
                       "comm_hook": row.get("comm_hook"), "compute_ms": compute, "allreduce_ms": comm,
                       "no_overlap_ms": compute + comm, "measured_ms": row["step_ms"],
                       "hidden_ms": compute + comm - row["step_ms"],
                       # what the efficiency would be if no all-reduce overlapped and nothing else cost time
                       "efficiency_without_overlap": compute / (compute + comm)})
    return pd.DataFrame(budget)


# ---- measurements committed in the repository's results/ -----------------------------------------

COMMITTED_DIR = Path(__file__).resolve().parents[2] / "results"  # a checkout's results/ (absent in a wheel)
COMMITTED_COLUMNS = ("label", "gpu_count", "timestamp")  # who measured, and when: shown first in every row


def committed_results(kind: str, columns=(), folder: str | Path | None = None, **equal):
    """The rows of results/KIND.csv, measured on real GPUs and committed, to show beside a reader's own numbers.

    Keeps the rows whose columns equal `equal` (world_size=2) and shows the hardware and date of each first.
    Returns a DataFrame, or None after saying plainly that no such measurement exists yet.
    """
    import pandas as pd

    path = Path(folder or COMMITTED_DIR) / f"{kind}.csv"
    rows = pd.read_csv(path) if path.exists() else pd.DataFrame()
    for column, value in equal.items():
        rows = rows[rows[column] == value] if column in rows.columns else rows.iloc[0:0]
    if rows.empty:
        where = path if path.parent.exists() else f"{path.name} (this install has no results/ folder)"
        print(f"No measurement on real GPUs is committed for this yet ({where}: no matching rows). The numbers on "
              f"this page are the only ones; results/README.md says how to record a GPU run.")
        return None
    shown = [c for c in (*COMMITTED_COLUMNS, *columns) if c in rows.columns]
    return rows[shown].rename(columns={"label": "hardware", "timestamp": "measured (UTC)"}).reset_index(drop=True)


def last_json(lines) -> dict:
    """The JSON object a `--json` command printed last (captured with `out = !distrinews ... --json`)."""
    import json

    for line in reversed(list(lines)):
        if line.lstrip().startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output: did the command fail, or miss --json?")


# ---- plots -----------------------------------------------------------------------------------


def measured_on(rows) -> str:
    """Plot-title prefix naming the hardware; CPU results say loudly that they are no GPU figure."""
    labels = sorted(set(rows["label"].astype(str)))
    cpu = any(label.startswith("CPU") for label in labels)
    return ("CPU MEASUREMENT (not a GPU figure): " if cpu else "") + ", ".join(labels)


def variant_names(rows) -> list[str]:
    """One readable name per row: N processes, padding, precision, accumulation and DDP knobs that vary."""
    names = []
    for _, row in rows.iterrows():
        parts = [f"N={row['world_size']}", str(row["padding"]), str(row["precision"])]
        if row.get("grad_accum_steps", 1) != 1:
            parts.append(f"accum {row['grad_accum_steps']}")
        if row["world_size"] > 1 and isinstance(row.get("comm_hook"), str):
            parts.append(f"bucket {row['bucket_cap_mb']:g} MB, hook {row['comm_hook']}")
        names.append(" | ".join(parts))
    return names


def plot_throughput(rows, title: str = "Training throughput"):
    """Horizontal bars: samples per second for each measured variant (summed over processes)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    ax.barh(variant_names(rows), rows["samples_per_s"], color="tab:blue")
    ax.invert_yaxis()
    ax.set(title=f"{title}\n{measured_on(rows)}", xlabel="training throughput (samples/s, all processes)")
    fig.tight_layout()
    return fig


def plot_scaling(table, title: str = "DDP scaling"):
    """Two bars per setup: throughput (samples/s) and efficiency (speedup / N, 1.0 = perfect)."""
    import matplotlib.pyplot as plt

    names = [f"N={row.world_size}" + (f"\n{row.bucket_cap_mb:g} MB\nhook {row.comm_hook}"
                                       if row.world_size > 1 and isinstance(row.comm_hook, str) else "")
             for row in table.itertuples()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.bar(names, table["samples_per_s"], color="tab:blue")
    left.set(title=f"{title}: throughput", ylabel="samples/s (all processes)")
    right.bar(names, table["efficiency"], color="tab:green")
    right.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    right.set(title=f"{title}: efficiency", ylabel="efficiency (speedup / N)")
    fig.suptitle(measured_on(table), fontsize=9)
    fig.tight_layout()
    return fig


def plot_bandwidth(rows, title: str = "All-reduce bandwidth"):
    """Algorithm and bus bandwidth against message size, log-log, one line pair per setup."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for (label, backend, world), group in rows.groupby(["label", "backend", "world_size"]):
        group = group.sort_values("size_bytes")
        ax.plot(group["size_bytes"] / 1e6, group["algbw_gbps"], marker="o", label=f"{backend} N={world}: algbw")
        ax.plot(group["size_bytes"] / 1e6, group["busbw_gbps"], marker="s", linestyle="--",
                label=f"{backend} N={world}: busbw = algbw x 2(N-1)/N")
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="mask")  # one process has busbw 0: nothing to draw
    ax.set(title=f"{title}\n{measured_on(rows)}", xlabel="message size (MB)", ylabel="bandwidth (GB/s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
