"""Tables, pictures and one widget for the course's first notebooks (00 to 03), built on the library's parts.

    course_outline()                                   # the notebooks in order (from course.NOTEBOOKS)
    gpu_table(course.describe_hardware())              # capability, bf16 native or emulated, chosen precision
                                                       # (asked in a child process: no CUDA in the kernel)
    class_balance(data)                                # examples per topic and split
    lengths = token_lengths(tokenizer, data.train.texts)
    plot_token_lengths(lengths, max_length=128)
    padding_waste(tokenize_split(...), batch_size=32, max_length=128, pad_id=0)
    example_browser(news_frame(data.train))           # ipywidgets: pick a topic, step through its examples
    parameter_table(model); step_compute(model, batch) # parameters per component, ~6 x N x tokens FLOPs
    embedding_gradient(model, batch)                   # the embedding's dense gradient: its share of DDP's bytes

Nothing here trains or launches processes; heavy imports (pandas, matplotlib, ipywidgets) stay inside the
functions, so importing the module is cheap.
"""

from __future__ import annotations

import html
import re
import time

import numpy as np
import torch

from .bench_train import synchronize
from .labels import LABEL_NAMES

STRATEGIES = ("max_length", "dynamic", "grouped")  # the padding strategies, worst to best
FLOPS_PER_PARAM_PER_TOKEN = 6  # forward 2 (a multiply and an add), backward 4 (gradients of inputs and weights)


# ---- 00: the course and the hardware ----------------------------------------------------------------


def course_outline(notebooks=None):
    """The course's notebooks in order, one row each, from the registry in distrinews.course."""
    import pandas as pd

    from .course import NOTEBOOKS

    rows = [{"notebook": nb.filename, "title": nb.title, "what it covers": nb.summary,
             "GPUs on Kaggle": nb.gpus, "AG News": "yes" if nb.needs_data else "",
             "internet": "yes" if nb.needs_internet else ""} for nb in (notebooks or NOTEBOOKS)]
    return pd.DataFrame(rows).set_index("notebook")


GPU_COLUMNS = ["name", "compute capability", "memory (GiB)", "bf16 in hardware (capability >= 8.0)",
               "torch.cuda.is_bf16_supported()", "training precision (library)"]


def gpu_table(hardware: dict):
    """One row per visible GPU: why the library trains a T4 in fp16 although torch says bf16 is supported.

    Reads the answers `course.describe_hardware()` collected in a child process; it asks torch nothing itself.
    `torch.cuda.is_bf16_supported()` counts emulation as support (and, to find out, allocates a tensor on the
    GPU, which opens a CUDA context there); `including_emulation=False` asks the hardware question. Empty (with
    the same columns) when no GPU is visible.
    """
    import pandas as pd

    rows = [[gpu["name"], gpu["capability"], gpu["memory_gib"], gpu["bf16_native"], gpu["bf16_supported"],
             gpu["precision"]] for gpu in hardware["gpus"]]
    index = pd.Index([gpu["index"] for gpu in hardware["gpus"]], name="GPU")
    return pd.DataFrame(rows, columns=GPU_COLUMNS, index=index)


# ---- 01: the data --------------------------------------------------------------------------------


def news_frame(split):
    """One row per example of a NewsSplit: topic, label, text, and its length in characters and words."""
    import pandas as pd

    frame = pd.DataFrame({"label": list(split.labels), "text": list(split.texts)})
    topics = pd.Categorical([LABEL_NAMES[label] for label in frame["label"]], categories=LABEL_NAMES)
    frame.insert(0, "topic", topics)  # categorical: group-bys list topics in label order
    frame["characters"] = frame["text"].str.len()
    frame["words"] = frame["text"].str.split().str.len()
    return frame


def class_balance(data):
    """Examples per topic in each split of a NewsData, as counts and as a share of the split (%)."""
    import pandas as pd

    from .data import describe

    splits = [s for s in (data.train, data.validation, data.test) if s is not None]
    table = pd.DataFrame({split.name: describe(split) for split in splits})
    table.index.name = "topic"
    for split in splits:
        table[f"{split.name} %"] = (100 * table[split.name] / len(split)).round(1)
    table.loc["total"] = [len(s) for s in splits] + [100.0] * len(splits)
    return table


def token_lengths(tokenizer, texts) -> np.ndarray:
    """Tokens per text as the model would see it with no length limit ([CLS] and [SEP] included)."""
    encoded = tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]  # verbose: no >512 warning
    return np.array([len(ids) for ids in encoded], dtype=np.int64)


