"""NewsClassifier and `distrinews predict` on the smoke run's tiny checkpoint: nothing new is trained here."""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from distrinews import onnx_export
from distrinews.inference import NewsClassifier, Prediction, pick_device
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
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    monkeypatch.setattr(torch.Tensor, "to", to)
    return moves


def int8_layers(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())


# ---- the CPU's default path: ONNX Runtime int8 where it can run, PyTorch int8 otherwise -------------------

def test_on_a_cpu_machine_auto_runs_onnx_runtime_int8_exported_once(checkpoint, fp32, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clf = NewsClassifier.load(str(checkpoint))
    assert clf.device == "cpu" and clf.engine == "onnx-int8" and clf.engine_note is None
    cache = Path(os.environ["DISTRINEWS_CACHE"]) / "onnx"  # conftest's, for the whole session
    assert clf.model.int8 and clf.model.path.parent.parent == cache  # cached by weights, not beside them
    assert not list(checkpoint.glob("*.onnx"))
    texts, _ = generate_news(200, seed=11)
    same = sum(a.label == b.label for a, b in zip(fp32.predict(texts), clf.predict(texts)))
    assert same >= 0.95 * len(texts), f"ONNX Runtime int8 agrees on only {same}/200 labels"

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this checkpoint's graph")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    monkeypatch.setattr(onnx_export, "quantize_onnx", no_export)
    again = NewsClassifier.load(str(checkpoint))
    assert again.engine == "onnx-int8" and again.model.path == clf.model.path
    assert again.predict(HEADLINES[0]).probabilities == clf.predict(HEADLINES[0]).probabilities


def op_types(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_the_exported_graph_runs_onnx_runtimes_fused_attention_and_int8_qattention(checkpoint, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clf = NewsClassifier.load(str(checkpoint))
    assert {"Attention", "SkipLayerNormalization"} <= op_types(clf.model.path.with_name("model.onnx"))
    assert "QAttention" in op_types(clf.model.path), "the int8 graph multiplies Q, K and V in float"


def test_a_fused_graph_that_differs_from_torch_is_not_used(checkpoint, fp32, monkeypatch, tmp_path):
    """A fusion that loses the padding mask: check_export's padded batch catches it, the unfused graph runs."""
    import onnx

    monkeypatch.setenv("DISTRINEWS_CACHE", str(tmp_path))
    real_fuse = onnx_export.fuse_for_ort

    def fuse_without_mask(source, path):
        counts = real_fuse(source, path)
        graph = onnx.load(str(path))
        for node in graph.graph.node:
            if node.op_type == "Attention":
                node.input[3] = ""  # every key attended to, padding too
        onnx.save(graph, str(path))
        return counts

    monkeypatch.setattr(onnx_export, "fuse_for_ort", fuse_without_mask)
    clf = NewsClassifier.load(str(checkpoint), device="cpu")
    assert clf.engine == "onnx-int8" and clf.engine_note is None
    assert "Attention" not in op_types(clf.model.path.with_name("model.onnx"))
    assert not list(tmp_path.rglob("*.fused")), "the rejected fused graph was left in the cache"
    texts = generate_news(40, seed=5)[0]
    same = sum(a.label == b.label for a, b in zip(fp32.predict(texts), clf.predict(texts)))
    assert same >= 0.95 * len(texts)


def test_an_export_in_an_app_that_logs_at_info_adds_no_exporter_or_fusion_lines(checkpoint, monkeypatch, tmp_path,
                                                                                  caplog):
    monkeypatch.setenv("DISTRINEWS_CACHE", str(tmp_path))
    caplog.set_level(logging.INFO)
    clf = NewsClassifier.load(str(checkpoint), device="cpu")
    assert clf.engine == "onnx-int8"
    quiet = ("onnxscript", "onnx_ir", "onnxruntime", "root")  # the quantizer advises on the root logger
    noisy = [f"{r.name}: {r.getMessage()}" for r in caplog.records
             if r.name.split(".")[0] in quiet or r.name.startswith("torch.onnx")]
    assert not noisy, noisy[:5]


def test_onnx_fp32_matches_torch_on_any_batch_size_and_length(checkpoint, fp32):
    """The graph's batch and sequence axes are dynamic: one text, full batches of 32 and a remainder, long and short."""
    onnx = NewsClassifier.load(str(checkpoint), optimize="onnx-fp32")
    assert onnx.engine == "onnx-fp32" and not onnx.model.int8
    texts = generate_news(70, seed=3)[0] + ["Markets " * 300, "x"]
    for a, b in zip(fp32.predict(texts), onnx.predict(texts)):
        assert a.label == b.label and a.truncated == b.truncated
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)


def test_without_onnxruntime_auto_falls_back_to_torch_int8_and_says_why(checkpoint, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    clf = NewsClassifier.load(str(checkpoint), device="cpu")
    assert clf.engine == "torch-int8" and int8_layers(clf.model) > 0
    assert "onnxruntime not installed" in clf.engine_note and "\n" not in clf.engine_note
    assert "onnxruntime not installed" in caplog.text and "PyTorch's dynamic int8" in caplog.text
    assert "torch-int8 on the CPU" in clf.describe() and "onnxruntime" in clf.describe()
    with pytest.raises(ValueError, match="onnxruntime not installed"):  # asked for by name: no silent fallback
        NewsClassifier.load(str(checkpoint), optimize="onnx-int8")


def test_a_failed_export_falls_back_with_a_one_line_reason(checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTRINEWS_CACHE", str(tmp_path))

    def broken_export(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate\nlong traceback text")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    clf = NewsClassifier.load(str(checkpoint), device="cpu")
    assert clf.engine == "torch-int8"
    assert clf.engine_note == "ONNX Runtime not used: ONNX export failed: RuntimeError: unsupported operator aten::frobnicate"
    assert not list((tmp_path / "onnx").rglob("*.onnx*")), "a failed export left a file in the cache"


def test_an_unwritable_cache_exports_to_a_temporary_folder(checkpoint, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DISTRINEWS_CACHE", str(blocker / "cache"))  # mkdir fails, even for root
    clf = NewsClassifier.load(str(checkpoint), device="cpu")
    assert clf.engine == "onnx-int8" and blocker.is_file()
    assert not clf.model.path.is_relative_to(tmp_path)


def test_a_cpu_without_vnni_gets_7_bit_weights(checkpoint, monkeypatch):
    """ONNX Runtime's guide: 8-bit weights can saturate AVX2's int16 pair sums; 7-bit ones cannot."""
    monkeypatch.setattr(onnx_export, "cpu_isa", lambda: {"avx2": True, "avx512": False, "vnni": False, "amx": False})
    monkeypatch.setattr(onnx_export.platform, "machine", lambda: "x86_64")
    clf = NewsClassifier.load(str(checkpoint), device="cpu")
    assert clf.engine == "onnx-int8" and clf.model.reduced_range and clf.model.path.name == "model-int8-7bit.onnx"
    assert onnx_export.needs_reduced_range({"avx2": True, "avx512": True, "vnni": True, "amx": False}) is False


def test_the_cpu_instruction_sets_are_named():
    isa = onnx_export.cpu_isa()
    assert set(isa) == {"avx2", "avx512", "vnni", "amx"} and all(isinstance(v, bool) for v in isa.values())
    assert onnx_export.describe_isa({"avx2": True, "avx512": False, "vnni": False, "amx": False}) == "AVX2"
    assert onnx_export.describe_isa({"avx2": True, "avx512": True, "vnni": True, "amx": True}) == "AVX2 AVX-512 VNNI AMX"
    assert onnx_export.describe_isa({k: False for k in isa}) == "no AVX2/AVX-512/VNNI/AMX"


def test_on_a_cuda_machine_auto_runs_float_weights_on_the_gpu(checkpoint, fp32, monkeypatch):
    """Regression: int8 (CPU-only kernels) used to be picked whatever the device, then moved to CUDA."""
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


@pytest.mark.parametrize("capability, half", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_on_a_gpu_auto_computes_in_the_gpus_native_16_bit_format(checkpoint, monkeypatch, capability, half):
    """Regression: GPU inference ran in fp32. bf16 only from capability 8.0: a T4 (7.5) answers True to
    is_bf16_supported() by emulation, which would run slower than fp16, not faster."""
    fake_cuda(monkeypatch)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    clf = NewsClassifier.load(str(checkpoint))
    assert (clf.precision, clf.engine) == (half, f"torch-{half}")
    assert NewsClassifier.load(str(checkpoint), optimize="none").precision == "fp32"  # "none" stays float32


def test_half_precision_autocast_agrees_with_fp32_on_the_labels(checkpoint, fp32):
    """The autocast path itself, run where a CPU can: bf16 autocast on the CPU, held to int8's agreement rule."""
    texts = HEADLINES * 5
    half = NewsClassifier(copy.deepcopy(fp32.model), fp32.tokenizer, device="cpu", precision="bf16")
    agree = sum(a.label == b.label for a, b in zip(half.predict(texts), fp32.predict(texts))) / len(texts)
    assert agree >= 0.99
    assert half.engine == "torch-bf16"


def test_int8_always_runs_on_the_cpu(checkpoint, monkeypatch):
    fake_cuda(monkeypatch)
    clf = NewsClassifier.load(str(checkpoint), optimize="int8")  # device="auto" picks the CPU for int8
    assert clf.device == "cpu" and int8_layers(clf.model) > 0
    assert NewsClassifier.load(str(checkpoint), device="cpu").device == "cpu"  # auto on the CPU: int8
    for optimize in ("int8", "onnx-int8", "onnx-fp32"):
        with pytest.raises(ValueError, match="only on the CPU"):
            NewsClassifier.load(str(checkpoint), optimize=optimize, device="cuda")
    assert pick_device("auto", "onnx-int8") == pick_device("auto", "onnx-fp32") == "cpu"


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
