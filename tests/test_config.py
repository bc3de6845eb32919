"""Presets, overrides and the batch arithmetic."""

import dataclasses

import pytest

from distrinews.config import (PRESETS, ConfigError, TrainConfig, build_config, describe_batch, field_help,
                               field_names)


def test_presets_are_the_documented_recipes():
    assert set(PRESETS) == {"smoke", "cpu-demo", "kaggle-t4", "kaggle-t4x2", "cpu-course"}
    assert PRESETS["smoke"].model_name == "tiny" and PRESETS["smoke"].data_source == "synthetic"
    demo = PRESETS["cpu-demo"]
    assert (demo.model_name, demo.epochs, demo.per_device_batch_size, demo.max_length, demo.learning_rate) == \
        ("minilm", 1, 32, 64, 1e-4)
    assert demo.max_train_rows >= 4000
    t4, t4x2 = PRESETS["kaggle-t4"], PRESETS["kaggle-t4x2"]
    assert (t4.model_name, t4.per_device_batch_size, t4.learning_rate, t4.epochs, t4.precision) == \
        ("distilbert-base-uncased", 32, 2e-5, 2, "auto")
    differing = {f.name for f in dataclasses.fields(TrainConfig) if getattr(t4, f.name) != getattr(t4x2, f.name)}
    assert differing == {"output_dir"}  # the same recipe; only the world size changes at launch
    course = PRESETS["cpu-course"]  # the notebooks' CPU recipe: cpu-demo's, on fewer rows
    differing = {f.name for f in dataclasses.fields(TrainConfig) if getattr(demo, f.name) != getattr(course, f.name)}
    assert differing == {"max_train_rows", "output_dir"} and course.max_train_rows == 2000
    assert course.device == "cpu" and course.max_test_rows == 0  # scored on the whole test split


def test_overrides_accept_dashes_or_underscores_and_convert_types():
    config = build_config("smoke", {"learning-rate": "3e-4", "per_device_batch_size": "8", "resume": "false",
                                    "train-files": "a.csv,b.csv", "val_fraction": "0.1"})
    assert config.learning_rate == 3e-4 and config.per_device_batch_size == 8 and config.resume is False
    assert config.train_files == ("a.csv", "b.csv") and config.val_fraction == 0.1
    assert config.model_name == "tiny"  # untouched fields keep the preset's value


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rat": "1"}, "did you mean --learning-rate"),
    ({"epochs": "1.5"}, "--epochs expects int"),
    ({"resume": "maybe"}, "--resume expects bool"),
    ({"epochs": "0"}, "epochs must be at least 1"),
    ({"val_fraction": "1.0"}, "val_fraction must be in [0, 1)"),
    ({"precision": "int8"}, "precision must be one of auto, fp32, fp16, bf16"),
])
def test_bad_overrides_say_what_would_work(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        build_config("smoke", overrides)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="choose one of: smoke, cpu-demo, kaggle-t4, kaggle-t4x2, cpu-course"):
        build_config("fast", {})


def test_every_field_is_documented_by_its_trailing_comment():
    helps = field_help()
    assert set(helps) == set(field_names())
    assert "global batch" in helps["per_device_batch_size"]


def test_batch_arithmetic_is_spelled_out():
    config = PRESETS["kaggle-t4x2"].replace(grad_accum_steps=2)
    assert describe_batch(config, 2) == \
        "batch: per-device 32 x world size 2 x grad accumulation 2 = global 128"


def test_config_round_trips_through_json(tmp_path):
    config = build_config("cpu-demo", {"train_files": "x.csv,y.csv", "seed": "7"})
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == config


def test_the_cpu_demo_stays_on_the_cpu_on_a_workstation_with_one_gpu(monkeypatch):
    """`make demo` launches 2 processes: on a 1-GPU machine, device auto would refuse them (2 ranks, 1 GPU)."""
    import torch

    from distrinews.distributed import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert pick_device(PRESETS["cpu-demo"].device, local_rank=1) == torch.device("cpu")
    from distrinews.distributed import DistError

    with pytest.raises(DistError, match="2 processes per node but only 1 visible GPU"):
        pick_device("auto", local_rank=1)  # what the preset did before it named the CPU