def length_summary(lengths: np.ndarray, max_length: int):
    """Mean, percentiles and maximum of token lengths, and how many texts max_length would truncate."""
    import pandas as pd

    over = int((lengths > max_length).sum())
    return pd.Series({
        "texts": len(lengths), "mean": round(float(lengths.mean()), 1), "median": float(np.median(lengths)),
        "90th percentile": float(np.percentile(lengths, 90)), "99th percentile": float(np.percentile(lengths, 99)),
        "longest": int(lengths.max()), f"longer than {max_length} (truncated)": over,
        "truncated %": round(100 * over / len(lengths), 2),
    }, name="tokens per text", dtype=object)  # object: counts print as integers


def plot_token_lengths(lengths: np.ndarray, max_length: int, title: str = "Token lengths"):
    """Histogram of tokens per text, with the mean and the truncation limit marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.hist(lengths, bins=np.arange(0, lengths.max() + 3) - 0.5, color="#4c72b0")
    ax.axvline(lengths.mean(), color="black", linestyle=":", label=f"mean {lengths.mean():.1f}")
    ax.axvline(max_length + 0.5, color="#c44e52", linestyle="--",
               label=f"max_length {max_length}: longer texts are cut")
    ax.set(title=title, xlabel="tokens per text (incl. [CLS] and [SEP])", ylabel="texts (count)")
    ax.legend()
    fig.tight_layout()
    return fig


def build_strategy_loaders(tokenized, batch_size: int, max_length: int, pad_id: int, seed: int = 0) -> dict:
    """The library's training loader for each padding strategy, over the same tokenized split."""
    from .batching import build_train_loader

    return {strategy: build_train_loader(tokenized, strategy, batch_size, max_length, seed, pad_id)
            for strategy in STRATEGIES}


def padding_waste(tokenized, batch_size: int, max_length: int, pad_id: int, seed: int = 0):
    """Tokens one epoch feeds the model under each padding strategy, and how many of them are padding."""
    import pandas as pd

    from .batching import padding_ratio

    real = tokenized.real_tokens
    rows = []
    for strategy, loader in build_strategy_loaders(tokenized, batch_size, max_length, pad_id, seed).items():
        ratio = padding_ratio(loader)  # processed / real, over one pass of the batches this loader yields
        processed = round(ratio * real)
        rows.append({"strategy": strategy, "tokens processed": processed, "real tokens": real,
                     "padding tokens": processed - real, "padding %": round(100 * (processed - real) / processed, 1),
                     "processed per real token": round(ratio, 3)})
    return pd.DataFrame(rows).set_index("strategy")


def batch_layouts(tokenized, batch_size: int, max_length: int, pad_id: int, seed: int = 0) -> dict:
    """The first batch of each strategy as a (batch, max_length) grid: 2 real token, 1 padding, 0 not computed."""
    layouts = {}
    for strategy, loader in build_strategy_loaders(tokenized, batch_size, max_length, pad_id, seed).items():
        mask = next(iter(loader))["attention_mask"].numpy()
        grid = np.zeros((mask.shape[0], max_length), dtype=np.int64)
        grid[:, :mask.shape[1]] = 1 + mask  # every column up to the batch's width is computed
        layouts[strategy] = grid
    return layouts


