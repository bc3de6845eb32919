"""Helpers for the DDP lessons (notebooks 04 to 06): who sees which examples, how two runs differ, what a
checkpoint holds.

    shards("torch", n_examples=10, world_size=3)        # {rank: example indices in the order that rank sees them}
    shard_table(shards(...), 10); plot_shards(shards(...), 10)
    sharding_explorer()                                 # ipywidgets: pick sampler, world size, epoch, set size
    compare_weights("runs/a", "runs/b", initial=initial_weights("runs/a"))  # max |difference| per tensor
    describe_checkpoint("runs/crash")                   # the files and the training state a resume reads
    compare_runs({"1 process": "runs/single", "DDP": "runs/ddp"}, wall_s)   # batch arithmetic, speed, accuracy

Every sampler here is the real one, built without a process group: a sampler only needs to be told its rank
and the world size, which is why it can be explored in a notebook kernel.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .batching import BatchSampler, EvalBatchSampler

SAMPLERS = {  # kind -> what it is; the order is the explorer's menu
    "train": "distrinews BatchSampler (training: whole batches, padded by repeating batches)",
    "torch": "torch DistributedSampler (examples, padded by repeating examples)",
    "eval": "distrinews EvalBatchSampler (evaluation: no padding, every example once)",
}


def shards(kind: str, n_examples: int, world_size: int, epoch: int = 0, batch_size: int = 2, seed: int = 42,
           lengths: np.ndarray | None = None) -> dict[int, list[int]]:
    """Each rank's example indices for one epoch, in the order the rank processes them.

    Args:
        kind: "train" (the library's BatchSampler, random batches), "torch" (torch's DistributedSampler
            with shuffling) or "eval" (the library's EvalBatchSampler).
        lengths: token lengths; only the eval sampler uses them (longest first). Default: all equal.
    """
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler kind {kind!r}; choose one of {', '.join(SAMPLERS)}")
    if n_examples < 1 or world_size < 1:
        raise ValueError(f"need at least one example and one rank, got {n_examples} and {world_size}")
    lengths = np.ones(n_examples, dtype=np.int64) if lengths is None else np.asarray(lengths)
    return {rank: rank_indices(kind, lengths, world_size, rank, epoch, batch_size, seed)
            for rank in range(world_size)}


def rank_indices(kind: str, lengths: np.ndarray, world_size: int, rank: int, epoch: int, batch_size: int,
                 seed: int) -> list[int]:
    if kind == "train":
        sampler = BatchSampler(lengths, batch_size, seed, grouped=False, rank=rank, world_size=world_size)
        sampler.set_epoch(epoch)  # the same shuffle on every rank, a new one each epoch
        return [i for batch in sampler for i in batch]
    if kind == "eval":
        return [i for batch in EvalBatchSampler(lengths, batch_size, rank, world_size) for i in batch]
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(len(lengths)), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def coverage(assigned: dict[int, list[int]], n_examples: int) -> np.ndarray:
    """How often each rank (rows) processes each example (columns)."""
    counts = np.zeros((len(assigned), n_examples), dtype=np.int64)
    for rank, indices in assigned.items():
        np.add.at(counts[rank], indices, 1)
    return counts


def shard_summary(assigned: dict[int, list[int]], n_examples: int) -> dict:
    """Slots processed, distinct examples, and which examples are repeated or missing."""
    per_example = coverage(assigned, n_examples).sum(axis=0)
    return {"slots": int(per_example.sum()), "examples": n_examples,
            "repeated": [int(i) for i in np.flatnonzero(per_example > 1)],
            "missing": [int(i) for i in np.flatnonzero(per_example == 0)]}


def shard_table(assigned: dict[int, list[int]], n_examples: int):
    """One row per rank: the examples it sees, how many, and which of them some rank also sees."""
    import pandas as pd

    repeated = set(shard_summary(assigned, n_examples)["repeated"])
    rows = [{"rank": rank, "examples, in the order seen": " ".join(map(str, indices)), "count": len(indices),
             "repeated examples": " ".join(str(i) for i in indices if i in repeated) or "-"}
            for rank, indices in assigned.items()]
    return pd.DataFrame(rows).set_index("rank")


def plot_shards(assigned: dict[int, list[int]], n_examples: int, title: str = "Which rank sees which example"):
    """A grid: one row per rank, one column per example; repeated examples are marked in red."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    counts = coverage(assigned, n_examples)
    world = len(assigned)
    owner = np.where(counts > 0, np.arange(world)[:, None] + 1, 0)  # 0 = not on this rank
    colours = ["#f4f4f4"] + [plt.cm.tab10(r % 10) for r in range(world)]
    fig, ax = plt.subplots(figsize=(min(2 + 0.45 * n_examples, 14), 0.9 + 0.5 * world))
    ax.imshow(owner, cmap=ListedColormap(colours), vmin=0, vmax=world, aspect="auto")
    per_example = counts.sum(axis=0)
    for rank in range(world):
        for i in np.flatnonzero(counts[rank]):
            repeated = per_example[i] > 1
            ax.text(i, rank, f"x{per_example[i]}" if repeated else str(i), ha="center", va="center",
                    fontsize=8, color="red" if repeated else "black", fontweight="bold" if repeated else None)
    summary = shard_summary(assigned, n_examples)
    ax.set(title=f"{title}\n{summary['slots']} slots for {n_examples} examples; "
                 f"repeated: {len(summary['repeated'])}, missing: {len(summary['missing'])}",
           xlabel="example index", ylabel="rank", yticks=range(world),
           xticks=range(0, n_examples, max(1, n_examples // 20)))
    fig.tight_layout()
    return fig


def sharding_explorer(n_examples: int = 10, world_size: int = 3, batch_size: int = 2, seed: int = 42):
    """Pick a sampler, a world size, an epoch and a set size; see the grid and the table for every rank."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    controls = {
        "kind": widgets.Dropdown(options=[(text, kind) for kind, text in SAMPLERS.items()], value="torch",
                                 description="sampler", layout=widgets.Layout(width="560px")),
        "world_size": widgets.IntSlider(value=world_size, min=1, max=8, description="world size"),
        "epoch": widgets.IntSlider(value=0, min=0, max=5, description="epoch"),
        "n_examples": widgets.IntSlider(value=n_examples, min=2, max=30, description="examples"),
    }

    def draw(kind, world_size, epoch, n_examples):
        assigned = shards(kind, n_examples, world_size, epoch, batch_size, seed)
        fig = plot_shards(assigned, n_examples, title=f"{SAMPLERS[kind].split(' (')[0]}, epoch {epoch}")
        display(fig)
        plt.close(fig)  # shown once, here, not again by the inline backend
        display(shard_table(assigned, n_examples))

    output = widgets.interactive_output(draw, controls)
    return widgets.VBox([widgets.HBox([controls["kind"]]),
                         widgets.HBox([controls["world_size"], controls["epoch"], controls["n_examples"]]), output])


# transformers 5.0.0 to 5.5.4 save DistilBERT's embedding LayerNorm under its TF-era names (`LayerNorm.gamma`,
# `LayerNorm.beta`); the model in memory and other versions say `weight` and `bias`. Files read here get the
# latter, so two runs (or a run and its starting weights) compare whichever version wrote them.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


def canonical_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors with legacy LayerNorm names (`.gamma`, `.beta`) renamed to `.weight` and `.bias`."""
    renamed = {}
    for name, tensor in tensors.items():
        for old, new in LEGACY_SUFFIXES.items():
            if name.endswith(old):
                name = name[: -len(old)] + new
        if name in renamed:
            raise ValueError(f"{name} appears under both its legacy and its current name")
        renamed[name] = tensor
    return renamed


def load_weights(source) -> dict[str, torch.Tensor]:
    """A model's tensors from a run folder, a checkpoint folder, a .safetensors file or a state dict."""
    if isinstance(source, dict):
        return canonical_names({name: tensor.detach().float().cpu() for name, tensor in source.items()})
    from safetensors.torch import load_file

    path = Path(source)
    for candidate in (path, path / "model.safetensors", path / ckpt.CHECKPOINT / "model.safetensors"):
        if candidate.is_file():
            return canonical_names({name: tensor.float() for name, tensor in load_file(candidate).items()})
    raise FileNotFoundError(f"no model.safetensors in {path} or {path / ckpt.CHECKPOINT}: pass a run folder "
                            f"(--output-dir of a finished training run) or its checkpoint/ folder")


def initial_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The weights a run started from: its config's model, built with its seed, as training builds it."""
    from .config import TrainConfig
    from .modeling import build_model, build_tokenizer

    config = TrainConfig.load(Path(run_dir) / "config.json")
    model = build_model(config.model_name, build_tokenizer(config.model_name), seed=config.seed)
    return load_weights(model.state_dict())


def compare_weights(a, b, initial=None):
    """Per tensor: the largest |a - b|, and (given the starting weights) the largest change training made in a.

    Sorted with the largest difference first. Raises when the two hold different tensors.
    """
    import pandas as pd

    a, b = load_weights(a), load_weights(b)
    if a.keys() != b.keys():
        raise ValueError(f"the two models hold different tensors: only in the first {sorted(a.keys() - b.keys())}, "
                         f"only in the second {sorted(b.keys() - a.keys())}")
    start = load_weights(initial) if initial is not None else None
    rows = []
    for name in a:
        row = {"tensor": name, "elements": a[name].numel(),
               "max |difference|": float((a[name] - b[name]).abs().max())}
        if start is not None and name in start:
            row["max |change by training|"] = float((a[name] - start[name]).abs().max())
        rows.append(row)
    return pd.DataFrame(rows).sort_values("max |difference|", ascending=False, ignore_index=True)


def difference_summary(table) -> str:
    """One line: the largest difference between two models, against the largest change training made."""
    diff = table["max |difference|"].max()
    line = f"largest difference between the two models: {diff:.2e}"
    if "max |change by training|" in table:
        change = table["max |change by training|"].max()
        line += f"; largest change training made: {change:.2e}"
        if change > 0:
            line += f" (the difference is {diff / change:.1e} of it)"
    return line


WHAT_FILES_HOLD = {
    "model.safetensors": "weights of the unwrapped model (no DDP `module.` prefix), safetensors",
    "config.json": "architecture and label names: from_pretrained reads it",
    "distrinews_config.json": "the run's TrainConfig: a resume checks it is the same run",
    "training_state.pt": "optimizer, scheduler, scaler, progress and every rank's RNG states",
    "tokenizer.json": "the tokenizer",
    "tokenizer_config.json": "the tokenizer's settings",
}


def checkpoint_dir(run_or_checkpoint: str | Path) -> Path:
    """The newest complete checkpoint of a run folder (or the checkpoint folder itself)."""
    path = Path(run_or_checkpoint)
    if (path / ckpt.STATE_FILE).is_file():
        return path
    found = ckpt.find_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"no checkpoint with {ckpt.STATE_FILE} under {path}: train with --output-dir "
                                f"{path} first (checkpoints are written at each epoch end and every "
                                f"--save-every-steps)")
    return found


def describe_checkpoint(run_or_checkpoint: str | Path):
    """(files, state): every file with its size and role, and what the training state says about progress."""
    import pandas as pd

    folder = checkpoint_dir(run_or_checkpoint)
    files = pd.DataFrame([{"file": p.name, "KiB": round(p.stat().st_size / 1024, 1),
                           "holds": WHAT_FILES_HOLD.get(p.name, "tokenizer" if "token" in p.name or "vocab" in p.name
                                                        else "")}
                          for p in sorted(folder.iterdir()) if p.is_file()])
    state = ckpt.load_training_state(folder, torch.device("cpu"))
    optimizer = state["optimizer"]
    rows = {
        "folder": str(folder),
        "progress: epochs completed": state["progress"]["epoch"],
        "progress: optimizer steps taken": state["progress"]["step"],
        "progress: batches done in this epoch (per rank)": state["progress"]["batches_done"],
        "world size that wrote it": state["world_size"],
        "optimizer: tensors with state": len(optimizer["state"]),
        "optimizer: learning rate now": optimizer["param_groups"][0]["lr"],
        "scheduler: steps taken": state["scheduler"].get("last_epoch"),
        "scaler (fp16 loss scaling)": "in use" if state["scaler"] else "off (not fp16)",
        "RNG states saved": f"{len(state['rng'])} (one per rank)",
    }
    return files, pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))


def read_run(run_dir: str | Path) -> dict:
    """A finished run's config, test metrics, logged steps and the world size that trained it."""
    from .config import TrainConfig
    from .plots import load_metrics, read_eval

    run_dir = Path(run_dir)
    config = TrainConfig.load(run_dir / "config.json")
    state = ckpt.load_training_state(checkpoint_dir(run_dir), torch.device("cpu"))
    steps, _ = load_metrics(run_dir)
    return {"config": config, "eval": read_eval(run_dir), "steps": steps, "world_size": state["world_size"],
            "optimizer_steps": state["progress"]["step"]}


def global_batch(config, world_size: int) -> int:
    return config.per_device_batch_size * world_size * config.grad_accum_steps


def compare_runs(runs: dict[str, str | Path], wall_s: dict[str, float] | None = None):
    """One row per run: batch arithmetic, optimizer steps, wall time, throughput and test accuracy."""
    import pandas as pd

    rows = []
    for label, run_dir in runs.items():
        run = read_run(run_dir)
        config, steps = run["config"], run["steps"]
        rows.append({
            "run": label, "world size": run["world_size"], "per-device batch": config.per_device_batch_size,
            "grad accumulation": config.grad_accum_steps, "global batch": global_batch(config, run["world_size"]),
            "optimizer steps": run["optimizer_steps"],
            "wall time (s)": round(wall_s[label], 1) if wall_s and label in wall_s else None,
            "mean samples/s": round(float(steps["samples_per_s"].mean()), 1) if len(steps) else None,
            "test accuracy": round(run["eval"]["accuracy"], 4), "test macro-F1": round(run["eval"]["macro_f1"], 4),
        })
    return pd.DataFrame(rows).set_index("run")


def plot_loss_vs_examples(runs: dict[str, str | Path], title: str = "Training loss against data seen"):
    """Loss against training examples seen (step x global batch): runs with different global batches line up."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for label, run_dir in runs.items():
        run = read_run(run_dir)
        batch = global_batch(run["config"], run["world_size"])
        ax.plot(run["steps"]["step"] * batch, run["steps"]["loss"], marker=".",
                label=f"{label} (global batch {batch})")
    ax.set(title=title, xlabel="training examples seen", ylabel="cross-entropy loss (nats)")
    ax.legend()
    fig.tight_layout()
    return fig


def read_metrics(source: str | Path) -> dict:
    """Test metrics from a run folder (its eval.json) or from a JSON file `distrinews evaluate --output` wrote."""
    from .plots import read_eval

    path = Path(source)
    return json.loads(path.read_text()) if path.is_file() else read_eval(path)


def compare_evals(runs: dict[str, str | Path]):
    """Test metrics side by side, and how each differs from the first: confusion matrix and loss."""
    import pandas as pd

    evals = {label: read_metrics(source) for label, source in runs.items()}
    first = next(iter(evals.values()))
    return pd.DataFrame([{"run": label, "examples": e["n_examples"], "accuracy": e["accuracy"],
                          "macro-F1": e["macro_f1"], "loss": e["loss"],
                          "same confusion matrix as the first": e["confusion_matrix"] == first["confusion_matrix"],
                          "|loss - first's loss|": abs(e["loss"] - first["loss"])}
                         for label, e in evals.items()]).set_index("run")


def find_run_folders(root: str | Path = "/kaggle/input") -> list[Path]:
    """Run folders under root (e.g. a previous Kaggle session's output attached as input) that can be resumed."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted({p.parent.parent for p in root.glob(f"**/{ckpt.CHECKPOINT}/{ckpt.STATE_FILE}")})


def copy_run_for_resume(source: str | Path, destination: str | Path) -> Path:
    """Copy a run folder somewhere writable, so training can resume into it (Kaggle inputs are read-only)."""
    source, destination = Path(source), Path(destination)
    checkpoint_dir(source)  # fail now, with a clear message, if there is nothing to resume from
    if destination.exists():
        raise FileExistsError(f"{destination} exists: resume straight into it, or pick another destination")
    shutil.copytree(source, destination)
    return destination
