"""Error analysis and latency tables for a trained classifier: what it gets wrong, how sure it was, how fast it is.

    test = load_test_split("runs/smoke/checkpoint")            # the split the run was evaluated on
    predictions = NewsClassifier.load("runs/smoke/checkpoint").predict(list(test.texts))
    confusion = confusion_matrix(test.labels, predictions)      # rows = true topics, columns = predicted
    most_confused(confusion)                                    # the worst (true -> predicted) pairs
    misclassified(test.texts, test.labels, predictions)         # the errors, most confident first
    per_class_metrics(confusion)                                # precision, recall, F1, support per topic
    latency_table(bench.benchmark_inference("runs/smoke/checkpoint", runs=5))

Tables come back as pandas DataFrames, so a notebook shows them as they are.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from .labels import LABEL_NAMES

# bench.benchmark_inference's report keys, in the order a reader compares them, with what each one is.
VARIANTS = {"pipeline": "transformers pipeline (fp32)", "fp32": "NewsClassifier fp32",
            "optimized": "NewsClassifier default CPU path"}


# ---- the data the run was evaluated on -------------------------------------------------------------------


def load_test_split(checkpoint: str | Path, max_rows: int | None = None, seed: int = 0, log=print):
    """The test split a checkpoint's run was evaluated on, rebuilt from the config saved beside its weights.

    Args:
        max_rows: a seeded random subset of this many rows (None: all), for a quicker look at a large split.
    """
    from .checkpoint import CONFIG_FILE
    from .config import TrainConfig
    from .data import NewsSplit
    from .training import load_test_split

    saved = Path(checkpoint) / CONFIG_FILE
    if not saved.exists():
        raise FileNotFoundError(f"{saved} not found: pass a checkpoint/ folder that `distrinews train` wrote "
                                f"(it saves the run's config there, which names the data it was evaluated on)")
    split = load_test_split(TrainConfig.load(saved), log)  # what `distrinews evaluate` reads: the same rows
    if max_rows is None or max_rows >= len(split):
        return split
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1 (or None for all {len(split)} rows); got {max_rows}")
    # A uniform sample: each topic keeps its share of the split, up to sampling noise.
    keep = sorted(random.Random(seed).sample(range(len(split)), max_rows))
    return NewsSplit(split.name, tuple(split.texts[i] for i in keep), tuple(split.labels[i] for i in keep))


def write_split_csv(split, path: str | Path) -> Path:
    """Write a split as a Hugging Face-form CSV (label 0-3, text), the form `read_news_csv` reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows(zip(split.labels, split.texts))
    return path


# ---- what the model gets wrong ---------------------------------------------------------------------------


def predicted_ids(predictions, names=LABEL_NAMES) -> list[int]:
    """Label ids of predictions (Prediction objects or label names)."""
    ids = []
    for p in predictions:
        label = getattr(p, "label", p)
        if label not in names:
            raise ValueError(f"unknown label {label!r}; expected one of {', '.join(names)}")
        ids.append(names.index(label))
    return ids


def confusion_matrix(labels, predictions, names=LABEL_NAMES) -> list[list[int]]:
    """Counts with true topics as rows and predicted topics as columns (as eval.json and plot_confusion)."""
    predicted = predicted_ids(predictions, names)
    if len(predicted) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(predicted)} predictions: predict every text once")
    confusion = [[0] * len(names) for _ in names]
    for true, guess in zip(labels, predicted):
        confusion[true][guess] += 1
    return confusion


def most_confused(confusion, names=LABEL_NAMES, top: int = 5):
    """The off-diagonal cells with the most examples: which topic is read as which, and how often the reverse."""
    import pandas as pd

    rows = []
    for i, row in enumerate(confusion):
        support = sum(row)
        for j, count in enumerate(row):
            if i != j and count:
                rows.append({"true topic": names[i], "predicted as": names[j], "examples": count,
                             "% of true topic": round(100 * count / support, 1),
                             "the reverse (examples)": confusion[j][i]})
    columns = ["true topic", "predicted as", "examples", "% of true topic", "the reverse (examples)"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["examples", "true topic"], ascending=[False, True], kind="stable") \
                .head(top).reset_index(drop=True)


