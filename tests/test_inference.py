"""NewsClassifier and `distrinews predict` on the smoke run's tiny checkpoint: nothing new is trained here."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli

from distrinews.inference import NewsClassifier, Prediction
from distrinews.labels import LABEL_NAMES
from distrinews.synthetic import generate_news

HEADLINES = ["Stocks rally as oil prices fall", "Striker scores twice as City win the cup final",
             "New chip doubles battery life of laptops", "Rebels and government sign ceasefire in capital"]


@pytest.fixture(scope="module")
def checkpoint(smoke_run):
    return smoke_run / "checkpoint"


@pytest.fixture(scope="module")
def fp32(checkpoint):
    return NewsClassifier.load(str(checkpoint), optimize="none")


@pytest.fixture(scope="module")
def int8(checkpoint):
    return NewsClassifier.load(str(checkpoint), optimize="int8")


def test_one_string_gives_one_prediction_over_all_four_classes(fp32):
    prediction = fp32.predict(HEADLINES[0])
    assert isinstance(prediction, Prediction)
    assert list(prediction.probabilities) == list(LABEL_NAMES)
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)
    assert prediction.truncated is False


def test_a_list_comes_back_in_input_order_and_matches_one_by_one(fp32):
    texts, _ = generate_news(70, seed=3)  # more than two batches, lengths shuffled by the length sort
    together = fp32.predict(texts)
    assert isinstance(together, list) and len(together) == len(texts)
    for text, prediction in zip(texts, together):
        alone = fp32.predict(text)
        assert prediction.label == alone.label
        for name in LABEL_NAMES:  # padding in a batch changes float sums only in the last digits
            assert prediction.probabilities[name] == pytest.approx(alone.probabilities[name], abs=1e-4)


def test_a_huge_text_is_cut_and_flagged(fp32):
    long_text = "Markets " * 25_000  # 200,000 characters
    prediction, short = fp32.predict([long_text, HEADLINES[0]])
    assert prediction.truncated is True and short.truncated is False
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("text", ["🚀📈 Stocks to the moon 🌕", "Биржи растут после решения ЦБ", "株価が上昇した",
                                  "Tab\there\x00null\x1bescape\r\nline", "", "   ", "\u200b\u200b"])
def test_odd_text_is_handled(fp32, text):
    prediction = fp32.predict(text)
    assert prediction.label in LABEL_NAMES
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-5)


def test_int8_agrees_with_fp32_on_the_label(fp32, int8):
    texts, _ = generate_news(200, seed=11)
    same = sum(a.label == b.label for a, b in zip(fp32.predict(texts), int8.predict(texts)))
    assert same >= 0.95 * len(texts), f"int8 agrees on only {same}/200 labels"


def test_trained_checkpoint_beats_chance(fp32):
    texts, labels = generate_news(200, seed=12)
    correct = sum(LABEL_NAMES.index(p.label) == y for p, y in zip(fp32.predict(texts), labels))
    assert correct / len(labels) > 0.5  # chance is 0.25: the checkpoint was really loaded


def test_unknown_optimize_is_an_error(checkpoint):
    with pytest.raises(ValueError, match="optimize"):
        NewsClassifier.load(str(checkpoint), optimize="fp8")


# ---- the device: where the model runs decides its weights ---------------------------------------------------

def fake_cuda(monkeypatch) -> list[str]:
    """Make torch see a CUDA GPU on a CPU machine: a tensor sent to "cuda" stays on the CPU, and the move is
    recorded in the list returned. Models still run (on the CPU), so tests check which weights were chosen and
    where they were sent; an int8 model sent to CUDA is the defect they catch (no CUDA kernel runs it)."""
    moves, real_to = [], torch.Tensor.to

    def to(tensor, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cuda":
            moves.append(str(target))
            if "device" in kwargs:
                kwargs["device"] = "cpu"
            else:
                args = ("cpu", *args[1:])
        return real_to(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.Tensor, "to", to)
    return moves


def int8_layers(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())


def test_on_a_cpu_machine_auto_means_int8_on_the_cpu(checkpoint, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clf = NewsClassifier.load(str(checkpoint))
    assert clf.device == "cpu" and int8_layers(clf.model) > 0


def test_on_a_cuda_machine_auto_runs_float_weights_on_the_gpu(checkpoint, fp32, monkeypatch):
    """Issue #12.1: int8 (CPU-only kernels) used to be picked whatever the device, then moved to CUDA."""
    moves = fake_cuda(monkeypatch)
    clf = NewsClassifier.load(str(checkpoint))  # optimize="auto", device="auto"
    assert int8_layers(clf.model) == 0, "int8 weights chosen for a CUDA machine: no CUDA kernel runs them"
    assert clf.device == "cuda"
    assert all(p.dtype == torch.float32 for p in clf.model.parameters())
    weights_moved = len(moves)
    assert weights_moved > 0, "the weights were never sent to CUDA"
    prediction = clf.predict(HEADLINES[0])
    assert len(moves) > weights_moved, "the inputs were not sent to the model's device"
    alone = fp32.predict(HEADLINES[0])
    assert prediction.label == alone.label
    assert prediction.probabilities == pytest.approx(alone.probabilities, abs=1e-5)


def test_int8_always_runs_on_the_cpu(checkpoint, monkeypatch):
    fake_cuda(monkeypatch)
    clf = NewsClassifier.load(str(checkpoint), optimize="int8")  # device="auto" picks the CPU for int8
    assert clf.device == "cpu" and int8_layers(clf.model) > 0
    assert NewsClassifier.load(str(checkpoint), device="cpu").device == "cpu"  # auto on the CPU: int8
    with pytest.raises(ValueError, match="only on the CPU"):
        NewsClassifier.load(str(checkpoint), optimize="int8", device="cuda")


def test_cuda_without_a_gpu_and_an_unknown_device_are_errors(checkpoint, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        NewsClassifier.load(str(checkpoint), device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        NewsClassifier.load(str(checkpoint), device="tpu")


def test_predict_cli_prints_labels_and_json(checkpoint):
    proc = run_cli("predict", "--checkpoint", str(checkpoint), *HEADLINES[:2], "--json")
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert [r["text"] for r in result] == HEADLINES[:2]
    for line, r in zip(lines, result):
        assert line.startswith(r["label"]) and r["label"] in LABEL_NAMES
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_predict_cli_missing_checkpoint_is_one_line(tmp_path):
    proc = run_cli("predict", "--checkpoint", str(tmp_path / "nope"), "a headline", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "nope" in proc.stderr and "checkpoint/ folder" in proc.stderr
