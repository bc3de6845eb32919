"""`distrinews predict` and `distrinews bench infer|accuracy|padding`: label headlines, measure the fast paths.

    distrinews predict --checkpoint runs/smoke/checkpoint "Stocks rally as oil prices fall" --json
    distrinews bench infer --json                      # DistilBERT-base, random weights: timing only
    distrinews bench infer --checkpoint runs/cpu-demo/checkpoint --runs 50
    distrinews bench accuracy --checkpoint runs/cpu-demo/checkpoint --test-file test.csv --json
    distrinews bench padding --test-file test.csv --json   # tokens processed per real token
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
import time

from .checkpoint import require_checkpoint

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
    predict.add_argument("--optimize", default="auto", choices=("auto", "int8", "none"),
                         help="auto and int8: dynamic int8 quantization on CPU; none: plain fp32")
    predict.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                         help="auto: the GPU when one is visible (float32 there), else the CPU (int8)")
    predict.add_argument("--json", action="store_true", help="also print one JSON list as the last line")
    predict.set_defaults(command=command_predict)


def add_infer_command(tasks) -> None:
    infer = tasks.add_parser("infer", help="latency and throughput: transformers pipeline vs fp32 vs int8",
                             allow_abbrev=False)
    source = infer.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="a checkpoint directory to time")
    source.add_argument("--model", help="a model name (hub id, 'minilm', 'tiny'); default: DistilBERT-base "
                                        "architecture with random weights")
    infer.add_argument("--runs", type=int, default=30, help="timed single-text calls per variant (default 30)")
    infer.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help="torch CPU threads for every variant (default: torch's, one per core)")
    infer.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                       help="cpu (default): pipeline, fp32 and int8; cuda: pipeline and fp32 on the GPU (int8 is CPU-only)")
    infer.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    infer.set_defaults(command=command_bench_infer)


def add_accuracy_command(tasks) -> None:
    accuracy = tasks.add_parser("accuracy", help="accuracy of fp32 vs int8 predictions of one checkpoint",
                                allow_abbrev=False)
    accuracy.add_argument("--checkpoint", required=True, help="the checkpoint/ folder a training run wrote")
    accuracy.add_argument("--test-file", required=True, help="an AG News CSV (original or Hugging Face form)")
    accuracy.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch CPU threads")
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
    padding.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    padding.set_defaults(command=command_bench_padding)


# ---- predict ---------------------------------------------------------------------------------


def command_predict(args: argparse.Namespace) -> int:
    from .inference import NewsClassifier

    checkpoint = require_checkpoint(args.checkpoint)
    predictions = NewsClassifier.load(str(checkpoint), optimize=args.optimize, device=args.device).predict(args.texts)
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
    """Time the transformers pipeline, the library's fp32 path and its int8 path on the same weights.

    Variants alternate call by call, so a burst of load from another process hits all three alike. On CUDA the
    int8 path does not exist (its kernels are CPU-only): the pipeline and fp32 run on the GPU, and the ratio is
    fp32 / pipeline.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    from .modeling import build_timing_model

    model, tokenizer, name, random_weights = build_timing_model(source)
    variants = build_variants(model, tokenizer, device)
    batch = build_batch_texts()
    for run in variants.values():  # warm-up: first calls allocate buffers and pick kernels
        for _ in range(3):
            run([HEADLINE])
        run(batch)
    single = time_alternating(variants, [HEADLINE], runs)
    batched = time_alternating(variants, batch, max(2, runs // 5))  # a batch takes ~30x longer than one text
    report = {"model": name, "random_weights": random_weights, "runs": runs, "batch_size": len(batch),
              "headline_tokens": len(tokenizer(HEADLINE)["input_ids"]), "device": device}
    for key, times in single.items():
        report[f"{key}_p50_ms"] = round(percentile(times, 50) * 1000, 3)
        report[f"{key}_p95_ms"] = round(percentile(times, 95) * 1000, 3)
    for key, times in batched.items():
        report[f"{key}_texts_per_s"] = round(len(batch) / statistics.median(times), 2)
    fastest = "optimized" if "optimized" in variants else "fp32"
    report["ratio"] = report[f"{fastest}_p50_ms"] / report["pipeline_p50_ms"]
    report.update(describe_machine())
    return report


def build_variants(model, tokenizer, device: str = "cpu") -> dict:
    """Callables over the same weights, texts in, labels out: pipeline, fp32 and (on the CPU) int8."""
    from transformers import pipeline

    from .inference import NewsClassifier, quantize_int8

    int8 = NewsClassifier(quantize_int8(copy.deepcopy(model)), tokenizer, batch_size=BATCH_SIZE) \
        if device == "cpu" else None
    model = model.to(device)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=model.device)
    fp32 = NewsClassifier(model, tokenizer, batch_size=BATCH_SIZE)
    variants = {"pipeline": lambda texts: pipe(texts, batch_size=BATCH_SIZE, truncation=True, max_length=128),
                "fp32": fp32.predict}
    return {**variants, "optimized": int8.predict} if int8 else variants


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


def describe_machine() -> dict:
    """The CPU, its cores and threads, and the library versions, as every benchmark row records them."""
    import torch

    from .results import describe_hardware

    return describe_hardware(torch.device("cpu"))


def print_inference_table(report: dict) -> None:
    weights = "RANDOM weights (timing only, labels are meaningless)" if report["random_weights"] else "trained weights"
    print(f"model: {report['model']}, {weights}; {report['cpu_threads']} torch thread(s), "
          f"{report['headline_tokens']}-token headline, batch {report['batch_size']}, {report['runs']} runs")
    print(f"{'variant':<36}{'p50 ms':>10}{'p95 ms':>10}{'texts/s':>10}")
    names = {"pipeline": "transformers pipeline (fp32)", "fp32": "NewsClassifier fp32",
             "optimized": "NewsClassifier int8 (optimized)"}
    for key, label in ((key, label) for key, label in names.items() if f"{key}_p50_ms" in report):
        print(f"{label:<36}{report[key + '_p50_ms']:>10.1f}{report[key + '_p95_ms']:>10.1f}"
              f"{report[key + '_texts_per_s']:>10.1f}")
    if report.get("device", "cpu") == "cpu":
        print(f"ratio optimized/pipeline p50: {report['ratio']:.3f} (target <= 0.33)")
    else:
        print(f"on {report['device']}: ratio fp32/pipeline p50: {report['ratio']:.3f} (int8 runs on CPUs only)")


# ---- bench accuracy --------------------------------------------------------------------------


def command_bench_accuracy(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report = measure_int8_accuracy(str(require_checkpoint(args.checkpoint)), args.test_file)
    print(f"{report['n_examples']} examples from {args.test_file}")
    print(f"fp32 accuracy: {report['fp32_accuracy']:.4f}")
    print(f"int8 accuracy: {report['int8_accuracy']:.4f}")
    print(f"difference:    {report['delta_points']:+.2f} points (int8 - fp32; allowed cost 0.5)")
    if args.json:
        print(json.dumps(report))
    return 0


def measure_int8_accuracy(checkpoint: str, test_file) -> dict:
    """Accuracy of the fp32 and the int8 path of one checkpoint on every row of an AG News CSV."""
    from .data import read_news_csv
    from .inference import NewsClassifier, quantize_int8

    texts, labels, _ = read_news_csv(test_file)
    fp32 = NewsClassifier.load(checkpoint, optimize="none")
    int8 = NewsClassifier(quantize_int8(copy.deepcopy(fp32.model)), fp32.tokenizer)
    fp32_accuracy, int8_accuracy = accuracy(fp32, texts, labels), accuracy(int8, texts, labels)
    return {"checkpoint": checkpoint, "n_examples": len(labels), "fp32_accuracy": fp32_accuracy,
            "int8_accuracy": int8_accuracy, "delta_points": (int8_accuracy - fp32_accuracy) * 100}


def accuracy(classifier, texts: list[str], labels: list[int]) -> float:
    predictions = classifier.predict(texts)
    return sum(classifier.labels.index(p.label) == y for p, y in zip(predictions, labels)) / len(labels)


# ---- padding ---------------------------------------------------------------------------------


def command_bench_padding(args: argparse.Namespace) -> int:
    from .config import ConfigError

    if args.shuffles < 1:
        raise ConfigError(f"--shuffles must be at least 1; got {args.shuffles}")
    if args.preset:
        report = measure_preset_padding(args.preset, args.model, args.max_length, args.batch_size, args.shuffles)
    else:
        report = measure_padding(args.train_file or args.test_file, args.model or "minilm", args.max_length or 128,
                                 args.batch_size or 32, args.shuffles)
    print(f"{report['data']}: {report['n_texts']} texts, batches of {report['batch_size']}, max length "
          f"{report['max_length_tokens']}, mean of {report['shuffles']} shuffles")
    for strategy in ("max_length", "dynamic", "grouped"):
        print(f"  {strategy:<11} {report[strategy]:.3f} tokens processed per real token")
    print(f"  default ({report['default_strategy']}): {report['default']:.3f}")
    if args.json:
        print(json.dumps(report))
    return 0


def measure_padding(csv_file: str | None, model: str = "minilm", max_length: int = 128, batch_size: int = 32,
                    shuffles: int = PADDING_SHUFFLES) -> dict:
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
        split, build_tokenizer(model), model, max_length, batch_size, shuffles)}