def plot_padding(table, layouts: dict, title: str = "Padding waste"):
    """Left: real and padding tokens per epoch for each strategy. Right: one batch of each, token by token."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    fig = plt.figure(figsize=(12, 4))
    bars = fig.add_subplot(1, 2, 1)
    names = list(table.index)
    bars.barh(names, table["real tokens"] / 1e3, color="#4c72b0", label="real tokens")
    bars.barh(names, table["padding tokens"] / 1e3, left=table["real tokens"] / 1e3, color="#dd8452",
              label="padding tokens")
    bars.set(title=f"{title}: tokens per epoch", xlabel="tokens processed (thousands)", ylabel="padding strategy")
    bars.invert_yaxis()  # same top-to-bottom order as the batches on the right
    bars.legend(loc="lower right")
    colours = ListedColormap(["#f2f2f2", "#dd8452", "#4c72b0"])  # not computed, padding, real
    for i, strategy in enumerate(names):
        ax = fig.add_subplot(len(names), 2, 2 * i + 2)
        ax.imshow(layouts[strategy], cmap=colours, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
        ax.set_ylabel(strategy, rotation=0, ha="right", va="center")
        ax.set_yticks([])
        if i == 0:
            ax.set_title("first batch: real (blue), padding (orange), skipped (grey)")
        if i < len(names) - 1:
            ax.set_xticks([])
    ax.set_xlabel("token position")
    fig.tight_layout()
    return fig


def example_browser(frame, topics=LABEL_NAMES):
    """An ipywidgets browser over a news_frame: choose a topic, slide through its examples.

    Returns the widget box; `box.children` are (topic dropdown, example slider, HTML view). The view is
    plain HTML updated by observers, so it also renders (showing the first example) where no kernel runs.
    """
    import ipywidgets as widgets

    topic = widgets.Dropdown(options=list(topics), description="topic")
    number = widgets.IntSlider(min=0, max=0, description="example", continuous_update=False)
    view = widgets.HTML()

    def show(_=None):
        rows = frame[frame["topic"] == topic.value]
        number.max = max(len(rows) - 1, 0)  # may move number.value, which calls show() again: harmless
        if rows.empty:
            view.value = f"<i>no {html.escape(topic.value)} examples in this split</i>"
            return
        row = rows.iloc[min(number.value, len(rows) - 1)]
        view.value = (f"<p><b>{html.escape(row['topic'])}</b> (label {row['label']}), example "
                      f"{number.value + 1} of {len(rows)}, {row['words']} words</p>"
                      f"<blockquote>{html.escape(row['text'])}</blockquote>")

    topic.observe(lambda _: setattr(number, "value", 0) or show(), names="value")
    number.observe(show, names="value")
    show()
    return widgets.VBox([topic, number, view])


def examples_per_topic(frame, per_topic: int = 2, seed: int = 0):
    """A few random examples of every topic, as a table (the static view of example_browser)."""
    picked = frame.groupby("topic", observed=True).sample(n=per_topic, random_state=seed, replace=False)
    return picked[["topic", "text"]].reset_index(drop=True)


# ---- 02: the model -------------------------------------------------------------------------------


def component_of(name: str, prefix: str = "") -> str:
    """The component a parameter belongs to: an embedding table, a transformer layer, or the head."""
    name = name.removeprefix(f"{prefix}.") if prefix else name
    layer = re.search(r"\blayer\.(\d+)\.", name)
    if layer:
        return f"transformer layer {layer.group(1)}"
    parts = name.split(".")
    if parts[0] == "embeddings":
        return f"embeddings: {parts[1]}"
    return parts[0] if len(parts) > 1 else "other"


def is_embedding(name: str) -> bool:
    """Embedding tables are looked up, not multiplied: they cost memory, almost no FLOPs."""
    return ".embeddings." in f".{name}" and not name.endswith(("LayerNorm.weight", "LayerNorm.bias"))


def parameter_table(model: torch.nn.Module):
    """Parameters per component, in model order: their share of the total, and whether the dense count N has them."""
    import pandas as pd

    prefix = getattr(model, "base_model_prefix", "")
    counts: dict[str, int] = {}
    dense: dict[str, bool] = {}
    for name, param in model.named_parameters():
        component = component_of(name, prefix)
        counts[component] = counts.get(component, 0) + param.numel()
        dense[component] = not is_embedding(name)  # an embedding table is one component of its own
    table = pd.DataFrame({"parameters": counts, "in dense N": dense})
    table.index.name = "component"
    table["share %"] = (100 * table["parameters"] / table["parameters"].sum()).round(2)
    return table


def plot_parameters(table, title: str = "Parameters per component"):
    """Horizontal bars of a parameter_table, input side on top; embedding tables (outside dense N) in orange."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.4 * len(table) + 1.2))
    colours = ["#4c72b0" if dense else "#dd8452" for dense in table["in dense N"]]
    ax.barh(list(table.index), table["parameters"], color=colours)
    ax.invert_yaxis()
    ax.set(title=f"{title} (orange: embedding lookups, outside dense N)", xlabel="parameters (count)",
           ylabel="component")
    fig.tight_layout()
    return fig


def dense_parameters(model: torch.nn.Module) -> int:
    """Parameters that take part in matrix multiplies: all but the embedding tables."""
    return sum(p.numel() for name, p in model.named_parameters() if not is_embedding(name))


def training_flops(parameters: int, tokens: int) -> int:
    """~6 x parameters x tokens floating-point operations for one forward and backward pass (Kaplan et al.)."""
    return FLOPS_PER_PARAM_PER_TOKEN * parameters * tokens


def step_compute(model: torch.nn.Module, batch: dict):
    """The compute of one training step on `batch`: tokens (real and padded) and the FLOPs of each count.

    Padding tokens cost the same as real ones (the attention mask hides them from the result, not from the
    matrix multiplies), so the processed count is what the device really computes.
    """
    import pandas as pd

    dense = dense_parameters(model)
    real, processed = int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())
    rows = {"real tokens (attention mask = 1)": real, "processed tokens (batch x width)": processed}
    table = pd.DataFrame({"tokens": rows, "dense parameters": dense,
                          "FLOPs (6 x parameters x tokens)": {k: training_flops(dense, v) for k, v in rows.items()}})
    table["GFLOPs"] = (table["FLOPs (6 x parameters x tokens)"] / 1e9).round(3)
    return table


