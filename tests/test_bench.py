"""`distrinews bench infer`, `bench accuracy` and `bench padding` at toy size (training: test_bench_train)."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from conftest import run_cli

from distrinews.bench import benchmark_inference
from distrinews.onnx_export import cpu_isa, describe_isa, needs_reduced_range
from distrinews.synthetic import generate_news

CANDIDATES = ("pipeline", "fp32", "torch_int8", "onnx_fp32", "onnx_int8")
TIMINGS = [f"{variant}_{metric}" for variant in CANDIDATES + ("optimized",)
           for metric in ("p50_ms", "p95_ms", "texts_per_s")]


def test_bench_infer_reports_every_candidate_and_the_cpu_instruction_sets():
    proc = run_cli("bench", "infer", "--model", "tiny", "--runs", "3", "--json")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["candidates"] == list(CANDIDATES) and report["unavailable"] == {}
    for key in TIMINGS + ["ratio", "cpu_threads"]:
        assert report[key] > 0, key
    assert report["default_path"] == "onnx_int8"  # what NewsClassifier.load picks where onnxruntime is installed
    for metric in ("p50_ms", "p95_ms", "texts_per_s"):
        assert report[f"optimized_{metric}"] == report[f"onnx_int8_{metric}"]
    assert report["ratio"] == pytest.approx(report["optimized_p50_ms"] / report["pipeline_p50_ms"], rel=1e-9)
    assert report["onnx_fp32_ratio"] == pytest.approx(report["onnx_fp32_p50_ms"] / report["pipeline_p50_ms"])
    assert report["model"] == "tiny" and report["random_weights"] is True
    assert report["torch_version"] and report["transformers_version"] and report["onnxruntime_version"]
    isa = {key: report[f"cpu_{key}"] for key in ("avx2", "avx512", "vnni", "amx")}
    assert report["cpu_isa"] == describe_isa(isa) == describe_isa(cpu_isa()) and report["cpu_isa"] in report["label"]
    assert report["int8_weight_bits"] in (7, 8)
    assert "RANDOM weights" in proc.stdout and f"instruction sets: {report['cpu_isa']}" in proc.stdout
    assert "ONNX Runtime int8" in proc.stdout and "<- default" in proc.stdout


def test_bench_infer_without_onnxruntime_times_the_rest_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    report = benchmark_inference("tiny", runs=1)
    assert report["candidates"] == ["pipeline", "fp32", "torch_int8"]
    assert set(report["unavailable"]) == {"onnx_fp32", "onnx_int8"}
    assert "onnxruntime not installed" in report["unavailable"]["onnx_int8"]
    assert report["default_path"] == "torch_int8" and report["optimized_p50_ms"] == report["torch_int8_p50_ms"]


def test_bench_accuracy_compares_fp32_and_every_int8_path(smoke_run, tmp_path):
    texts, labels = generate_news(60, seed=21)
    test_file = tmp_path / "test.csv"
    with test_file.open("w", newline="") as handle:  # the original AG News form: "class","title","description"
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for text, label in zip(texts, labels):
            title, _, description = text.partition(". ")
            writer.writerow([str(label + 1), title, description or title])
    proc = run_cli("bench", "accuracy", "--checkpoint", str(smoke_run / "checkpoint"),
                   "--test-file", str(test_file), "--json")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["n_examples"] == 60 and report["unavailable"] == {}
    assert 0.5 < report["fp32_accuracy"] <= 1 and 0 <= report["int8_accuracy"] <= 1
    assert report["delta_points"] == pytest.approx((report["int8_accuracy"] - report["fp32_accuracy"]) * 100)
    assert set(report["paths"]) == {"torch-int8", "onnx-int8-8bit", "onnx-int8-7bit"}
    for row in report["paths"].values():
        assert row["delta_points"] == pytest.approx((row["accuracy"] - report["fp32_accuracy"]) * 100)
        assert 0.9 <= row["agreement"] <= 1  # int8 labels mostly the fp32 labels; a broken path would be near 0.25
    expected = "onnx-int8-7bit" if needs_reduced_range() else "onnx-int8-8bit"
    assert report["default_path"] == expected and report["default_accuracy"] == report["paths"][expected]["accuracy"]
    assert "<- default" in proc.stdout and "agrees with fp32" in proc.stdout


# The figures for the real AG News test set (7,600 texts, bert-base-uncased vocabulary, batches of 32,
# length 128): tokens processed per real token. Dynamic padding depends on the shuffle (one epoch ranges
# 1.93 to 1.98), so `bench padding` averages 10 shuffles (1.948 here); over 40 shuffles the mean is 1.953.
REAL_AG_NEWS = {"max_length": 2.44, "dynamic": 1.94, "grouped": 1.004}


def test_bench_padding_on_real_ag_news(realdata):
    proc = run_cli("bench", "padding", "--test-file", str(realdata / "test.csv"), "--json")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["n_texts"] == 7600 and report["default_strategy"] == "grouped" and report["shuffles"] == 10
    for strategy, figure in REAL_AG_NEWS.items():
        assert abs(report[strategy] - figure) <= 0.01, (strategy, report[strategy], figure)
    assert report["default"] == report["grouped"] <= 1.05
    # Balanced steps keep the ranks in step (0.994 and 0.985; dealt at random 0.863 and 0.756)
    assert set(report["sync_efficiency"]) == set(report["sync_efficiency_dealt"]) == {"2", "4"}
    for size in ("2", "4"):
        assert report["sync_efficiency"][size] >= 0.98 > 0.9 > report["sync_efficiency_dealt"][size]
    assert "2 ranks: 0.99" in proc.stdout and "dealt at random" in proc.stdout


def test_bench_padding_without_a_file_says_it_measures_synthetic_news():
    proc = run_cli("bench", "padding", "--model", "tiny", "--max-length", "64", "--shuffles", "2",
                   "--world-sizes", "3", "--json")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["data"].startswith("synthetic") and report["grouped"] < report["dynamic"] < report["max_length"]
    assert list(report["sync_efficiency"]) == ["3"] and report["sync_efficiency"]["3"] > 0.95


def test_bench_padding_measures_what_a_preset_trains_on():
    proc = run_cli("bench", "padding", "--preset", "smoke", "--shuffles", "1", "--json")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # what smoke trains on: its 2,000 synthetic rows less the 5% held out for validation
    assert report["data"].startswith("smoke: synthetic") and report["n_texts"] == 1900
    assert report["model"] == "tiny" and report["max_length_tokens"] == 64 and report["batch_size"] == 32


def pretend_a_t4(monkeypatch):
    """torch sees one Tesla T4; tensors sent to "cuda" stay on the CPU, so the models still run here."""
    import torch
    from test_inference import fake_cuda

    fake_cuda(monkeypatch)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # a T4's answer, by emulation
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 3))


def test_bench_infer_on_cuda_labels_the_row_with_the_gpu_and_times_its_16_bit_path(monkeypatch):
    """Regression: the CUDA row carried the CPU's name and instruction sets, and GPU inference ran fp32 only."""
    pretend_a_t4(monkeypatch)
    report = benchmark_inference("tiny", runs=1, device="cuda")
    assert report["label"] == "Tesla T4" and report["device_name"] == "Tesla T4"
    assert report["candidates"] == ["pipeline", "fp32", "fp16"]  # fp16 on a T4, never its emulated bf16
    assert report["default_path"] == "fp16" and report["optimized_p50_ms"] == report["fp16_p50_ms"]


def test_bench_accuracy_builds_its_reference_on_the_cpu_where_cuda_exists(smoke_run, tmp_path, monkeypatch):
    """Regression: a reference loaded with device auto sat on CUDA, its ONNX export failed, and both ONNX paths
    were reported unavailable (the default then named PyTorch int8, although serving picks ONNX Runtime)."""
    from distrinews import bench
    from distrinews.inference import NewsClassifier

    pretend_a_t4(monkeypatch)
    loads, real_load = [], NewsClassifier.load.__func__

    def load(cls, source, *args, **kwargs):
        loads.append(kwargs.get("device", "auto"))
        return real_load(cls, source, *args, **kwargs)

    monkeypatch.setattr(NewsClassifier, "load", classmethod(load))
    texts, labels = generate_news(20, seed=3)
    test_file = tmp_path / "test.csv"
    with test_file.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for text, label in zip(texts, labels):
            writer.writerow([str(label + 1), text, text])
    report = bench.measure_accuracy_cost(str(smoke_run / "checkpoint"), test_file)
    assert loads == ["cpu"]  # the reference ONNX Runtime exports from; the export itself is tested without a fake
    assert "torch-int8" in report["paths"]  # (torch's exporter takes CUDA paths where is_available() is faked)
