"""Execute the course notebooks top to bottom and render them as a website: `make site`, also used by the tests.

    distrinews site                     # execute every notebook, write site/index.html and site/NN_slug.html
    distrinews site --only 01 05        # execute some of them; the others keep the page their last build made
    distrinews site --no-execute        # render the committed (output-free) notebooks as they are

The pages are MkDocs with the Material theme, the notebooks converted by mkdocs-jupyter: a sidebar lists every
notebook, each page links to the previous and next one, and a search box looks through every page (an index
written at build time and searched in the browser, so it works without a server too). Links between notebooks
(`04_ddp_concepts.ipynb`) become links between pages, and paths of the build machine become relative ones.

Each notebook runs in its own fresh working folder, as a learner's fork would. The one exception mirrors Kaggle:
a notebook that reads another's output there (08 and 09 read 05's trained run, `Notebook.reads_output_of`) finds
that run in its folder when the other one ran earlier in the same build. Each page starts with what it ran on
(the box `course.resolve_preset` showed, lifted to the top) and how long it took; the home page lists every
page with its run time.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .course import DDP_RUN, NOTEBOOKS, REPOSITORY, RUN_KEY, Notebook, notebook, run_html

ROOT = Path(__file__).resolve().parents[2]  # a checkout: lib/distrinews/site.py
NOTEBOOK_DIR = ROOT / "notebooks"
CELL_TIMEOUT_S = 900  # one cell; the longest is a real-data training run on a 2-core CPU
TIMES_FILE = "run-times.json"  # seconds per executed notebook, kept between partial builds (--only)
PAGES = Path("_work") / "pages"  # under --out: every notebook as its page shows it, which MkDocs renders
SITE_NAME = "DistriNews: DDP training, step by step"


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


def reported_run(nb) -> dict | None:
    """What the notebook said it ran on: the metadata of the box `course.resolve_preset` displayed."""
    for cell in nb.cells:
        if RUN_KEY in cell.get("metadata", {}):  # lifted to the top by add_run_header
            return dict(cell.metadata[RUN_KEY])
        for output in cell.get("outputs", []):
            run = output.get("metadata", {}).get(RUN_KEY)
            if run:
                return dict(run)
    return None


def add_run_header(nb, seconds: float | None = None) -> None:
    """Move the "ran on" box to the very top of an executed notebook, so a reader sees it once, before the lesson."""
    import nbformat

    run = reported_run(nb)
    if run is None:
        return
    for cell in nb.cells:  # the cell that showed it keeps its one-line "preset: ..." print
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if RUN_KEY not in out.get("metadata", {})]
    took = "" if seconds is None else f" Executed top to bottom in {format_seconds(seconds)} by `distrinews site`."
    note = ("Every number and figure on this page was measured in this run, on the machine named here"
            + (", with the smoke preset's tiny model and synthetic news: they show that the code runs, not what a "
               "real run achieves." if run["preset"] == "smoke" else ".") + took)
    cell = nbformat.v4.new_markdown_cell(run_html(run) + f"\n\n*{note}*")
    cell.metadata[RUN_KEY] = run  # reported_run still finds it
    nb.cells.insert(0, cell)


def link_pages(nb) -> None:
    """Turn links to a course notebook (`04_ddp_concepts.ipynb`, the breadcrumbs) into links to its page."""
    names = "|".join(re.escape(other.name) for other in NOTEBOOKS)
    pattern = re.compile(rf"(?<=[(\"'])(?:\./)?({names})\.ipynb(?=[)#\"'])")
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = pattern.sub(r"\1.html", cell.source)


def path_replacements(workdir: Path | None = None, env: dict | None = None) -> list[tuple[str, str]]:
    """The build machine's absolute folders a page may print, longest first, each with what the page shows instead:
    the notebook's working folder becomes `.`, the project's own paths relative ones, the data folder its path
    relative to the project (`../shared/realdata/ag_news`, as the Makefile names it) or only its name."""
    from .data import LOCAL_DATA_ENV, local_dataset_dir

    def shown(folder: Path) -> str:
        relative = os.path.relpath(folder, ROOT)
        return relative if relative.count("..") <= 1 else folder.name

    folders = {}
    named = [(env or {}).get(LOCAL_DATA_ENV), os.environ.get(LOCAL_DATA_ENV), local_dataset_dir()]
    for folder in [Path(p) for p in named if p]:
        for variant in {folder.absolute(), folder.resolve()}:
            folders[str(variant)] = shown(folder.resolve())
    for variant in {ROOT, ROOT.resolve()}:
        folders[str(variant)] = "."
    if workdir is not None:
        for variant in {workdir.absolute(), workdir.resolve()}:
            folders[str(variant)] = "."
    pairs = []
    for folder, replacement in sorted(folders.items(), key=lambda item: -len(item[0])):
        pairs += [(folder + "/", "" if replacement == "." else replacement + "/"), (folder, replacement)]
    return pairs


def relative_paths(nb, replacements: list[tuple[str, str]]) -> None:
    """Rewrite the build machine's absolute paths in every output's text (see `path_replacements`)."""

    def fix(text):
        if isinstance(text, list):
            return [fix(line) for line in text]
        if not isinstance(text, str):
            return text
        for folder, replacement in replacements:
            text = text.replace(folder, replacement)
        return text

    for cell in nb.cells:
        if RUN_KEY in cell.get("metadata", {}):
            cell.source = fix(cell.source)
            cell.metadata[RUN_KEY] = {key: fix(value) for key, value in cell.metadata[RUN_KEY].items()}
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = fix(out["text"])
            for mime in out.get("data", {}):
                if mime.startswith("text/"):
                    out["data"][mime] = fix(out["data"][mime])
            if RUN_KEY in out.get("metadata", {}):
                out["metadata"][RUN_KEY] = {key: fix(value) for key, value in out["metadata"][RUN_KEY].items()}
            if "traceback" in out:
                out["traceback"] = fix(out["traceback"])


def attach_outputs(nb_info: Notebook, workdir: Path, out: Path) -> None:
    """As on Kaggle, where 08 and 09 attach notebook 05's output: link its run folder into this notebook's."""
    if not nb_info.reads_output_of:
        return
    source = out / "_work" / notebook(nb_info.reads_output_of).name / DDP_RUN
    if (source / "checkpoint" / "config.json").is_file():
        target = workdir / DDP_RUN
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source.resolve(), target_is_directory=True)
        print(f"  reads {nb_info.reads_output_of}'s run: {source}", flush=True)


def render_html(nb) -> str:
    """The notebook as one self-contained HTML page (nbconvert's lab template)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


def build_site(out: Path, selected: list[Notebook], notebook_dir: Path = NOTEBOOK_DIR, execute: bool = True,
               env: dict | None = None) -> None:
    """Execute the selected notebooks (unless told not to, with `env` applied to their kernels), then render every
    notebook's page and the home page: a page no build has executed shows the committed notebook."""
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    pages = out / PAGES
    pages.mkdir(parents=True, exist_ok=True)
    times = read_times(out)
    for nb_info in selected:
        path = notebook_dir / nb_info.filename
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; NOTEBOOKS in distrinews/course.py lists it")
        workdir = out / "_work" / nb_info.name
        if execute:
            print(f"executing {nb_info.filename} ...", flush=True)
            attach_outputs(nb_info, workdir, out)
            nb, seconds = execute_notebook(path, workdir, env=env)
            print(f"  done in {seconds:.0f} s", flush=True)
            relative_paths(nb, path_replacements(workdir, env))
            add_run_header(nb, seconds)
            times[nb_info.number] = {"seconds": round(seconds), "run": reported_run(nb)}
        else:
            nb = nbformat.read(path, as_version=4)
            times.pop(nb_info.number, None)  # this page now shows no outputs
        link_pages(nb)
        nbformat.write(nb, pages / nb_info.filename)
    for nb_info in NOTEBOOKS:  # every page exists, so that the sidebar and previous/next never lead nowhere
        if not (pages / nb_info.filename).exists():
            nb = nbformat.read(notebook_dir / nb_info.filename, as_version=4)
            link_pages(nb)
            nbformat.write(nb, pages / nb_info.filename)
    (out / TIMES_FILE).write_text(json.dumps(times, indent=2) + "\n")
    (pages / "index.md").write_text(render_index(list(NOTEBOOKS), times))
    render_pages(pages, out)
    print(f"site: {out / 'index.html'}")


def mkdocs_config(pages: Path, site_dir: Path, cache: Path) -> dict:
    """The MkDocs configuration: Material's sidebar, previous/next footer and search; mkdocs-jupyter renders the
    notebooks as they are (never executes them: `build_site` did) and caches each page by its content."""
    return {
        "site_name": SITE_NAME,
        "repo_url": REPOSITORY,
        "docs_dir": str(pages),
        "site_dir": str(site_dir),
        "use_directory_urls": False,  # site/05_ddp_training.html, as before, and pages that open from disk
        "theme": {"name": "material",
                  "font": False,  # system fonts: nothing to fetch from Google Fonts
                  "features": ["navigation.footer", "navigation.top", "search.highlight", "search.suggest",
                               "toc.follow"]},
        "plugins": [
            {"search": {}},  # the index is search/search_index.json, searched in the browser
            {"offline": {}},  # ... and inlined into search_index.js, so search works from file:// too
            {"mkdocs-jupyter": {"execute": False, "include": ["*.ipynb"], "no_prompt": True,
                                "ignore_h1_titles": True,  # the nav titles, numbered
                                "cache_dir": str(cache), "include_requirejs": False}},
        ],
        "nav": [{"Home": "index.md"}] + [{f"{nb.number} {nb.title}": nb.filename} for nb in NOTEBOOKS],
    }


def render_pages(pages: Path, out: Path) -> None:
    """Render the notebooks in `pages` and its index.md into `out` with MkDocs.

    MkDocs refuses a docs folder inside its site folder, so it builds into a fresh folder that is then copied over
    `out`, leaving the notebooks' working folders and run times there alone.
    """
    import logging

    import yaml
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # Material's banner about a future MkDocs
    logging.getLogger("mkdocs").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="distrinews-site-") as tmp:
        site_dir = Path(tmp) / "site"
        config_file = Path(tmp) / "mkdocs.yml"
        config_file.write_text(yaml.safe_dump(mkdocs_config(pages.resolve(), site_dir,
                                                            (out / "_work" / "mkdocs-cache").resolve())))
        config = load_config(str(config_file))
        build(config)
        shutil.copytree(site_dir, out, dirs_exist_ok=True)


