"""`distrinews bench train|compare-trainer|allreduce` at toy size through the real CLI, and the scaling arithmetic."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import run_cli, torchrun

from distrinews.results import ScalingError, comparable_to, latest, read_results, scaling_table

TOY = ("--preset", "smoke", "--model", "tiny", "--warmup-steps", "1")


def last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_throughput(row: dict) -> None:
    assert row["samples_per_s"] > 0 and row["tokens_per_s"] > row["samples_per_s"]  # news items are many tokens
    assert 1.0 <= row["padding_ratio"] < 3 and row["step_ms"] > 0
    assert row["torch_version"] and row["transformers_version"] and row["label"].startswith("CPU")
    assert row["global_batch"] == row["per_device_batch"] * row["world_size"] * row["grad_accum_steps"]


def test_bench_train_times_each_padding_and_skips_fp16_on_cpu(tmp_path):
    proc = run_cli("bench", "train", *TOY, "--steps", "3", "--padding", "max_length", "dynamic", "grouped",
                   "--precision", "fp32", "fp16", "--results-dir", str(tmp_path), "--json")
    report = last_json(proc)
    rows = {row["padding"]: row for row in report["rows"]}
    assert sorted(rows) == ["dynamic", "grouped", "max_length"] and report["random_weights"] is True
    for row in rows.values():
        check_throughput(row)
        assert row["world_size"] == 1 and row["precision"] == "fp32" and row["device_name"] == "cpu"
    assert rows["grouped"]["padding_ratio"] < rows["dynamic"]["padding_ratio"] <= rows["max_length"]["padding_ratio"]
    assert any("fp16 skipped" in note for note in report["skipped"]) and "fp16 skipped" in proc.stdout
    saved = read_results(tmp_path, "train")
    assert len(saved) == 3 and set(saved["padding"]) == set(rows) and saved["label"].nunique() == 1


def test_bench_train_under_torchrun_sums_two_ranks_and_tries_the_ddp_knobs(tmp_path):
    proc = torchrun("bench", "train", *TOY, "--steps", "2", "--grad-accum-steps", "2", "--bucket-cap-mb", "1",
                    "--comm-hook", "none", "fp16", "--results-dir", str(tmp_path), "--json")
    report = last_json(proc)
    assert [(row["comm_hook"], row["bucket_cap_mb"]) for row in report["rows"]] == [("none", 1.0), ("fp16", 1.0)]
    for row in report["rows"]:
        check_throughput(row)
        assert row["world_size"] == 2 and row["backend"] == "gloo" and row["global_batch"] == 32 * 2 * 2
    assert proc.stdout.count("samples/s") == 2  # header and footnote, once: rank 0 alone prints the table
    assert len(read_results(tmp_path, "train")) == 2  # rank 0 alone writes


def test_bench_allreduce_reports_algorithm_and_bus_bandwidth(tmp_path):
    proc = torchrun("bench", "allreduce", "--max-mb", "0.3", "--seconds", "0.02", "--results-dir", str(tmp_path),
                    "--json")
    report = last_json(proc)
    sizes = [row["size_bytes"] for row in report["rows"]]
    assert sizes == sorted(sizes) and sizes[0] == 4000 and sizes[-1] == 300_000
    assert report["backend"] == "gloo" and report["world_size"] == 2 and report["gradient_bytes"] > 260e6
    for row in report["rows"]:
        assert row["time_us"] > 0
        assert row["algbw_gbps"] == pytest.approx(row["size_bytes"] / (row["time_us"] / 1e6) / 1e9, rel=0.01)
        assert row["busbw_gbps"] == pytest.approx(row["algbw_gbps"], rel=0.01)  # 2(n-1)/n = 1 at n = 2
    assert len(read_results(tmp_path, "allreduce")) == len(sizes)


def test_bench_allreduce_without_torchrun_says_how_to_launch(tmp_path, capsys):
    from distrinews.cli import main  # in this process: the error comes before any process group could start

    assert main(["bench", "allreduce", "--results-dir", str(tmp_path)]) == 2
    assert "run it under torchrun" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_compare_trainer_times_both_loops_on_the_same_epochs(tmp_path):
    proc = run_cli("bench", "compare-trainer", *TOY, "--rounds", "1", "--max-train-rows", "320",
                   "--results-dir", str(tmp_path), "--json")
    report = last_json(proc)
    # 320 rows less the 5% held out for validation: both loops train on 304 an epoch
    assert report["samples_per_epoch"] == 304 and report["padding"] == "grouped" and report["precision"] == "fp32"
    assert report["ours_samples_per_s"] > 0 and report["trainer_samples_per_s"] > 0
    assert report["ratio"] == pytest.approx(report["ours_samples_per_s"] / report["trainer_samples_per_s"], rel=1e-3)
    assert 1.0 <= report["ours_padding_ratio"] < 1.2 and 1.0 <= report["trainer_padding_ratio"] < 1.5
    assert "ratio ours / Trainer" in proc.stdout


# ---- scaling arithmetic (no processes) -------------------------------------------------------


def rows(**changes) -> pd.DataFrame:
    """Three made-up rows from one machine (1 process; 2 with two bucket sizes); `changes` alter the last."""
    base = {"label": "example GPU", "model": "distilbert-base", "precision": "fp16", "padding": "grouped",
            "per_device_batch": 32, "grad_accum_steps": 1, "max_length": 128, "tokens_per_s": 0.0}
    measured = [(1, 32, 100.0, None, None), (2, 64, 190.0, 25.0, "none"), (2, 64, 150.0, 100.0, "none")]
    table = pd.DataFrame([{**base, "world_size": n, "global_batch": batch, "samples_per_s": rate,
                           "bucket_cap_mb": bucket, "comm_hook": hook} for n, batch, rate, bucket, hook in measured])
    for column, value in changes.items():
        table.loc[2, column] = value
    return table


def test_speedup_and_efficiency_are_against_one_process():
    table = scaling_table(rows())
    assert list(table["world_size"]) == [1, 2, 2]
    assert list(table["speedup"]) == pytest.approx([1.0, 1.9, 1.5])
    assert list(table["efficiency"]) == pytest.approx([1.0, 0.95, 0.75])
    assert list(table["samples_per_s"]) == [100.0, 190.0, 150.0] and list(table["global_batch"]) == [32, 64, 64]


@pytest.mark.parametrize("column, value", [("per_device_batch", 64), ("padding", "max_length"),
                                           ("label", "another GPU"), ("precision", "fp32")])
def test_scaling_refuses_rows_measured_differently(column, value):
    with pytest.raises(ScalingError, match=column):
        scaling_table(rows(**{column: value}))


def test_scaling_needs_exactly_one_baseline_and_one_row_per_setup():
    with pytest.raises(ScalingError, match="world_size 1"):
        scaling_table(rows().iloc[1:])
    with pytest.raises(ScalingError, match="share a world size"):
        scaling_table(pd.concat([rows(), rows().iloc[[1]]]))


def test_latest_and_comparable_pick_one_honest_set_from_a_results_file():
    appended = pd.concat([rows(), rows(samples_per_s=170.0), rows(per_device_batch=16)], ignore_index=True)
    newest = latest(appended)
    assert len(newest) == 4  # the 3 setups (the re-run's numbers win) and the per-device batch 16 row
    same = comparable_to(newest, newest.iloc[0])
    table = scaling_table(same)
    assert list(table["samples_per_s"]) == [100.0, 190.0, 170.0]


# Kaggle's transformers 5.0.0 has no train_sampling_strategy (5.2+): it groups by length with group_by_length, and
# takes a fractional warmup_steps as a ratio (warmup_ratio still works there, with a deprecation warning).
KAGGLE_5_0_FIELDS = {"output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
                     "weight_decay", "lr_scheduler_type", "max_grad_norm", "fp16", "bf16", "seed", "use_cpu",
                     "save_strategy", "logging_strategy", "report_to", "disable_tqdm", "dataloader_num_workers",
                     "dataloader_pin_memory", "group_by_length", "eval_strategy", "warmup_ratio", "warmup_steps",
                     "warmup_steps:float"}


def test_trainer_arguments_are_spelled_for_the_installed_transformers_and_for_kaggles(tmp_path):
    from transformers import TrainingArguments

    from distrinews.bench_train import trainer_arguments, trainer_fields
    from distrinews.config import PRESETS

    cfg = PRESETS["smoke"]
    kaggle = trainer_arguments(cfg, "fp32", str(tmp_path), False, KAGGLE_5_0_FIELDS)
    assert kaggle["group_by_length"] is True and "train_sampling_strategy" not in kaggle
    assert kaggle["warmup_steps"] == cfg.warmup_ratio and "warmup_ratio" not in kaggle
    older = trainer_arguments(cfg, "fp32", str(tmp_path), False, KAGGLE_5_0_FIELDS - {"warmup_steps:float"})
    assert older["warmup_ratio"] == cfg.warmup_ratio and "warmup_steps" not in older  # 4.x: an int step count
    here = trainer_arguments(cfg, "fp32", str(tmp_path), False, trainer_fields())
    args = TrainingArguments(**here)  # the installed version accepts every name
    assert args.get_warmup_steps(100) == round(cfg.warmup_ratio * 100)
    with pytest.raises(RuntimeError, match="lacks evaluation_strategy"):
        trainer_arguments(cfg, "fp32", str(tmp_path), False, KAGGLE_5_0_FIELDS - {"eval_strategy"} | {"x"})


def test_the_trainer_is_kept_on_one_gpu_like_our_loop(tmp_path):
    """Two visible GPUs and no process group: the Trainer would wrap the model in DataParallel."""
    from transformers import TrainingArguments

    from distrinews.bench_train import on_one_gpu

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    args._n_gpu = 2  # what _setup_devices records on a 2-GPU machine
    assert on_one_gpu(args).n_gpu == 1


def test_a_loss_scale_that_overflows_is_warmed_up_until_no_timed_step_is_skipped():
    """The fp16 communication hook sums scaled gradients in fp16: the first steps overflow and are skipped while the
    scale backs off. A scale of 1e38 overflows fp32 as well, so the CPU shows the same."""
    import torch

    from distrinews import bench_train
    from distrinews.config import PRESETS
    from distrinews.distributed import DistContext
    from distrinews.modeling import build_model_and_tokenizer
    from distrinews.training import load_data

    config = PRESETS["smoke"].replace(synthetic_train_size=256)
    model, tokenizer = build_model_and_tokenizer("tiny")
    setup = bench_train.build_step(config, DistContext(), model, tokenizer, load_data(config, lambda *_: None), "fp32",
                                   total_steps=100)
    setup.scaler = torch.amp.GradScaler("cpu", init_scale=1e38, growth_interval=1000)
    measured = bench_train.time_steps(setup, warmup=1, steps=3, ctx=DistContext())
    assert measured["warmup_steps_run"] > bench_train.SETTLED_STEPS  # it went on past the one asked for
    assert measured["skipped_steps"] == 0
    assert setup.scaler.get_scale() < 1e38

