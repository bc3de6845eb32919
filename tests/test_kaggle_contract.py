"""Every notebook against its own Kaggle session: the settings its kernel-metadata.json asks for, Kaggle's packages.

`distrinews.kaggle_session.problems` derives both sides from the metadata, the presets and the cells; these tests
hold every notebook to it, and show on altered copies that it catches each way a notebook has stopped on Kaggle.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest

from conftest import ROOT
from distrinews import course, kaggle_session
from distrinews.course import NOTEBOOKS, notebook

IDS = [nb.name for nb in NOTEBOOKS]

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_the_notebook_runs_on_the_kaggle_session_its_metadata_asks_for(nb):
    assert kaggle_session.problems(nb) == []


@pytest.fixture
def copies(tmp_path):
    """The notebooks in a folder of their own, to alter one and ask the contract about it."""
    folder = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", folder, ignore=shutil.ignore_patterns("work"))

    def alter(number: str, change) -> None:
        path = folder / notebook(number).filename
        book = nbformat.read(path, as_version=4)
        change(book.cells)
        nbformat.write(book, path)
    alter.folder = folder
    return alter


def problems_of(number: str, folder) -> str:
    nb = notebook(number)
    return "\n".join(kaggle_session.problems(nb, notebook_dir=folder))


def test_a_gpu_preset_whose_model_needs_the_hub_fails_an_offline_session(copies):
    # 04 ran `distrinews train --preset kaggle-t4x2` on its internet-off T4 x2 session: ModelError at that cell
    copies("04", lambda cells: cells.append(nbformat.v4.new_code_cell("!distrinews train --preset kaggle-t4x2")))
    found = problems_of("04", copies.folder)
    assert f"04_ddp_concepts cell {len(nbformat.read(copies.folder / '04_ddp_concepts.ipynb', 4).cells) - 1}" in found
    assert "the kaggle-t4x2 preset loads distilbert-base-uncased, which cannot load" in found
    assert "internet off" in found and "the hub is unreachable" in found


def test_a_one_gpu_notebook_must_not_resolve_the_two_gpu_preset(monkeypatch):
    # 03 resolved kaggle-t4x2 on its T4 x2 session while the preset logic ignored the GPUs a notebook is written for
    explain = course.explain_preset
    monkeypatch.setattr(course, "explain_preset", lambda gpu_count=None, kaggle_root="/kaggle/input",
                        available=None, gpus_wanted=None: explain(gpu_count, kaggle_root, available))
    found = "\n".join(kaggle_session.problems(notebook("03")))
    assert "03_single_gpu: resolves the kaggle-t4x2 preset on 2 GPUs, but is written for 1" in found


def test_a_package_kaggles_image_lacks_must_be_installed_by_the_notebook(copies):
    # 08 timed ONNX Runtime paths without installing them: Kaggle's image has no onnxruntime, onnx or onnxscript
    copies("08", lambda cells: cells.__delitem__(
        next(i for i, c in enumerate(cells) if c.cell_type == "code" and "%pip install" in c.source)))
    found = problems_of("08", copies.folder)
    for package in ("onnxruntime", "onnx", "onnxscript"):
        assert f"needs {package} (distrinews/onnx_export.py line" in found
    assert "which Kaggle's image lacks and the notebook does not install" in found


def test_the_first_cell_says_what_the_session_runs_with_and_without_internet(copies):
    # 01 said a CPU session with AG News picks cpu-course; without internet it picks smoke
    line = kaggle_session.setting_line(notebook("01"), kaggle_session.session(notebook("01")))
    assert "the `cpu-course` preset there (with internet off: `smoke`)" in line

    def drop_line(cells):
        cells[0].source = cells[0].source.replace(line, "")
    copies("01", drop_line)
    assert f"01_data cell 0: the first cell must say, in one line: {line}" in problems_of("01", copies.folder)


def test_the_setup_cell_offers_no_install_that_cannot_work(copies):
    def old_setup(cells):
        setup = next(c for c in cells if c.cell_type == "code")
        setup.source = setup.source.replace(
            "    if not wheels:\n", '    source = ["git+https://github.com/OWNER/distrinews"]\n    if not wheels:\n')
    copies("02", old_setup)
    assert "installs from a placeholder repository URL (github.com/OWNER)" in problems_of("02", copies.folder)


def test_a_session_without_the_library_or_the_trained_model_is_named(tmp_path):
    s = kaggle_session.session(notebook("08"))
    bare = kaggle_session.Session(**{**s.__dict__, "datasets": (), "kernels": ()})
    found = "\n".join(kaggle_session.problems(notebook("08"), bare))
    assert "installs the library from the distrinews-lib dataset, which the session does not attach" in found
    assert "reads the output of 05_ddp_training, which its metadata does not attach" in found
