"""Execute the course notebooks top to bottom and render them to HTML: `make site`, also used by the tests.

    distrinews site                     # execute every notebook, write site/index.html and site/NN_slug.html
    distrinews site --only 01 05        # some of them
    distrinews site --no-execute        # render the committed (output-free) notebooks as they are

Each notebook runs in its own fresh working folder, as a learner's fork would, so none depends on files that
another one left behind.
"""

from __future__ import annotations

import argparse
import html
import os
import time
from pathlib import Path

from .course import NOTEBOOKS, Notebook, notebook

ROOT = Path(__file__).resolve().parents[2]  # a checkout: lib/distrinews/site.py
NOTEBOOK_DIR = ROOT / "notebooks"
CELL_TIMEOUT_S = 300  # one cell; the longest is a smoke torchrun with a restart


def add_commands(commands) -> None:
    site = commands.add_parser("site", help="execute the course notebooks and render them to HTML",
                               allow_abbrev=False)
    site.add_argument("--out", default="site", help="output folder (default site/)")
    site.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or slugs (default: all)")
    site.add_argument("--no-execute", action="store_true", help="render without running (no outputs)")
    site.add_argument("--notebooks", default=str(NOTEBOOK_DIR), help="where the .ipynb files are")
    site.set_defaults(command=command_site)


def command_site(args: argparse.Namespace) -> int:
    selected = [notebook(n) for n in args.only] if args.only else list(NOTEBOOKS)
    build_site(Path(args.out), selected, Path(args.notebooks), execute=not args.no_execute)
    return 0


def execute_notebook(path: Path, workdir: Path, timeout: int = CELL_TIMEOUT_S, env: dict | None = None):
    """Run a notebook top to bottom with nbclient in `workdir`; return the executed notebook and its seconds.

    The kernel is this interpreter's (`python3` resolves to the environment the tests or `make site` run in),
    started with `env` applied to the current environment (a value of None removes the variable).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    workdir.mkdir(parents=True, exist_ok=True)
    saved = os.environ.copy()
    for key, value in (env or {}).items():  # the kernel inherits this process's environment; None unsets
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                                resources={"metadata": {"path": str(workdir)}})
        start = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)


def render_html(nb) -> str:
    """The notebook as one self-contained HTML page (nbconvert's lab template)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


def build_site(out: Path, selected: list[Notebook], notebook_dir: Path = NOTEBOOK_DIR, execute: bool = True) -> None:
    """Render the selected notebooks (executed unless told not to) and an index that lists them in order."""
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    for nb_info in selected:
        path = notebook_dir / nb_info.filename
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; NOTEBOOKS in distrinews/course.py lists it")
        if execute:
            print(f"executing {nb_info.filename} ...", flush=True)
            nb, seconds = execute_notebook(path, out / "_work" / nb_info.name)
            print(f"  done in {seconds:.0f} s", flush=True)
        else:
            nb = nbformat.read(path, as_version=4)
        (out / f"{nb_info.name}.html").write_text(render_html(nb))
    (out / "index.html").write_text(render_index(selected))
    print(f"site: {out / 'index.html'}")


def render_index(selected: list[Notebook]) -> str:
    items = "\n".join(
        f'  <li><a href="{nb.name}.html"><strong>{nb.number} {html.escape(nb.title)}</strong></a><br>'
        f"{html.escape(nb.summary)}</li>" for nb in selected)
    return ("<!doctype html>\n<html><head><meta charset='utf-8'><title>DistriNews: DDP training, step by step"
            "</title>\n<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}"
            "li{margin:0.8em 0}</style></head>\n<body>\n<h1>DistriNews: learn distributed data-parallel "
            "training</h1>\n<p>Fine-tune DistilBERT on AG News, from one GPU to two with DDP, then benchmark it "
            "and publish a demo. Read the notebooks in order:</p>\n<ul style='list-style:none;padding:0'>\n" + items +
            "\n</ul>\n</body></html>\n")
