"""Read a run's metrics and draw the pictures the notebooks show: training curves and the confusion matrix.

    steps, epochs = load_metrics("runs/smoke")     # two pandas DataFrames from metrics.jsonl
    plot_training(steps, epochs, title="smoke on CPU")
    plot_confusion(read_eval("runs/smoke")["confusion_matrix"])
"""

from __future__ import annotations

import json
from pathlib import Path

from .labels import LABEL_NAMES


def load_metrics(run_dir: str | Path):
    """(steps, epochs): one row per logged step (loss, lr, samples_per_s, ...) and one per epoch evaluation."""
    import pandas as pd

    records = read_metrics_lines(run_dir)
    steps = pd.DataFrame([r for r in records if "loss" in r])
    epochs = pd.DataFrame([{"epoch": r["epoch"], "step": r["step"],
                            **{k: r["eval"][k] for k in ("accuracy", "macro_f1", "loss")}}
                           for r in records if "eval" in r])
    return steps, epochs


def read_metrics_lines(run_dir: str | Path) -> list[dict]:
    """The raw records of metrics.jsonl, in the order the run wrote them."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train into {run_dir} first (distrinews train --output-dir ...)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_eval(run_dir: str | Path) -> dict:
    """The final test metrics a run wrote (eval.json)."""
    path = Path(run_dir) / "eval.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the run in {run_dir} has not finished")
    return json.loads(path.read_text())


def plot_training(steps, epochs, title: str = "Training"):
    """Training loss against optimizer step, and evaluation accuracy after each epoch, side by side."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(steps["step"], steps["loss"], marker=".")
    left.set(title=f"{title}: training loss", xlabel="optimizer step", ylabel="cross-entropy loss (nats)")
    right.plot(epochs["epoch"], epochs["accuracy"], marker="o", label="accuracy")
    right.plot(epochs["epoch"], epochs["macro_f1"], marker="s", label="macro-F1")
    right.set(title=f"{title}: evaluation after each epoch", xlabel="epoch", ylabel="score (fraction)",
              ylim=(0, 1.02), xticks=list(epochs["epoch"]))
    right.legend()
    fig.tight_layout()
    return fig


def plot_confusion(confusion: list[list[int]], title: str = "Confusion matrix"):
    """Counts with true topics as rows, predicted topics as columns; each cell labelled with its count."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2))
    image = ax.imshow(confusion, cmap="Blues")
    ax.set(title=title, xlabel="predicted topic", ylabel="true topic", xticks=range(len(LABEL_NAMES)),
           yticks=range(len(LABEL_NAMES)), xticklabels=LABEL_NAMES, yticklabels=LABEL_NAMES)
    peak = max(max(row) for row in confusion) or 1
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    fig.colorbar(image, ax=ax, label="examples")
    fig.tight_layout()
    return fig
