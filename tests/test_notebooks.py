"""The course notebooks: committed clean, built with the house anatomy, and run top to bottom on CPU.

Execution uses the smoke preset, named explicitly: this machine has real AG News rows and the real small model,
so it would pick cpu-course, which `make site` runs and which takes minutes per notebook. Each notebook runs in
its own fresh folder, as `make site` does.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from conftest import NOTEBOOK_ENV, ROOT
from distrinews.course import NOTEBOOKS, PARAMETERS_CELL, SETUP_CELL, Notebook
from distrinews.site import add_run_header, build_site, execute_notebook, render_html, reported_run

NOTEBOOK_DIR = ROOT / "notebooks"
IDS = [nb.name for nb in NOTEBOOKS]
OPENING = ["What you'll do", "What you'll learn", "What you'll need"]
CLOSING = ["Key takeaways", "Interview one-liner", "Check your understanding", "Further reading"]
ALLOWED_NOTEBOOK_METADATA = {"kernelspec", "language_info"}
ALLOWED_CELL_METADATA = {"tags"}


def read(nb: Notebook):
    path = NOTEBOOK_DIR / nb.filename
    assert path.exists(), f"{path} is missing (distrinews.course.NOTEBOOKS lists it)"
    return nbformat.read(path, as_version=4)


def headings(notebook) -> list[str]:
    found = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found += [m.group(2).strip() for m in re.finditer(r"^(#{1,3}) (.+)$", cell.source, re.M)]
    return found


def test_every_notebook_is_listed_and_every_listed_one_exists():
    on_disk = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert on_disk == sorted(nb.filename for nb in NOTEBOOKS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_clean(nb):
    notebook = read(nb)
    nbformat.validate(notebook)
    assert set(notebook.metadata) <= ALLOWED_NOTEBOOK_METADATA, f"volatile notebook metadata: {set(notebook.metadata)}"
    assert set(notebook.metadata.get("language_info", {})) <= {"name"}, "language_info records versions"
    for i, cell in enumerate(notebook.cells):
        assert set(cell.metadata) <= ALLOWED_CELL_METADATA, f"cell {i}: volatile metadata {set(cell.metadata)}"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_has_the_house_anatomy(nb):
    notebook = read(nb)
    first = notebook.cells[0].source
    assert f"# {nb.title}" in first, f"the first cell's H1 must be {nb.title!r} (course.NOTEBOOKS)"
    neighbours = [n for n in NOTEBOOKS if abs(int(n.number) - int(nb.number)) == 1]
    for other in neighbours:  # the breadcrumb links the previous and next notebook
        assert other.filename in first, f"breadcrumb lacks a link to {other.filename}"
    found = headings(notebook)
    positions = [found.index(h) if h in found else -1 for h in OPENING + CLOSING]
    assert -1 not in positions, f"missing headings: {[h for h, p in zip(OPENING + CLOSING, positions) if p < 0]}"
    assert positions == sorted(positions), "headings out of order"
    understanding = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "<details>" in understanding.split("Check your understanding", 1)[1], "answers folded in <details>"
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one `parameters`-tagged cell"
    assert tagged[0].source.startswith(PARAMETERS_CELL), "the parameters cell starts with course.PARAMETERS_CELL"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_starts_with_the_shared_setup_cell(nb):
    code = [c.source for c in read(nb).cells if c.cell_type == "code"]
    assert code[0] == SETUP_CELL, "the first code cell must be course.SETUP_CELL verbatim"
    assert code[1].startswith(PARAMETERS_CELL)
    assert f'course.check_environment("{nb.number}")' in code[2] and "course.resolve_preset(PRESET)" in code[2]


def test_ddp_notebook_writes_launches_and_diffs_the_script():
    notebook = read(next(nb for nb in NOTEBOOKS if nb.slug == "ddp_training"))
    sources = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert any(s.startswith("%%writefile train_ddp.py") for s in sources)
    assert any(re.search(r"^!torchrun .*--nproc_per_node", s, re.M) for s in sources)
    assert any(re.search(r"^!diff -u .*train_single\.py train_ddp\.py", s, re.M) for s in sources)


def test_single_device_notebook_writes_and_runs_the_program():
    notebook = read(next(nb for nb in NOTEBOOKS if nb.slug == "single_gpu"))
    sources = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert any(s.startswith("%%writefile train_single.py") for s in sources)
    assert any(re.search(r"^!python train_single\.py ", s, re.M) for s in sources)


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_notebook_runs_top_to_bottom_and_renders(nb, tmp_path):
    executed, seconds = execute_notebook(NOTEBOOK_DIR / nb.filename, tmp_path / "work",
                                         env=NOTEBOOK_ENV)
    print(f"{nb.filename}: {seconds:.0f} s")
    text = "\n".join(out.get("text", "") for cell in executed.cells if cell.cell_type == "code"
                     for out in cell.outputs)
    assert "preset: smoke (from $DISTRINEWS_PRESET)" in text, "the notebook must take the preset it is given"
    assert reported_run(executed)["model"].startswith("tiny"), "the run box names what the notebook ran on"
    add_run_header(executed, seconds)
    page = render_html(executed)
    assert nb.title in page and page.index("distrinews-run") < page.index(nb.title), "the run box comes first"


def test_site_index_lists_every_notebook_in_order(tmp_path):
    build_site(tmp_path, list(NOTEBOOKS), NOTEBOOK_DIR, execute=False)
    index = (tmp_path / "index.html").read_text()
    positions = [index.index(f'href="{nb.name}.html"') for nb in NOTEBOOKS]
    assert positions == sorted(positions)
    for nb in NOTEBOOKS:
        assert nb.summary.replace("'", "&#x27;") in index
        assert (tmp_path / f"{nb.name}.html").stat().st_size > 1000


def test_readme_outline_links_every_notebook_in_order():
    readme = (ROOT / "README.md").read_text()
    links = [f"[{nb.title}](notebooks/{nb.filename})" for nb in NOTEBOOKS]
    missing = [link for link in links if link not in readme]
    assert not missing, f"README's course outline lacks {missing}"
    assert [readme.index(link) for link in links] == sorted(readme.index(link) for link in links)


def test_readme_states_each_notebooks_kaggle_settings_as_its_metadata_asks():
    """The README's table tells a learner the accelerator and internet each notebook needs: Kaggle's settings as
    the committed kernel-metadata.json asks for them (read as the Kaggle contract reads it), so the two cannot drift."""
    from distrinews.kaggle_session import session
    rows = {line.split("|")[1].strip(): line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| ") and "](notebooks/" in line}
    for nb in NOTEBOOKS:
        settings = session(nb).settings()
        assert rows[nb.number].rstrip().endswith(f"| {settings} |"), (
            f"README's row for {nb.number} should say '{settings}': {rows[nb.number]}")
