"""What the serve and publish commands share: their user error, a clean staging folder, the optional imports;
and the model card `publish space` writes, generated from the run's own files.

`serving` (serve, publish space) and `kaggle` (publish kaggle) both import this module and nothing of each other's
but the `publish kaggle` registration; the CLI catches PublishError and prints it in one line (exit 2).
"""

from __future__ import annotations

import importlib
import json
import shutil
import struct
from pathlib import Path
from types import ModuleType


class PublishError(ValueError):
    """A publish or serve that cannot go ahead; the message says what to fix."""


def needs(module: str, command: str, extra: str | None = None) -> ModuleType:
    """Import an optional dependency of `command`, or fail with the pip command that installs it.

    Args:
        extra: the distrinews extra that brings it ("course", "space"); None for a core dependency.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:  # also raised for a module set to None in sys.modules
        missing = err.name or module  # gradio present but its fastapi missing: the extra brings both
        install = f'pip install "distrinews[{extra}]"' if extra else f"pip install {module}"
        raise PublishError(f"`distrinews {command}` needs {missing}, which is not installed here: {install}") from None


def fresh_dir(path: Path) -> Path:
    """An empty folder at path: a staged folder never keeps files from an earlier run."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ---- the model card -------------------------------------------------------------------------------------------

AG_NEWS = "fancyzhx/ag_news"
AG_NEWS_TEST_ROWS = 7600
AG_NEWS_TERMS = ("AG News is drawn from the AG's corpus of news articles, which ComeToMyHead's authors provide for "
                 "research and other non-commercial activity "
                 "(http://www.di.unipi.it/~gulli/AG_corpus_of_news_articles.html); the Hugging Face dataset card "
                 "lists no license. A model trained on it inherits those terms: check them before any commercial use.")
MINILM_ALIAS = ("minilm", "sentence-transformers/all-MiniLM-L6-v2")  # `--model minilm`: modeling.MINILM_HUB_ID
LEGACY_HUB_IDS = {"distilbert-base-uncased": "distilbert/distilbert-base-uncased"}  # the id the Hub lists today


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_training_state(checkpoint: Path) -> dict:
    """Precision, world size and progress from training_state.pt (the optimizer's tensors stay on disk: mmap)."""
    path = checkpoint / "training_state.pt"
    if not path.is_file():
        return {}
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"precision": state.get("precision"), "world_size": state.get("world_size"),
            "step": state.get("progress", {}).get("step")}


def count_weights(path: Path) -> int:
    """Parameters in a safetensors file, from its header alone."""
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for size in entry["shape"]:
                count *= size
            total += count
    return total


def base_model(model_name: str) -> tuple[str | None, str]:
    """(hub id of the pretrained model the run fine-tuned, or None; how the card names it)."""
    if model_name == "tiny":
        return None, "none: the smoke preset's 2-layer DistilBERT (`tiny`), initialised at random"
    if model_name == MINILM_ALIAS[0]:
        return MINILM_ALIAS[1], f"[{MINILM_ALIAS[1]}](https://huggingface.co/{MINILM_ALIAS[1]}) (`minilm`)"
    if Path(model_name).exists():
        return None, f"the local folder `{model_name}`"
    hub_id = LEGACY_HUB_IDS.get(model_name, model_name)
    return hub_id, f"[{hub_id}](https://huggingface.co/{hub_id})"


def training_data(config: dict, metrics: dict) -> str | None:
    """"ag_news", "synthetic", or None when the run's files cannot tell.

    data_source "auto" without files picks a Kaggle input, a local copy or the hub (all AG News), else synthetic
    news; the run records only the choice it was given, so the test set's size tells them apart when it can.
    """
    source = config.get("data_source")
    if source == "synthetic":
        return "synthetic"
    if source in ("files", "kaggle", "hub") or config.get("train_files") or config.get("test_file"):
        return "ag_news"
    cap = config.get("max_test_rows") or 0
    synthetic_rows = min(config.get("synthetic_test_size", 0), cap or 1 << 62)
    if source == "auto" and metrics.get("n_examples") and metrics["n_examples"] != synthetic_rows:
        return "ag_news"
    return None


