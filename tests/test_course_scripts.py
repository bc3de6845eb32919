"""The scripts the DDP notebooks write, and the helpers they call (distrinews.concepts).

A notebook that writes a file the library also ships (`%%writefile train_ddp.py`) must write it byte for byte:
one source of truth, and this test fails the moment the two drift.
"""

from __future__ import annotations

import ast
import difflib
import re
import sys

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
from conftest import ROOT, read_json, run_cli

from distrinews import concepts, plots

matplotlib.use("Agg")

NOTEBOOK_DIR = ROOT / "notebooks"
LIBRARY = ROOT / "lib" / "distrinews"


def written_files(notebook_path) -> dict[str, str]:
    """Every file a notebook writes with %%writefile, with the exact text IPython would write."""
    from IPython.core.inputtransformer2 import TransformerManager

    files = {}
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        if cell.cell_type == "code" and cell.source.startswith("%%writefile"):
            # IPython turns the cell into get_ipython().run_cell_magic('writefile', LINE, BODY), and the magic
            # writes BODY unchanged: read BODY from IPython's own transformation, trailing newline and all.
            call = ast.parse(TransformerManager().transform_cell(cell.source)).body[0].value
            magic, line, body = (ast.literal_eval(arg) for arg in call.args)
            assert magic == "writefile"
            files[line.split()[-1]] = body
    return files


def drift(notebook_text: str, library_text: str, name: str) -> str:
    return "".join(difflib.unified_diff(library_text.splitlines(True), notebook_text.splitlines(True),
                                        f"lib/distrinews/{name}", f"notebook's %%writefile {name}"))


@pytest.mark.parametrize("notebook, script", [("03_single_gpu", "train_single.py"),
                                              ("05_ddp_training", "train_ddp.py")])
def test_the_training_notebooks_write_the_library_programs_byte_for_byte(notebook, script):
    written = written_files(NOTEBOOK_DIR / f"{notebook}.ipynb")
    assert script in written, f"{notebook}.ipynb must write {script} with %%writefile"
    library = (LIBRARY / script).read_text()
    assert written[script] == library, (
        f"the notebook's {script} drifted from lib/distrinews/{script}; rebuild the cell from the library "
        "file:\n" + drift(written[script], library, script))


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_script_a_notebook_writes_matches_the_library_copy(path):
    for name, text in written_files(path).items():
        shipped = LIBRARY / name
        if shipped.exists():
            assert text == shipped.read_text(), f"{path.name} writes {name} unlike the library:\n" + drift(
                text, shipped.read_text(), name)


def test_the_collectives_script_of_notebook_04_runs_on_three_ranks(tmp_path):
    """Three ranks: an odd world size, and the hand-averaged gradient still equals the whole-batch one."""
    script = tmp_path / "collectives.py"
    script.write_text(written_files(NOTEBOOK_DIR / "04_ddp_concepts.ipynb")["collectives.py"])
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3", str(script))
    proc = run_cli(launcher=launcher, timeout=300)
    assert sorted(re.findall(r"hello from rank (\d) of 3", proc.stdout)) == ["0", "1", "2"]
    reports = [line for line in proc.stdout.splitlines() if line.startswith("rank ")]
    assert len(reports) == 3, proc.stdout
    for line in reports:
        assert "all_reduce -> 6 |" in line  # 1 + 2 + 3
        assert "-> [0.0, 1.0, 2.0] |" in line  # rank 0's tensor everywhere
        assert "all_gather -> [[0.0, 0.0], [1.0, 10.0], [2.0, 20.0]]" in line
        assert float(line.rsplit("= ", 1)[1]) < 1e-5  # averaged shard gradients == whole-batch gradient


# distrinews.concepts: samplers


def test_the_training_sampler_covers_an_even_epoch_once_and_reshuffles_each_epoch():
    first = concepts.shards("train", n_examples=20, world_size=2, epoch=0, batch_size=2)
    summary = concepts.shard_summary(first, 20)
    assert summary == {"slots": 20, "examples": 20, "repeated": [], "missing": []}
    assert not set(first[0]) & set(first[1])
    assert concepts.shards("train", 20, 2, epoch=1, batch_size=2) != first
    assert concepts.shards("train", 20, 2, epoch=0, batch_size=2) == first  # deterministic for (seed, epoch)


def test_the_training_sampler_pads_an_uneven_epoch_with_whole_batches():
    assigned = concepts.shards("train", n_examples=10, world_size=3, batch_size=2)
    assert [len(v) for v in assigned.values()] == [4, 4, 4]
    summary = concepts.shard_summary(assigned, 10)
    assert summary["slots"] == 12 and len(summary["repeated"]) == 2 and summary["missing"] == []


def test_distributed_sampler_pads_with_repeated_examples_and_eval_sampler_does_not():
    padded = concepts.shard_summary(concepts.shards("torch", n_examples=10, world_size=3), 10)
    assert padded["slots"] == 12 and len(padded["repeated"]) == 2
    exact = concepts.shards("eval", n_examples=10, world_size=3)
    assert sorted(len(v) for v in exact.values()) == [3, 3, 4]
    assert concepts.shard_summary(exact, 10) == {"slots": 10, "examples": 10, "repeated": [], "missing": []}
    assert sorted(i for v in exact.values() for i in v) == list(range(10))


def test_an_odd_test_set_on_two_ranks():
    assert concepts.shard_summary(concepts.shards("torch", 101, 2), 101)["slots"] == 102
    assert concepts.shard_summary(concepts.shards("eval", 101, 2), 101)["slots"] == 101