def read_times(out: Path) -> dict:
    path = out / TIMES_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


KAGGLE_STEPS = (
    "Sign in to Kaggle and verify your phone number once (Settings -> Phone verification): GPUs and internet need it.",
    "Open a course notebook and click <strong>Copy &amp; Edit</strong>.",
    "In <strong>Input</strong>, check that <code>distrinews-lib</code> (the library) and, for the notebooks that read "
    "data, the <em>AG News Classification Dataset</em> are attached (<strong>Add Input</strong> otherwise).",
    "Set <strong>Settings -> Accelerator</strong> and <strong>Settings -> Internet</strong> as the notebook's entry "
    "below says (its first cell says the same); choose GPU T4 x2, not a GPU without a machine shape (a P100).",
    "<strong>Run All</strong>. The first cells report the hardware and pick the preset: kaggle-t4x2 on two GPUs.",
)
LEARN = (
    "How DistributedDataParallel works: processes, ranks, collectives, sharded data and averaged gradients, proved "
    "step for step against one big batch.",
    "How to train a transformer (DistilBERT on AG News) on one GPU, then on two with torchrun, in fp16 with a "
    "gradient scaler, and resume it after a crash.",
    "How to measure what a second GPU buys: throughput, scaling efficiency and all-reduce bandwidth, honestly "
    "reported.",
    "How to serve the trained classifier fast on a CPU and publish it as a Gradio Space.",
    "How to see inside DDP: bucket overlap in a profiler timeline, hangs and mismatched collectives debugged, memory "
    "per rank, and FSDP2 when DDP no longer fits.",
)


