"""Prediction without PyTorch: the int8 ONNX model `distrinews publish space` builds once, run by ONNX Runtime.

    clf = OnnxClassifier.load("me/distrinews-agnews")   # a published model (hub id or folder) with onnx/
    clf.predict(["Stocks rally as oil prices fall"])     # [Prediction(label="Business", ...)]

A CPU Space installs onnxruntime, tokenizers and gradio, not torch nor the exporter: the export and the int8
quantization ran when the model was published (`serving.build_onnx`), and this module imports neither torch nor
transformers, only what the Space installs. It answers as `inference.NewsClassifier` does on the CPU's ONNX path:
the checkpoint's own tokenizer.json, cut at max_length and padded per batch, batches of similar lengths, a softmax
over the logits, and `truncated` for a text longer than the model reads.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ONNX_FILE = "onnx/model-int8.onnx"  # where the published model repository keeps it
FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", ONNX_FILE)  # all a CPU Space downloads
ENGINE = "onnx-int8"


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]  # all four classes, summing to 1
    truncated: bool  # the text was longer than the model's limit and was cut

    def to_dict(self) -> dict:
        return {"label": self.label, "probabilities": self.probabilities, "truncated": self.truncated}


def predict_by_length(predict_batch, texts: str | list[str], batch_size: int) -> Prediction | list[Prediction]:
    """One text or a list through `predict_batch`, a batch of similar lengths at a time, in input order
    (both classifiers, this one and `inference.NewsClassifier`, predict this way)."""
    single = isinstance(texts, str)
    batch = [texts] if single else list(texts)
    order = sorted(range(len(batch)), key=lambda i: len(batch[i]))  # similar lengths share a batch
    results: list[Prediction | None] = [None] * len(batch)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        for i, prediction in zip(chunk, predict_batch([batch[i] for i in chunk])):
            results[i] = prediction
    return results[0] if single else results


class OnnxClassifier:
    """The published int8 ONNX model and its tokenizer, on the CPU; `NewsClassifier`'s interface."""

    engine, device, engine_note = ENGINE, "cpu", None

    def __init__(self, folder: Path, max_length: int = 128, batch_size: int = 32):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        self.max_length, self.batch_size = max_length, batch_size
        pad = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("pad_token", "[PAD]")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # tokenizer.json keeps the training run's own limits (a fixed length, another max): set ours, as
        # `tokenizer(..., truncation=True, max_length=..., padding=True)` does.
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad), pad_token=pad)
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1  # one graph, run node by node: parallelism is inside the matmuls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave idle cores alone
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])

    @classmethod
    def load(cls, source: str, max_length: int = 128) -> OnnxClassifier | None:
        """From a published model folder or hub id; None when it has no prebuilt ONNX model, or where ONNX Runtime
        is not installed (Kaggle's image): the caller runs the weights in torch instead."""
        folder = find_prebuilt(source)
        if folder is None or importlib.util.find_spec("onnxruntime") is None:
            return None
        return cls(folder, max_length=max_length)

    def describe(self) -> str:
        return f"{ENGINE} on the CPU (ONNX Runtime, dynamic int8; built when the model was published)"

    def predict(self, texts: str | list[str]) -> Prediction | list[Prediction]:
        """Label one text or a list; a list is batched by length, results come back in input order."""
        return predict_by_length(self.predict_batch, texts, self.batch_size)

    def predict_batch(self, texts: list[str]) -> list[Prediction]:
        encodings = self.tokenizer.encode_batch(texts)
        feed = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
        logits = self.session.run(["logits"], feed)[0].astype(np.float32)
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = (exp / exp.sum(axis=-1, keepdims=True)).tolist()
        return [Prediction(label=self.labels[int(np.argmax(p))], probabilities=dict(zip(self.labels, p)),
                           truncated=bool(e.overflowing))  # the cut-off tokens, when there were any
                for e, p in zip(encodings, probabilities)]


def find_prebuilt(source: str) -> Path | None:
    """The folder holding FILES: `source` itself when local, else those files alone from the hub (not the
    float32 weights, which a CPU Space never reads); None when the model has no prebuilt ONNX file."""
    folder = Path(source)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(source, allow_patterns=list(FILES)))
        except Exception:  # noqa: BLE001 - offline, no such repository: the caller falls back or says so
            return None
    return folder if all((folder / name).is_file() for name in FILES) else None


__all__ = ["ENGINE", "FILES", "ONNX_FILE", "OnnxClassifier", "Prediction", "find_prebuilt"]