def test_shards_reject_an_unknown_sampler_and_an_empty_world():
    with pytest.raises(ValueError, match="train, torch, eval"):
        concepts.shards("random", 10, 2)
    with pytest.raises(ValueError, match="at least one"):
        concepts.shards("eval", 10, 0)


def test_shard_table_and_plot_mark_the_repeats():
    assigned = {0: [0, 1], 1: [2, 0]}
    table = concepts.shard_table(assigned, 3)
    assert list(table["count"]) == [2, 2]
    assert list(table["repeated examples"]) == ["0", "0"]
    assert concepts.coverage(assigned, 3).tolist() == [[1, 1, 0], [1, 0, 1]]
    fig = concepts.plot_shards(assigned, 3, title="t")
    ax = fig.axes[0]
    assert "4 slots for 3 examples; repeated: 1, missing: 0" in ax.get_title()
    assert ax.get_xlabel() == "example index" and ax.get_ylabel() == "rank"
    assert [t.get_text() for t in ax.texts].count("x2") == 2


def test_the_sharding_explorer_offers_every_sampler():
    explorer = concepts.sharding_explorer(n_examples=8, world_size=2)
    dropdown = explorer.children[0].children[0]
    assert [value for _, value in dropdown.options] == list(concepts.SAMPLERS)
    sliders = {w.description: w.value for w in explorer.children[1].children}
    assert sliders == {"world size": 2, "epoch": 0, "examples": 8}


# distrinews.concepts: weights, checkpoints and runs


def test_compare_weights_finds_the_tensor_that_differs():
    a = {"w": torch.zeros(3), "b": torch.zeros(2)}
    b = {"w": torch.tensor([0.0, 0.5, 0.0]), "b": torch.zeros(2)}
    start = {"w": torch.ones(3), "b": torch.zeros(2)}
    table = concepts.compare_weights(a, b, initial=start)
    assert table.iloc[0]["tensor"] == "w" and table.iloc[0]["max |difference|"] == 0.5
    assert table.set_index("tensor").loc["w", "max |change by training|"] == 1.0
    assert "largest difference between the two models: 5.00e-01" in concepts.difference_summary(table)
    with pytest.raises(ValueError, match="only in the second"):
        concepts.compare_weights(a, {**b, "extra": torch.zeros(1)})


def test_loading_weights_from_a_folder_without_a_model_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass a run folder"):
        concepts.load_weights(tmp_path)


def test_describe_checkpoint_reports_what_a_resume_reads(smoke_run):
    files, state = concepts.describe_checkpoint(smoke_run)
    assert {"model.safetensors", "training_state.pt", "distrinews_config.json"} <= set(files["file"])
    assert files.set_index("file").loc["training_state.pt", "KiB"] > 0
    values = state["value"]
    assert values["progress: epochs completed"] == "3"
    assert values["world size that wrote it"] == "1"
    assert values["RNG states saved"] == "1 (one per rank)"


def test_describe_checkpoint_of_an_empty_folder_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train with --output-dir"):
        concepts.describe_checkpoint(tmp_path)


def test_initial_weights_rebuild_the_start_and_training_moved_away_from_it(smoke_run):
    from distrinews.modeling import build_model_and_tokenizer

    start = concepts.initial_weights(smoke_run)
    rebuilt = build_model_and_tokenizer("tiny", seed=42)[0].state_dict()
    assert all(torch.equal(start[name], rebuilt[name].float()) for name in start)
    table = concepts.compare_weights(smoke_run, smoke_run / "checkpoint", initial=start)
    assert table["max |difference|"].max() == 0  # a run folder and its checkpoint folder are the same model
    assert table["max |change by training|"].max() > 0


def test_compare_runs_and_evals_read_a_finished_run(smoke_run, tmp_path):
    runs = concepts.compare_runs({"one": smoke_run}, {"one": 12.34})
    row = runs.loc["one"]
    # smoke: 2,000 synthetic rows less 5% validation = 1,900, in batches of 32: 60 steps per epoch, 3 epochs
    assert row["world size"] == 1 and row["global batch"] == 32 and row["optimizer steps"] == 180
    assert row["wall time (s)"] == 12.3 and row["mean samples/s"] > 0 and row["test accuracy"] >= 0.9
    evaluated = tmp_path / "eval.json"
    evaluated.write_text((smoke_run / "eval.json").read_text())
    evals = concepts.compare_evals({"folder": smoke_run, "file": evaluated})
    assert evals["same confusion matrix as the first"].all()
    assert list(evals["examples"]) == [500, 500]
    fig = concepts.plot_loss_vs_examples({"one": smoke_run})
    assert fig.axes[0].get_xlabel() == "training examples seen"
    assert plots.read_metrics_lines(smoke_run)[0]["step"] == 10


def test_a_run_attached_as_input_is_found_and_copied_for_resuming(smoke_run, tmp_path):
    inputs = tmp_path / "input" / "previous-version"
    concepts.copy_run_for_resume(smoke_run, inputs / "runs" / "smoke")
    assert concepts.find_run_folders(tmp_path / "input") == [inputs / "runs" / "smoke"]
    assert concepts.find_run_folders(tmp_path / "nowhere") == []
    copy = concepts.copy_run_for_resume(inputs / "runs" / "smoke", tmp_path / "working" / "smoke")
    assert read_json(copy / "eval.json") == read_json(smoke_run / "eval.json")
    with pytest.raises(FileExistsError, match="resume straight into it"):
        concepts.copy_run_for_resume(smoke_run, copy)
    with pytest.raises(FileNotFoundError):
        concepts.copy_run_for_resume(tmp_path / "input", tmp_path / "other")


def test_coverage_counts_every_assignment():
    assert np.array_equal(concepts.coverage({0: [1, 1], 1: []}, 2), [[0, 2], [0, 0]])