def model_card(checkpoint: Path, model_id: str, onnx_file: str | None = None) -> str:
    """The model card: YAML front matter (base model, dataset, the Hub's model-index with the run's metrics) and
    a page stating what the run's files record and nothing else.

    Sources: distrinews_config.json (the recipe), config.json (architecture, labels), training_state.pt (the
    precision actually used, the world size, the steps), eval.json beside the checkpoint (the test metrics).
    """
    import yaml

    config = read_json(checkpoint / "distrinews_config.json")
    model_config = read_json(checkpoint / "config.json")
    metrics = read_json(checkpoint.parent / "eval.json")
    state = read_training_state(checkpoint)
    labels = [model_config.get("id2label", {}).get(str(i)) for i in range(len(model_config.get("id2label", {})))]
    base_id, base_text = base_model(config.get("model_name", "?"))
    data = training_data(config, metrics)
    architecture = (model_config.get("architectures") or ["?"])[0]
    weights = checkpoint / "model.safetensors"
    size = f", {count_weights(weights) / 1e6:.1f}M parameters" if weights.is_file() else ""

    meta = {"license": "mit", "language": ["en"], "library_name": "transformers", "pipeline_tag": "text-classification"}
    if base_id:
        meta["base_model"] = base_id
    if data == "ag_news":
        meta["datasets"] = [AG_NEWS]
    meta["metrics"] = ["accuracy", "f1"]
    meta["tags"] = [tag for tag in (model_config.get("model_type"), "ag-news" if data == "ag_news" else None,
                                    "distrinews", "ddp" if (state.get("world_size") or 1) > 1 else None) if tag]
    if data == "ag_news" and metrics:
        n = metrics.get("n_examples")
        subset = "" if n == AG_NEWS_TEST_ROWS else f" ({n} of its {AG_NEWS_TEST_ROWS} test rows)"
        meta["model-index"] = [{"name": model_id.split("/")[-1], "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": {"name": "AG News" + subset, "type": AG_NEWS, "split": "test"},
            "metrics": [{"type": "accuracy", "value": round(metrics["accuracy"], 4), "name": "Accuracy"},
                        {"type": "f1", "value": round(metrics["macro_f1"], 4), "name": "Macro F1",
                         "args": {"average": "macro"}}]}]}]

    world = state.get("world_size")
    per_device, accum = config.get("per_device_batch_size"), config.get("grad_accum_steps")
    if world is None:
        how = "The number of processes is not recorded (no training_state.pt beside the weights)."
    elif world == 1:
        how = "one process, so no DistributedDataParallel."
    else:
        how = (f"{world} processes under `torchrun`, one per device, wrapped in PyTorch DistributedDataParallel "
               f"(DDP): gradients averaged by all-reduce after every backward pass.")
    sampler = ("distrinews' own `BatchSampler` (`distrinews.batching`), not PyTorch's DistributedSampler: every "
               "epoch is shuffled with the seed, and with several processes batch i goes to rank i mod world "
               "size, so each rank reads a disjoint share of whole batches"
               + (", each batch grouped from texts of similar length (padding `grouped`)."
                  if config.get("padding") == "grouped" else f" (padding `{config.get('padding', '?')}`)."))
    batch = (f"{per_device} per device x {world} process{'es' if world != 1 else ''} x {accum} accumulation steps = "
             f"{per_device * world * accum} per optimizer step" if world and per_device and accum else "not recorded")
    recipe = "\n".join(f"| `{key}` | `{config[key]}` |" for key in (
        "model_name", "data_source", "max_length", "epochs", "max_steps", "per_device_batch_size",
        "grad_accum_steps", "optimizer", "learning_rate", "weight_decay", "warmup_ratio", "precision", "seed")
        if key in config)
    if data == "ag_news":
        data_text = (f"[AG News]({'https://huggingface.co/datasets/' + AG_NEWS}) (`data_source` "
                     f"`{config.get('data_source')}`).\n\n{AG_NEWS_TERMS}")
    elif data == "synthetic":
        data_text = ("**Synthetic news, not AG News**: the library's generated headlines (`data_source` "
                     "`synthetic`), for smoke tests. This model is a test artefact, not a news classifier.")
    else:
        data_text = (f"Not recorded: `data_source` was `{config.get('data_source', '?')}`, which uses AG News where "
                     "a copy is found and synthetic news otherwise, and the run's files do not say which. "
                     f"Where it was AG News: {AG_NEWS_TERMS}")
    if metrics:
        per_class = "\n".join(f"| {name} | {values['precision']:.4f} | {values['recall']:.4f} | {values['f1']:.4f} "
                              f"| {values['support']} |" for name, values in metrics.get("per_class", {}).items())
        results = (f"On {metrics.get('n_examples', '?')} held-out test examples (eval.json): accuracy "
                   f"**{metrics['accuracy']:.4f}**, macro-F1 **{metrics['macro_f1']:.4f}**, loss "
                   f"{metrics.get('loss', float('nan')):.4f}.\n\n| class | precision | recall | F1 | support |\n"
                   f"|---|---|---|---|---|\n{per_class}")
    else:
        results = "No eval.json was found beside the checkpoint: `distrinews evaluate` measures it."
    onnx_text = (f"\n`{onnx_file}` is the same model in ONNX with int8 weights (ONNX Runtime's dynamic quantization, "
                 "7 bits, a scale per output channel), made from these weights by `distrinews publish space` (the "
                 "float graph checked against PyTorch's logits before quantizing); the demo Space runs it on CPUs "
                 "without PyTorch.\n") if onnx_file else ""
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"""---
{front}---

# {model_id}

A news topic classifier with {len(labels)} labels: {", ".join(f"**{label}**" for label in labels)}. Trained with
the DistriNews course library (`distrinews train`); everything below comes from the run's own files.

## Model

- Base model: {base_text}
- Architecture: `{architecture}` (`{model_config.get("model_type", "?")}`{size})

## Training data

{data_text}

## How it was trained

- Processes: {how}
- Sampler: {sampler}
- Precision: {state.get("precision") or "not recorded"} (asked for `{config.get("precision", "?")}`).
- Global batch: {batch}; {state.get("step", "an unrecorded number of")} optimizer steps.

| setting | value |
|---|---|
{recipe or "| (no distrinews_config.json found) | |"}

## Results

{results}

## Use

```python
from transformers import pipeline

classify = pipeline("text-classification", model="{model_id}")
classify("Stocks rally as oil prices fall")
```
{onnx_text}"""
