"""`distrinews predict` and `distrinews bench infer|accuracy|padding`: label headlines, measure the fast paths.

    distrinews predict --checkpoint runs/smoke/checkpoint "Stocks rally as oil prices fall" --json
    distrinews bench infer --json                      # every CPU candidate, DistilBERT-base, random weights
    distrinews bench infer --checkpoint runs/cpu-demo/checkpoint --runs 50
    distrinews bench accuracy --checkpoint runs/cpu-demo/checkpoint --test-file test.csv --json
    distrinews bench padding --test-file test.csv --json   # tokens per real token, DDP sync efficiency
    distrinews bench padding --preset kaggle-t4 --json      # on what that preset trains on
    distrinews bench train|compare-trainer|allreduce ...    # training and DDP: see distrinews.bench_train

The CLI imports this module on every command, so heavy imports (transformers, the pipeline) stay inside
the functions that need them.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time

from .checkpoint import require_checkpoint

OPTIMIZE = ("auto", "onnx-int8", "onnx-fp32", "int8", "none")  # inference.OPTIMIZE, without importing torch here
# The CPU candidates `bench infer` times, report key -> what it is. `optimized` in the report is the one
# NewsClassifier.load picks by default on this machine (ONNX Runtime int8 where installed, else PyTorch int8).
CANDIDATES = {"pipeline": "transformers pipeline (fp32)", "fp32": "NewsClassifier, PyTorch fp32",
              "torch_int8": "NewsClassifier, PyTorch dynamic int8", "onnx_fp32": "NewsClassifier, ONNX Runtime fp32",
              "onnx_int8": "NewsClassifier, ONNX Runtime int8"}
# On CUDA: the pipeline, fp32, and the GPU's native 16-bit autocast, NewsClassifier.load's default there.
GPU_CANDIDATES = {"pipeline": CANDIDATES["pipeline"], "fp32": "NewsClassifier, PyTorch fp32 (GPU)",
                  "fp16": "NewsClassifier, fp16 autocast (GPU)", "bf16": "NewsClassifier, bf16 autocast (GPU)"}

# A realistic AG News item (title + description), about 50 tokens, for the single-text latency.
HEADLINE = ("Oil prices hit a record high as supply fears grow. Crude oil futures climbed above $48 a barrel "
            "on Tuesday after a strike in Nigeria and new attacks on pipelines in Iraq, while OPEC said it "
            "could do little more to cool the market.")
BATCH_SIZE = 32
# 0 keeps torch's default (one thread per core). Measured on the idle 2-core course machine, single-text p50
# with 2 threads: pipeline 48.5 ms, fp32 47.4 ms, int8 14.9 ms; with 1 thread: 69.4, 68.5 and 19.4 ms. When
# other jobs share the cores, 1 thread won for every variant (pipeline 74 ms, int8 17 ms against 414 and
# 610 ms with 2): pass --threads 1 there.
DEFAULT_THREADS = 0
PADDING_SHUFFLES = 10  # epochs averaged by `bench padding`: one shuffle's dynamic figure varies by +-0.012 (sd)
SYNC_WORLD_SIZES = (2, 4)  # DDP world sizes whose sync efficiency `bench padding` reports


def add_commands(commands) -> None:
    """Register `predict` and `bench train|compare-trainer|allreduce|infer|accuracy|padding` on the CLI."""
    add_predict_command(commands)
    from .bench_train import add_commands as add_training_commands  # train, compare-trainer, allreduce

    bench = commands.add_parser("bench", help="time training, DDP and inference; measure padding and int8's cost",
                                allow_abbrev=False)
    tasks = bench.add_subparsers(required=True, metavar="TASK")
    add_training_commands(tasks)
    add_infer_command(tasks)
    add_accuracy_command(tasks)
    add_padding_command(tasks)


def add_predict_command(commands) -> None:
    predict = commands.add_parser("predict", help="label headlines with a trained checkpoint", allow_abbrev=False)
    predict.add_argument("texts", nargs="+", metavar="TEXT", help="one or more headlines (quote each)")
    predict.add_argument("--checkpoint", required=True, help="the checkpoint/ folder a training run wrote")
    predict.add_argument("--optimize", default="auto", choices=OPTIMIZE,
                         help="auto: on the CPU ONNX Runtime int8 where installed, else PyTorch int8 (int8); "
                              "onnx-int8, onnx-fp32; none: plain fp32")
    predict.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                         help="auto: the GPU when one is visible (float32 there), else the CPU (int8)")
    predict.add_argument("--json", action="store_true", help="also print one JSON list as the last line")
    predict.set_defaults(command=command_predict)


def add_infer_command(tasks) -> None:
    infer = tasks.add_parser("infer", help="latency and throughput: the pipeline against every CPU candidate",
                             allow_abbrev=False)
    source = infer.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="a checkpoint directory to time")
    source.add_argument("--model", help="a model name (hub id, 'minilm', 'tiny'); default: DistilBERT-base "
                                        "architecture with random weights")
    infer.add_argument("--runs", type=int, default=30, help="timed single-text calls per variant (default 30)")
    infer.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help="torch CPU threads for every variant (default: torch's, one per core)")
    infer.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                       help="cpu (default): every candidate; cuda: pipeline, fp32 and fp16/bf16 autocast on the GPU")
    infer.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    infer.set_defaults(command=command_bench_infer)


def add_accuracy_command(tasks) -> None:
    accuracy = tasks.add_parser("accuracy", help="accuracy of fp32 vs each int8 path of one checkpoint",
                                allow_abbrev=False)
    accuracy.add_argument("--checkpoint", required=True, help="the checkpoint/ folder a training run wrote")
    accuracy.add_argument("--test-file", required=True, help="an AG News CSV (original or Hugging Face form)")
    accuracy.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch CPU threads")
    accuracy.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                          help="cuda: also the GPU's fp16/bf16 autocast path, held to int8's rules")
    accuracy.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    accuracy.set_defaults(command=command_bench_accuracy)


def add_padding_command(tasks) -> None:
    padding = tasks.add_parser("padding", help="tokens processed per real token for each padding strategy",
                               allow_abbrev=False)
    files = padding.add_mutually_exclusive_group()
    files.add_argument("--train-file", help="an AG News CSV to measure (original or Hugging Face form)")
    files.add_argument("--test-file", help="the same, for a test split; without a file: synthetic news")
    files.add_argument("--preset", help="measure a preset's training split, length, batch and tokenizer instead")
    padding.add_argument("--model", help="whose tokenizer (default: the preset's, else the bert-base-uncased vocab)")
    padding.add_argument("--max-length", type=int, help="truncation and fixed padding length (default 128)")
    padding.add_argument("--batch-size", type=int, help="texts per batch (default 32)")
    padding.add_argument("--shuffles", type=int, default=PADDING_SHUFFLES,
                         help=f"epochs (shuffles) to average over (default {PADDING_SHUFFLES})")
    padding.add_argument("--world-sizes", type=int, nargs="+", default=list(SYNC_WORLD_SIZES),
                         help="DDP world sizes whose sync efficiency to report (default 2 4)")
    padding.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    padding.set_defaults(command=command_bench_padding)


# ---- predict ---------------------------------------------------------------------------------


def command_predict(args: argparse.Namespace) -> int:
    from .inference import NewsClassifier

    checkpoint = require_checkpoint(args.checkpoint)
    classifier = NewsClassifier.load(str(checkpoint), optimize=args.optimize, device=args.device)
    print(f"engine: {classifier.describe()}", file=sys.stderr)  # stdout stays labels (and JSON)
    predictions = classifier.predict(args.texts)
    for text, prediction in zip(args.texts, predictions):
        print(format_prediction(text, prediction))
    if args.json:
        print(json.dumps([{"text": text, **p.to_dict()} for text, p in zip(args.texts, predictions)]))
    return 0


def format_prediction(text: str, prediction) -> str:
    """`Business  (World 0.02, Sports 0.01, Business 0.95, Sci/Tech 0.02)  Stocks rally ...`."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    probabilities = ", ".join(f"{name} {p:.2f}" for name, p in prediction.probabilities.items())
    cut = "  [truncated]" if prediction.truncated else ""
    return f"{prediction.label:<9} ({probabilities})  {shown!r}{cut}"