def misclassified(texts, labels, predictions, n: int = 10, width: int = 100):
    """The wrongly labelled texts, most confident mistakes first, with the probabilities of both topics.

    Args:
        width: texts longer than this many characters are shortened (with "...") so the table stays readable.
    """
    import pandas as pd

    predictions = list(predictions)
    if not len(texts) == len(labels) == len(predictions):
        raise ValueError(f"texts, labels and predictions differ in length "
                         f"({len(texts)}, {len(labels)}, {len(predictions)})")
    rows = []
    for text, true, p in zip(texts, labels, predictions):
        truth = LABEL_NAMES[true]
        if p.label != truth:
            rows.append({"text": shorten(text, width), "true topic": truth, "predicted": p.label,
                         "p(predicted)": round(p.probabilities[p.label], 3),
                         "p(true topic)": round(p.probabilities[truth], 3)})
    columns = ["text", "true topic", "predicted", "p(predicted)", "p(true topic)"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values("p(predicted)", ascending=False, kind="stable").head(n).reset_index(drop=True)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def per_class_metrics(confusion, names=LABEL_NAMES):
    """Precision, recall, F1 and support of each topic, and the topic it is most often mistaken for."""
    import pandas as pd
    import torch

    from .evaluation import metrics_from_confusion

    metrics = metrics_from_confusion(torch.tensor(confusion))  # the same arithmetic as training's evaluation
    table = pd.DataFrame(metrics["per_class"]).T[["precision", "recall", "f1", "support"]]
    table.index = list(names)
    table["support"] = table["support"].astype(int)
    table["most often read as"] = [worst_confusion(row, i, names) for i, row in enumerate(confusion)]
    table.index.name = "true topic"
    return table.round(3)


def worst_confusion(row, i: int, names) -> str:
    counts = [(count, names[j]) for j, count in enumerate(row) if j != i and count]
    if not counts:
        return "-"
    count, name = max(counts, key=lambda c: c[0])
    return f"{name} ({count})"


# ---- how fast it answers ---------------------------------------------------------------------------------


def latency_table(report: dict):
    """bench.benchmark_inference's report as one row per variant: p50 and p95 of one text, batch throughput."""
    import pandas as pd

    missing = [f"{key}_p50_ms" for key in VARIANTS if f"{key}_p50_ms" not in report]
    if missing:
        raise KeyError(f"not a bench.benchmark_inference report (no {', '.join(missing)}): "
                       f"pass what benchmark_inference returned or `distrinews bench infer --json` printed")
    pipeline = report["pipeline_p50_ms"]
    table = pd.DataFrame({
        "p50 ms (one text)": [report[f"{key}_p50_ms"] for key in VARIANTS],
        "p95 ms (one text)": [report[f"{key}_p95_ms"] for key in VARIANTS],
        f"texts/s (batch of {report.get('batch_size', '?')})": [report[f"{key}_texts_per_s"] for key in VARIANTS],
        "p50 / pipeline p50": [report[f"{key}_p50_ms"] / pipeline for key in VARIANTS],
    }, index=pd.Index(list(VARIANTS.values()), name="variant"))
    table.attrs["title"] = (f"{report.get('model', '?')}, {report.get('cpu_threads', '?')} CPU thread(s), "
                            f"{report.get('runs', '?')} runs")
    return table.round(3)


def plot_latency(table, title: str | None = None):
    """p50 and p95 single-text latency of each variant, as grouped horizontal bars in milliseconds."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.8))
    positions = range(len(table))
    ax.barh([y - 0.2 for y in positions], table["p50 ms (one text)"], height=0.4, label="p50 (median)")
    ax.barh([y + 0.2 for y in positions], table["p95 ms (one text)"], height=0.4, label="p95", alpha=0.6)
    ax.set(yticks=list(positions), yticklabels=list(table.index), xlabel="latency of one text (ms)",
           title=title or f"CPU latency: {table.attrs.get('title', '')}")
    ax.invert_yaxis()  # the baseline (pipeline) on top, as in the table
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # outside the bars, whatever their lengths
    fig.tight_layout()
    return fig