def measure_preset_padding(preset: str, model: str | None, max_length: int | None, batch_size: int | None,
                           shuffles: int = PADDING_SHUFFLES) -> dict:
    """The same figures for what a preset trains on: its training split, length, per-device batch, tokenizer."""
    from .config import build_config
    from .training import load_data
    from .modeling import build_tokenizer

    config = build_config(preset, {})
    data = load_data(config, log=print)
    model = model or config.model_name
    return {"data": f"{preset}: {data.source} (train split)", **padding_ratios(
        data.train, build_tokenizer(model), model, max_length or config.max_length,
        batch_size or config.per_device_batch_size, shuffles)}


def padding_ratios(split, tokenizer, model: str, max_length: int, batch_size: int, shuffles: int) -> dict:
    """Each strategy's tokens processed per real token over the training loader, averaged over shuffles."""
    from .batching import build_train_loader, tokenize_split
    from .config import TrainConfig

    data = tokenize_split(tokenizer, split, max_length)
    ratios = {strategy: mean_padding_ratio(build_train_loader(data, strategy, batch_size, max_length, seed=0,
                                                              pad_id=tokenizer.pad_token_id), shuffles)
              for strategy in ("max_length", "dynamic", "grouped")}
    default = TrainConfig().padding  # what training uses unless told otherwise
    return {"n_texts": len(split), "model": model, "max_length_tokens": max_length, "batch_size": batch_size,
            "shuffles": shuffles, **ratios, "default_strategy": default, "default": ratios[default]}


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