def kaggle_settings(nb: Notebook) -> str:
    """The Kaggle session a notebook asks for, as its settings read: "GPU T4 x2 (uses one), internet on"."""
    accelerator = {2: "GPU T4 x2", 1: "GPU T4 x2 (uses one)"}.get(nb.gpus, "no accelerator")
    return f"{accelerator}, internet {'on' if nb.needs_internet else 'off'}"


def render_index(selected: list[Notebook], times: dict | None = None) -> str:
    """The course's home page: what it teaches, the notebooks with their summaries and run times, how to run them."""
    times = times or {}

    def run_time(nb: Notebook) -> str:
        entry = times.get(nb.number)
        if not entry:
            return "shown without outputs (not executed)"
        run = entry.get("run") or {}
        return f"ran in {format_seconds(entry['seconds'])} on the {html.escape(run.get('preset', '?'))} preset"

    items = "\n".join(
        f'  <li><a href="{nb.name}.html"><strong>{nb.number} {html.escape(nb.title)}</strong></a><br>'
        f"{html.escape(nb.summary)}<br><small>{run_time(nb)}; on Kaggle: {kaggle_settings(nb)}</small></li>"
        for nb in selected)
    runs = [entry["run"] for entry in times.values() if entry.get("run")]
    machine = (f"<p>The pages below were executed on {html.escape(runs[0]['hardware'])}, "
               f"{html.escape(runs[0]['date'][:10])}; each page names its own run at the top.</p>" if runs else
               "<p>These pages are rendered without running them (no outputs).</p>")
    learn = "".join(f"<li>{html.escape(line)}</li>" for line in LEARN)
    kaggle = "".join(f"<li>{step}</li>" for step in KAGGLE_STEPS)
    demo = selected_link(selected, "09", "notebook 09")
    # One HTML block (no blank lines inside) that MkDocs' Markdown passes through as it is.
    return f"""<div class="distrinews-home">
<h1>DistriNews: learn distributed data-parallel training</h1>
<p>A course of {len(NOTEBOOKS)} notebooks: fine-tune DistilBERT on AG News (120,000 news headlines in four
topics), first on one GPU, then on two with PyTorch's DistributedDataParallel, then measure the speed-up, survive
crashes, serve the model and publish a demo. It is written for Kaggle's free two T4 GPUs, and every notebook also
runs top to bottom on a laptop CPU.</p>
<h2 id="what-you-will-learn">What you will learn</h2>
<ul>{learn}</ul>
<h2 id="the-notebooks">The notebooks</h2>
{machine}
<ol class="notebooks">
{items}
</ol>
<h2 id="run-it-on-kaggle">Run it on Kaggle</h2>
<ol>{kaggle}</ol>
<h2 id="demo-and-source">Demo and source</h2>
<ul>
<li>The demo: a Gradio app with a JSON API around the trained classifier; {demo} runs it and publishes it as a
Hugging Face Space, and <code>make demo</code> trains and serves one on your own machine.</li>
<li>The repository, with the library, the tests and these notebooks: <a href="{REPOSITORY}">{REPOSITORY}</a></li>
</ul>
</div>
"""


def selected_link(selected: list[Notebook], number: str, text: str) -> str:
    nb = notebook(number)
    return f'<a href="{nb.name}.html">{text}</a>' if nb in selected else text