# ---- bench infer -----------------------------------------------------------------------------


def command_bench_infer(args: argparse.Namespace) -> int:
    from .config import ConfigError

    if args.runs < 1:
        raise ConfigError(f"--runs must be at least 1; got {args.runs}")
    checkpoint = str(require_checkpoint(args.checkpoint)) if args.checkpoint else None
    report = benchmark_inference(checkpoint or args.model, runs=args.runs, threads=args.threads, device=args.device)
    print_inference_table(report)
    if args.json:
        print(json.dumps(report))
    return 0


def benchmark_inference(source: str | None = None, runs: int = 30, threads: int = DEFAULT_THREADS,
                        device: str = "cpu") -> dict:
    """Time the transformers pipeline and every candidate path of the library on the same weights and texts.

    On the CPU the candidates are PyTorch fp32, PyTorch dynamic int8, and ONNX Runtime fp32 and int8 (where
    onnxruntime is installed and the export works; otherwise `unavailable` says why), all at torch's thread count.
    `optimized` repeats the figures of the candidate `NewsClassifier.load` picks by default here (`default_path`),
    and `ratio` is its p50 over the pipeline's. Candidates alternate call by call, so a burst of load from another
    process hits all alike. On CUDA the pipeline, fp32 and the GPU's native 16-bit autocast (fp16 below capability
    8.0, bf16 from 8.0; NewsClassifier.load's default there) run, and the row is labelled with the GPU's name.
    torch.compile is not a candidate: on the 2-core machine it took 48 s to compile MiniLM and ran one headline at
    0.98x eager's time (325 against 334 ms p50, a busy machine).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    from .modeling import build_timing_model
    from .onnx_export import cpu_isa, describe_isa, needs_reduced_range

    model, tokenizer, name, random_weights = build_timing_model(source)
    # Random weights change on every run: their exported files go to a folder of this run's own, not the cache.
    with tempfile.TemporaryDirectory(prefix="distrinews-bench-onnx-") as scratch:
        variants, unavailable = build_variants(model, tokenizer, device, onnx_cache=scratch if random_weights else None)
        batch = build_batch_texts()
        for run in variants.values():  # warm-up: first calls allocate buffers and pick kernels
            for _ in range(3):
                run([HEADLINE])
            run(batch)
        single = time_alternating(variants, [HEADLINE], runs)
        batched = time_alternating(variants, batch, max(2, runs // 5))  # a batch takes ~30x longer than one text
        del variants  # the ONNX Runtime sessions let go of their files before the folder goes
    report = {"model": name, "random_weights": random_weights, "runs": runs, "batch_size": len(batch),
              "headline_tokens": len(tokenizer(HEADLINE)["input_ids"]), "device": device,
              "candidates": list(single), "unavailable": unavailable}
    for key, times in single.items():
        report[f"{key}_p50_ms"] = round(percentile(times, 50) * 1000, 3)
        report[f"{key}_p95_ms"] = round(percentile(times, 95) * 1000, 3)
    for key, times in batched.items():
        report[f"{key}_texts_per_s"] = round(len(batch) / statistics.median(times), 2)
    for key in single:
        report[f"{key}_ratio"] = report[f"{key}_p50_ms"] / report["pipeline_p50_ms"]
    half = [key for key in single if key in ("fp16", "bf16")]  # on CUDA: what NewsClassifier.load picks there
    default = half[0] if half else ("onnx_int8" if "onnx_int8" in single else "torch_int8")
    for metric in ("p50_ms", "p95_ms", "texts_per_s"):
        report[f"optimized_{metric}"] = report[f"{default}_{metric}"]
    report["default_path"] = default
    report["ratio"] = report[f"{default}_p50_ms"] / report["pipeline_p50_ms"]
    isa = cpu_isa()
    report["cpu_isa"] = describe_isa(isa)
    report.update({f"cpu_{key}": present for key, present in isa.items()})
    report["int8_weight_bits"] = 7 if needs_reduced_range(isa) else 8  # ONNX Runtime's int8 on this CPU
    report.update(describe_machine(device))  # on CUDA the GPU's name labels the row, not the CPU's
    if device == "cpu":
        report["label"] += f", {report['cpu_isa']}"  # the row names the instruction sets the int8 kernels use
    report["onnxruntime_version"] = installed_version("onnxruntime")
    return report


def candidate_names(report: dict) -> dict[str, str]:
    return CANDIDATES if report.get("device", "cpu") == "cpu" else GPU_CANDIDATES


def candidate_rows(report: dict) -> list[dict]:
    """One row per candidate a `benchmark_inference` report timed (pandas: `pd.DataFrame(rows)`), default marked."""
    return [{"candidate": candidate_names(report)[key], "p50 ms (one text)": report[f"{key}_p50_ms"],
             "p95 ms (one text)": report[f"{key}_p95_ms"],
             f"texts/s (batch of {report['batch_size']})": report[f"{key}_texts_per_s"],
             "p50 / pipeline p50": round(report[f"{key}_ratio"], 3),
             "default": key == report["default_path"]} for key in report["candidates"]]


def installed_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def build_variants(model, tokenizer, device: str = "cpu", onnx_cache: str | None = None) -> tuple[dict, dict]:
    """Callables over the same weights, texts in, labels out, by report key; and why any candidate is missing.

    Args:
        onnx_cache: where the ONNX candidates' files go (None: the cache keyed by the weights, which a later
            NewsClassifier.load of the same checkpoint reuses).
    """
    import torch
    from transformers import pipeline

    from .inference import NewsClassifier, gpu_precision, quantize_int8
    from .onnx_export import OnnxUnavailable, load_onnx_model

    variants, unavailable = {}, {}
    model = model.to(device)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=model.device)
    variants["pipeline"] = lambda texts: pipe(texts, batch_size=BATCH_SIZE, truncation=True, max_length=128)
    variants["fp32"] = NewsClassifier(model, tokenizer, batch_size=BATCH_SIZE).predict
    if device != "cpu":  # the 16-bit format this GPU computes natively, never bf16 emulated (a T4)
        half = gpu_precision(torch.device(device))
        variants[half] = NewsClassifier(model, tokenizer, batch_size=BATCH_SIZE, precision=half).predict
        return variants, unavailable
    variants["torch_int8"] = NewsClassifier(quantize_int8(copy.deepcopy(model)), tokenizer,
                                            batch_size=BATCH_SIZE).predict
    for key, quantize in (("onnx_fp32", False), ("onnx_int8", True)):
        try:
            onnx_model = load_onnx_model(model, quantize=quantize, cache=onnx_cache)
        except OnnxUnavailable as err:
            unavailable[key] = str(err)
            continue
        variants[key] = NewsClassifier(onnx_model, tokenizer, batch_size=BATCH_SIZE, device="cpu").predict
    return variants, unavailable


def build_batch_texts() -> list[str]:
    """32 news-shaped texts of mixed length, like a real batch."""
    from .synthetic import generate_news

    return generate_news(BATCH_SIZE, seed=1)[0]


def time_alternating(variants: dict, texts: list[str], runs: int) -> dict[str, list[float]]:
    """Seconds per call for each variant, taking turns on every run."""
    times = {key: [] for key in variants}
    for _ in range(runs):
        for key, run in variants.items():
            start = time.perf_counter()
            run(texts)
            times[key].append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: an observed value, honest for small samples."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def describe_machine(device: str = "cpu") -> dict:
    """The device (GPU name or CPU), cores and threads, and the library versions, as every benchmark row records."""
    import torch

    from .results import describe_hardware

    return describe_hardware(torch.device(device))


def print_inference_table(report: dict) -> None:
    weights = "RANDOM weights (timing only, labels are meaningless)" if report["random_weights"] else "trained weights"
    print(f"model: {report['model']}, {weights}; {report['cpu_threads']} thread(s), "
          f"{report['headline_tokens']}-token headline, batch {report['batch_size']}, {report['runs']} runs")
    print(f"CPU: {report['cpu']} ({report['cpu_count']} cores); instruction sets: {report['cpu_isa']}; "
          f"onnxruntime {report['onnxruntime_version'] or 'not installed'}")
    names = candidate_names(report)
    print(f"{'candidate':<40}{'p50 ms':>10}{'p95 ms':>10}{'texts/s':>10}{'/pipeline':>11}")
    for key in report["candidates"]:
        mark = "  <- default" if key == report["default_path"] and report.get("device", "cpu") == "cpu" else ""
        print(f"{names[key]:<40}{report[key + '_p50_ms']:>10.1f}{report[key + '_p95_ms']:>10.1f}"
              f"{report[key + '_texts_per_s']:>10.1f}{report[key + '_ratio']:>11.3f}{mark}")
    for key, reason in report["unavailable"].items():
        print(f"{names[key]:<40}  not run: {reason}")
    if report.get("device", "cpu") == "cpu":
        print(f"ratio default ({report['default_path']}) / pipeline p50: {report['ratio']:.3f} (target <= 0.33)")
    else:
        print(f"on {report['device']} ({report['label']}): ratio {report['default_path']}/pipeline p50: "
              f"{report['ratio']:.3f} (int8 runs on CPUs only)")


# ---- bench accuracy --------------------------------------------------------------------------


def command_bench_accuracy(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report = measure_accuracy_cost(str(require_checkpoint(args.checkpoint)), args.test_file, args.device)
    print(f"{report['n_examples']} examples from {args.test_file}")
    print(f"{'path':<16}{'accuracy':>10}{'points':>9}{'agrees with fp32':>18}")
    print(f"{'fp32':<16}{report['fp32_accuracy']:>10.4f}")
    for engine, row in report["paths"].items():
        mark = "  <- default" if engine == report["default_path"] else ""
        print(f"{engine:<16}{row['accuracy']:>10.4f}{row['delta_points']:>+9.2f}{row['agreement']:>18.2%}{mark}")
    for engine, reason in report["unavailable"].items():
        print(f"{engine:<16}  not run: {reason}")
    print("points: path - fp32 (allowed cost 0.5); labels must agree with fp32 on at least 99% of the texts "
          "(int8 and the GPU's fp16/bf16 alike)")
    if args.json:
        print(json.dumps(report))
    return 0


def measure_accuracy_cost(checkpoint: str, test_file, device: str = "cpu") -> dict:
    """Accuracy of fp32 and of each int8 path of one checkpoint on every row of an AG News CSV, with agreement.

    `int8_accuracy` and `delta_points` are PyTorch's dynamic int8; `paths` holds every int8 path that runs here
    (PyTorch's, and ONNX Runtime's with 8-bit and with 7-bit weights, the form an x86 CPU without VNNI gets, so one
    machine measures both); `default_*` is the one NewsClassifier.load picks by default on this machine's CPU.
    The fp32 reference is built on the CPU, also where CUDA exists, so that the ONNX export can run. With
    `device="cuda"` the GPU's 16-bit autocast path (`cuda-fp16` or `cuda-bf16`) joins `paths`, same rules.
    """
    from .data import read_news_csv
    from .inference import NewsClassifier, gpu_precision, quantize_int8
    from .onnx_export import OnnxUnavailable, load_onnx_model, needs_reduced_range

    texts, labels, _ = read_news_csv(test_file)
    fp32 = NewsClassifier.load(checkpoint, optimize="none", device="cpu")  # ONNX exports a CPU model only
    reference = [p.label for p in fp32.predict(texts)]
    fp32_accuracy = accuracy_of(fp32.labels, reference, labels)
    paths, unavailable = {}, {}
    # Both forms of ONNX Runtime's int8, whatever this CPU: 8-bit weights run where VNNI is, 7-bit elsewhere on x86.
    candidates = {"torch-int8": lambda: quantize_int8(copy.deepcopy(fp32.model)),
                  "onnx-int8-8bit": lambda: load_onnx_model(fp32.model, quantize=True, reduced_range=False),
                  "onnx-int8-7bit": lambda: load_onnx_model(fp32.model, quantize=True, reduced_range=True)}
    if device == "cuda":
        import torch

        half = gpu_precision(torch.device("cuda"))
        candidates[f"cuda-{half}"] = lambda: NewsClassifier(copy.deepcopy(fp32.model).to("cuda"), fp32.tokenizer,
                                                            device="cuda", precision=half)
    for engine, build in candidates.items():
        try:
            built = build()
            classifier = built if isinstance(built, NewsClassifier) else NewsClassifier(built, fp32.tokenizer,
                                                                                      device="cpu")
        except OnnxUnavailable as err:
            unavailable[engine] = str(err)
            continue
        predicted = [p.label for p in classifier.predict(texts)]
        score = accuracy_of(fp32.labels, predicted, labels)
        paths[engine] = {"accuracy": score, "delta_points": (score - fp32_accuracy) * 100,
                         "agreement": sum(a == b for a, b in zip(predicted, reference)) / len(reference)}
    onnx_default = "onnx-int8-7bit" if needs_reduced_range() else "onnx-int8-8bit"
    default = onnx_default if onnx_default in paths else "torch-int8"
    return {"checkpoint": checkpoint, "n_examples": len(labels), "fp32_accuracy": fp32_accuracy,
            "int8_accuracy": paths["torch-int8"]["accuracy"], "delta_points": paths["torch-int8"]["delta_points"],
            "paths": paths, "unavailable": unavailable, "default_path": default,
            **{f"default_{key}": value for key, value in paths[default].items()}}


def accuracy_of(names: list[str], predicted: list[str], labels: list[int]) -> float:
    return sum(names.index(p) == y for p, y in zip(predicted, labels)) / len(labels)


# ---- padding ---------------------------------------------------------------------------------


def command_bench_padding(args: argparse.Namespace) -> int:
    from .config import ConfigError

    if args.shuffles < 1:
        raise ConfigError(f"--shuffles must be at least 1; got {args.shuffles}")
    if min(args.world_sizes) < 2:
        raise ConfigError(f"--world-sizes must be at least 2; got {args.world_sizes}")
    if args.preset:
        report = measure_preset_padding(args.preset, args.model, args.max_length, args.batch_size, args.shuffles,
                                        args.world_sizes)
    else:
        report = measure_padding(args.train_file or args.test_file, args.model or "minilm", args.max_length or 128,
                                 args.batch_size or 32, args.shuffles, args.world_sizes)
    print(f"{report['data']}: {report['n_texts']} texts, batches of {report['batch_size']}, max length "
          f"{report['max_length_tokens']}, mean of {report['shuffles']} shuffles")
    for strategy in ("max_length", "dynamic", "grouped"):
        print(f"  {strategy:<11} {report[strategy]:.3f} tokens processed per real token")
    print(f"  default ({report['default_strategy']}): {report['default']:.3f}")
    print("sync efficiency under DDP, grouped (the ranks' mean padded tokens per step / the slowest rank's; "
          "1.0 = no rank waits):")
    for size, balanced in report["sync_efficiency"].items():
        print(f"  {size} ranks: {balanced:.3f} balanced steps (default), "
              f"{report['sync_efficiency_dealt'][size]:.3f} dealt at random (--balanced-steps false)")
    if args.json:
        print(json.dumps(report))
    return 0


def measure_padding(csv_file: str | None, model: str = "minilm", max_length: int = 128, batch_size: int = 32,
                    shuffles: int = PADDING_SHUFFLES, world_sizes=SYNC_WORLD_SIZES) -> dict:
    """Tokens processed per real token for padding to max_length, dynamic padding and length grouping."""
    from .data import NewsSplit, read_news_csv
    from .modeling import build_tokenizer
    from .synthetic import generate_news

    if csv_file:
        texts, labels, _ = read_news_csv(csv_file)
    else:
        texts, labels = generate_news(2000, seed=0)
    split = NewsSplit("bench", tuple(texts), tuple(labels))
    return {"data": csv_file or "synthetic news (2000 texts)", **padding_ratios(
        split, build_tokenizer(model), model, max_length, batch_size, shuffles, world_sizes)}


def measure_preset_padding(preset: str, model: str | None, max_length: int | None, batch_size: int | None,
                           shuffles: int = PADDING_SHUFFLES, world_sizes=SYNC_WORLD_SIZES) -> dict:
    """The same figures for what a preset trains on: its training split, length, per-device batch, tokenizer."""
    from .config import build_config
    from .training import load_data
    from .modeling import build_tokenizer

    config = build_config(preset, {})
    data = load_data(config, log=print)
    model = model or config.model_name
    return {"data": f"{preset}: {data.source} (train split)", **padding_ratios(
        data.train, build_tokenizer(model), model, max_length or config.max_length,
        batch_size or config.per_device_batch_size, shuffles, world_sizes)}


def padding_ratios(split, tokenizer, model: str, max_length: int, batch_size: int, shuffles: int,
                   world_sizes=SYNC_WORLD_SIZES) -> dict:
    """Each strategy's tokens processed per real token over the training loader, averaged over shuffles, and the
    grouped loader's sync efficiency per DDP world size, with balanced steps and dealt at random."""
    from .batching import build_train_loader, tokenize_split
    from .config import TrainConfig

    data = tokenize_split(tokenizer, split, max_length)
    ratios = {strategy: mean_padding_ratio(build_train_loader(data, strategy, batch_size, max_length, seed=0,
                                                              pad_id=tokenizer.pad_token_id), shuffles)
              for strategy in ("max_length", "dynamic", "grouped")}
    default = TrainConfig().padding  # what training uses unless told otherwise
    sync = {balanced: {str(size): mean_sync_efficiency(build_train_loader(
                data, "grouped", batch_size, max_length, seed=0, pad_id=tokenizer.pad_token_id, world_size=size,
                balanced=balanced), shuffles) for size in world_sizes} for balanced in (True, False)}
    return {"n_texts": len(split), "model": model, "max_length_tokens": max_length, "batch_size": batch_size,
            "shuffles": shuffles, **ratios, "default_strategy": default, "default": ratios[default],
            "sync_efficiency": sync[True], "sync_efficiency_dealt": sync[False]}


def mean_sync_efficiency(loader, shuffles: int) -> float:
    """`sync_efficiency` averaged over the first `shuffles` epochs (dealt at random, one epoch varies by +-0.01)."""
    from .batching import sync_efficiency

    efficiencies = []
    for epoch in range(shuffles):
        loader.batch_sampler.set_epoch(epoch)
        efficiencies.append(sync_efficiency(loader))
    return sum(efficiencies) / len(efficiencies)


def mean_padding_ratio(loader, shuffles: int) -> float:
    """`padding_ratio` averaged over the first `shuffles` epochs' batch orders.

    Every epoch holds the same real tokens, so the mean is the pooled ratio over all those epochs. One
    shuffle is a sample: on the AG News test set dynamic padding ranges 1.93 to 1.98 from epoch to epoch.
    """
    from .batching import padding_ratio

    ratios = []
    for epoch in range(shuffles):
        loader.batch_sampler.set_epoch(epoch)
        ratios.append(padding_ratio(loader))
    return sum(ratios) / len(ratios)