def distilbert_base_skeleton() -> torch.nn.Module:
    """DistilBERT-base's architecture with a 4-topic head, on the meta device: shapes only, no weights, no download.

    DistilBertConfig's defaults are distilbert-base-uncased's (30,522-token vocabulary, 6 layers of width 768).
    """
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    with torch.device("meta"):
        return DistilBertForSequenceClassification(DistilBertConfig(num_labels=4))


def embedding_gradient(model: torch.nn.Module, batch: dict | None = None) -> dict:
    """What DDP all-reduces for the word-embedding table each step: its whole gradient, dense.

    `nn.Embedding(sparse=False)` (DistilBERT's) returns a dense gradient the size of the table, zero in the rows no
    token of the batch used; DDP all-reduces it byte for byte with every other gradient. Given a batch (with
    labels), one backward pass shows it: the gradient's layout and how few of its rows are non-zero.
    """
    table = model.get_input_embeddings()
    trainable = [p for p in model.parameters() if p.requires_grad]
    gradient_bytes = sum(p.numel() * p.element_size() for p in trainable)
    report = {"embedding table (rows x width)": f"{table.weight.shape[0]:,} x {table.weight.shape[1]:,}",
              "sparse gradient (nn.Embedding sparse=)": bool(table.sparse),
              "embedding parameters": table.weight.numel(),
              "trainable parameters": sum(p.numel() for p in trainable),
              "share of the gradient bytes all-reduced per step": table.weight.numel() * table.weight.element_size()
              / gradient_bytes}
    if batch is not None:
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        grad = table.weight.grad
        report["gradient layout after backward"] = str(grad.layout).removeprefix("torch.")
        report["gradient rows that are non-zero"] = int((grad != 0).any(dim=1).sum())
        model.zero_grad(set_to_none=True)
    return report


def seconds_at(flops: float, peak_flops_per_s: float, utilization: float) -> float:
    """Time for `flops` on a device with this datasheet peak, running at this fraction of it."""
    if peak_flops_per_s <= 0 or not 0 < utilization <= 1:
        raise ValueError(f"need a positive peak and a utilization in (0, 1]; got {peak_flops_per_s}, {utilization}")
    return flops / (peak_flops_per_s * utilization)


def time_training_step(model: torch.nn.Module, batch: dict, device: torch.device, precision: str = "fp32",
                       repeats: int = 3) -> float:
    """Median seconds of one forward and backward pass on `batch` on `device` (one warm-up pass first).

    A measurement of this machine, not an estimate; the optimizer update (a few element-wise passes over
    the weights) is left out, as in the 6 x N x tokens count.
    """
    from .precision import autocast

    model.to(device).train()
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "labels")}
    timings = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        with autocast(precision, device):
            loss = model(**inputs).loss
        loss.backward()
        synchronize(device)  # CUDA runs asynchronously: stop the clock only when the GPU is done
        if i:  # the first pass warms up kernels and allocators; it is not representative
            timings.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return float(np.median(timings))


# ---- 03: the training run ------------------------------------------------------------------------


def schedule_curve(scheduler, total_steps: int) -> tuple[list[int], list[float]]:
    """The learning rate after each of 0..total_steps optimizer steps, read from the scheduler's own rule.

    Works for any LambdaLR (transformers' linear warmup schedule is one), without stepping it.
    """
    base, rule = scheduler.base_lrs[0], scheduler.lr_lambdas[0]
    steps = list(range(total_steps + 1))
    return steps, [base * rule(step) for step in steps]


def plot_learning_rate(scheduler, total_steps: int, logged=None, title: str = "Learning rate"):
    """The run's schedule step by step (line), and the values metrics.jsonl logged (dots), which must lie on it."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(*schedule_curve(scheduler, total_steps), label="schedule")
    if logged is not None:
        ax.plot(logged["step"], logged["lr"], "o", markersize=4, label="logged during training")
    ax.set(title=title, xlabel="optimizer step", ylabel="learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.legend()
    fig.tight_layout()
    return fig


def per_class_table(metrics: dict):
    """Precision, recall, F1 and support per topic from an evaluation (eval.json)."""
    import pandas as pd

    table = pd.DataFrame(metrics["per_class"]).T.round(3)
    table["support"] = table["support"].astype(int)
    table.index.name = "topic"
    return table
