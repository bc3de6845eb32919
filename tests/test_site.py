"""The course site's page preparation, without a browser or a kernel: links between notebooks become links between
pages, the "ran on" box shows once, and no page prints the build machine's absolute paths."""

from __future__ import annotations

import nbformat

from conftest import ROOT
from distrinews.course import NOTEBOOKS, RUN_KEY, run_html
from distrinews.site import (add_run_header, link_pages, mkdocs_config, path_replacements, relative_paths,
                             reported_run)

RUN = {"preset": "cpu-course", "hardware": "CPU: test, 2 cores, no GPU (training in fp32)", "model": "minilm",
       "data": "", "rows": "2,000 train, 500 test", "date": "2026-01-01 00:00 UTC"}


def executed_notebook(data_folder: str, workdir: str):
    """A notebook as nbclient leaves it: a breadcrumb, the box resolve_preset displayed, a cell printing paths."""
    run = {**RUN, "data": f"real AG News, {data_folder}"}
    box = nbformat.v4.new_output("display_data", data={"text/html": run_html(run)}, metadata={RUN_KEY: run})
    printed = nbformat.v4.new_output("stream", name="stdout", text=f"preset: cpu-course\nread {data_folder}/train.csv"
                                                                   f"\nsaved {workdir}/runs/ddp/checkpoint\n")
    cells = [nbformat.v4.new_markdown_cell("[< 04 Concepts](04_ddp_concepts.ipynb) | "
                                           "[06 Fault tolerance >](./06_fault_tolerance.ipynb#step-1)\n\n"
                                           '<a href="07_benchmark.ipynb">07</a> and [data](data.ipynb)'),
             nbformat.v4.new_markdown_cell("# Train DistilBERT on two GPUs with DDP"),
             nbformat.v4.new_code_cell("PRESET = course.resolve_preset(PRESET)", outputs=[printed, box])]
    return nbformat.v4.new_notebook(cells=cells)


def test_links_to_course_notebooks_become_links_to_their_pages():
    nb = executed_notebook("/data", "/work")
    link_pages(nb)
    assert nb.cells[0].source == ("[< 04 Concepts](04_ddp_concepts.html) | "
                                  "[06 Fault tolerance >](06_fault_tolerance.html#step-1)\n\n"
                                  '<a href="07_benchmark.html">07</a> and [data](data.ipynb)'), nb.cells[0].source


def test_the_run_box_shows_once_at_the_top_and_is_still_found():
    nb = executed_notebook("/data", "/work")
    add_run_header(nb, seconds=42)
    boxes = [cell for cell in nb.cells if "distrinews-run" in cell.source
             or any("distrinews-run" in out.get("data", {}).get("text/html", "") for out in cell.get("outputs", []))]
    assert boxes == [nb.cells[0]], "one box, first"
    assert "Executed top to bottom in 42 s" in nb.cells[0].source
    assert "preset: cpu-course" in nb.cells[-1].outputs[0]["text"], "the cell keeps its printed line"
    assert reported_run(nb)["preset"] == "cpu-course"


def test_pages_show_paths_relative_to_the_project_not_the_build_machines(tmp_path, monkeypatch):
    data = ROOT.parent / "shared" / "realdata" / "ag_news"  # where the Makefile's REALDATA points
    workdir = tmp_path / "site" / "_work" / "05_ddp_training"
    monkeypatch.setenv("DISTRINEWS_AG_NEWS", str(data))
    nb = executed_notebook(str(data), str(workdir))
    relative_paths(nb, path_replacements(workdir))
    add_run_header(nb)
    text = nbformat.writes(nb)
    assert str(data) not in text and str(tmp_path) not in text, text
    assert "real AG News, ../shared/realdata/ag_news" in nb.cells[0].source
    assert nb.cells[-1].outputs[0]["text"] == ("preset: cpu-course\nread ../shared/realdata/ag_news/train.csv\n"
                                               "saved runs/ddp/checkpoint\n")


def test_a_data_folder_far_from_the_project_shows_only_its_name(tmp_path):
    data = tmp_path / "datasets" / "ag_news"
    pairs = dict(path_replacements(env={"DISTRINEWS_AG_NEWS": str(data)}))
    assert pairs[str(data)] == "ag_news"


def test_the_sidebar_lists_the_home_page_then_every_notebook_in_course_order(tmp_path):
    config = mkdocs_config(tmp_path / "pages", tmp_path / "site", tmp_path / "cache")
    assert [next(iter(entry.values())) for entry in config["nav"]] == (
        ["index.md"] + [nb.filename for nb in NOTEBOOKS])
    plugins = [next(iter(plugin)) for plugin in config["plugins"]]
    assert plugins == ["search", "offline", "mkdocs-jupyter"]
    assert config["plugins"][2]["mkdocs-jupyter"]["execute"] is False, "build_site executes, MkDocs only renders"
