"""Kaggle: kernel metadata for every notebook, the library as a Kaggle dataset, and `distrinews publish kaggle`.

    distrinews publish kaggle --dry-run                    # stage and validate everything, print the commands
    distrinews publish kaggle --owner me                   # push the library dataset, then every notebook
    distrinews publish kaggle --owner me --only 05 06 --skip-library
    distrinews publish kaggle --write-metadata             # regenerate kernel-metadata/ from course.NOTEBOOKS

`kernel-metadata/NN_slug/kernel-metadata.json` is generated here from `course.NOTEBOOKS` and committed; a test
fails when the two drift. Publishing stages STAGE/library (the distrinews wheel and its dataset-metadata.json)
and STAGE/kernels/NN_slug (the notebook and its metadata, owner applied), validates them, then runs the Kaggle
CLI: the library dataset first (`kaggle datasets version`, or `create` the first time), because every notebook
attaches it, then `kaggle kernels push -p` for each notebook.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from .course import LIBRARY_DATASET, NOTEBOOKS, REPOSITORY, SETUP_CELL, Notebook, notebook
from .publishing import PublishError, fresh_dir, needs

ROOT = Path(__file__).resolve().parents[2]  # a checkout: lib/distrinews/kaggle.py
PACKAGE_DIR = ROOT / "lib" / "distrinews"
NOTEBOOK_DIR = ROOT / "notebooks"
METADATA_DIR = ROOT / "kernel-metadata"  # committed; written by `publish kaggle --write-metadata`
KERNEL_METADATA = "kernel-metadata.json"
DATASET_METADATA = "dataset-metadata.json"

DEFAULT_OWNER = "distrinews"  # placeholder Kaggle username in the committed metadata; --owner replaces it
OWNER_ENV = "DISTRINEWS_KAGGLE_OWNER"
CLI_ENV = "DISTRINEWS_KAGGLE_CLI"  # the kaggle executable to run, when it is not `kaggle` on PATH
AG_NEWS_DATASET = "amananandrai/ag-news-classification-dataset"  # train.csv/test.csv: Class Index,Title,Description
GPU_MACHINE_SHAPE = "NvidiaTeslaT4"  # "GPU T4 x2" in the Kaggle CLI; enable_gpu alone has landed on a P100
KEYWORDS = ("deep learning", "nlp", "pytorch", "transformers")  # Kaggle tags (unknown ones are dropped); + "gpu"
TITLE_LENGTH = (5, 50)  # the CLI refuses shorter titles; the server fails on longer ones with a 500
KERNEL_FIELDS = ("id", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu",
                 "enable_internet", "machine_shape", "dataset_sources", "kernel_sources", "model_sources",
                 "keywords")
OWNER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
READY_POLL_S = 10  # how often to ask whether a new dataset version has finished processing
READY_TIMEOUT_S = 900
FAILURE = re.compile(r"\berror\b|not valid (dataset|kernel|competition) sources", re.I)  # the CLI exits 0 on these

LIBRARY_TITLE = "DistriNews course library"
LIBRARY_SUBTITLE = "The distrinews Python package as a wheel for the DistriNews notebooks"
LIBRARY_DESCRIPTION = f"""\
The `distrinews` library of the DistriNews course (fine-tune DistilBERT on AG News with PyTorch DDP on
Kaggle's two T4 GPUs), packaged as a wheel so that the course notebooks run without internet.

Every course notebook attaches this dataset; its first cell installs the wheel with
`pip install --no-deps /kaggle/input/{LIBRARY_DATASET}/*.whl` (the Kaggle image already has its dependencies:
torch, transformers, datasets). Source, notebooks and license (MIT): {REPOSITORY}
"""


# ---- kernel metadata: one generator, committed output ------------------------------------------------------

def slugify(text: str) -> str:
    """Kaggle's slug for an ASCII title, as python-slugify makes it: lowercase words and numbers joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"(?<=\d),(?=\d)", "", text.lower())).strip("-")


def kaggle_title(nb: Notebook) -> str:
    """"05 Train DistilBERT on two GPUs with DDP": the number keeps the course in order on a profile page.

    A title over Kaggle's 50 characters keeps its headline, the part before a colon.
    """
    for title in (f"{nb.number} {nb.title}", f"{nb.number} {nb.title.split(':')[0]}"):
        if TITLE_LENGTH[0] <= len(title) <= TITLE_LENGTH[1]:
            return title
    raise PublishError(f"notebook {nb.name}: its title {nb.title!r} makes a Kaggle title over "
                       f"{TITLE_LENGTH[1]} characters; shorten it in distrinews.course.NOTEBOOKS")


def library_dataset_id(owner: str) -> str:
    return f"{owner}/{LIBRARY_DATASET}"


def kernel_id(nb: Notebook, owner: str = DEFAULT_OWNER) -> str:
    return f"{owner}/{slugify(kaggle_title(nb))}"


def kernel_metadata(nb: Notebook, owner: str = DEFAULT_OWNER, private: bool = False) -> dict:
    """The kernel-metadata.json of one notebook, every field derived from its course.NOTEBOOKS entry."""
    title = kaggle_title(nb)
    datasets = [library_dataset_id(owner)] + ([AG_NEWS_DATASET] if nb.needs_data else [])
    return {
        "id": kernel_id(nb, owner),
        "title": title,
        "code_file": nb.filename,  # staged beside this file
        "language": "python",
        "kernel_type": "notebook",
        "is_private": private,
        "enable_gpu": nb.gpus > 0,
        "enable_internet": nb.needs_internet,
        "machine_shape": GPU_MACHINE_SHAPE if nb.gpus > 0 else None,  # null: no accelerator asked for
        "dataset_sources": datasets,
        # the checkpoint a notebook works on: the output of the notebook that trained it (05), attached as an input
        "kernel_sources": [kernel_id(notebook(nb.reads_output_of), owner)] if nb.reads_output_of else [],
        "model_sources": [],
        "keywords": list(KEYWORDS) + (["gpu"] if nb.gpus > 0 else []),
    }


def render_json(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def write_metadata(dest: Path = METADATA_DIR, notebooks=NOTEBOOKS) -> list[Path]:
    """Write dest/NN_slug/kernel-metadata.json for every notebook (owner DEFAULT_OWNER); drop stale folders."""
    dest.mkdir(parents=True, exist_ok=True)
    names = {nb.name for nb in notebooks}
    for child in dest.iterdir():  # a notebook renamed or removed from the course leaves its folder behind
        if child.is_dir() and child.name not in names and [p.name for p in child.iterdir()] == [KERNEL_METADATA]:
            shutil.rmtree(child)
    written = []
    for nb in notebooks:
        path = dest / nb.name / KERNEL_METADATA
        path.parent.mkdir(exist_ok=True)
        path.write_text(render_json(kernel_metadata(nb)), encoding="utf-8")
        written.append(path)
    return written


def check_committed_metadata(notebooks=NOTEBOOKS, committed: Path = METADATA_DIR) -> None:
    """The committed kernel-metadata/ files equal what the generator writes now."""
    stale = [nb.name for nb in notebooks
             if not (committed / nb.name / KERNEL_METADATA).is_file()
             or (committed / nb.name / KERNEL_METADATA).read_text(encoding="utf-8")
             != render_json(kernel_metadata(nb))]
    if stale:
        raise PublishError(f"{committed.name}/ is out of date for {', '.join(stale)}: run "
                           "`distrinews publish kaggle --write-metadata` and commit the result")


# ---- validation -------------------------------------------------------------------------------------------

def kernel_problems(meta: dict, nb: Notebook, owner: str, folder: Path | None = None) -> list[str]:
    """Everything wrong with one kernel-metadata.json, checked against its notebook's entry in the course."""
    problems = []
    if list(meta) != list(KERNEL_FIELDS):
        problems.append(f"fields must be exactly {', '.join(KERNEL_FIELDS)} (got {', '.join(meta)})")
    types = {"id": str, "title": str, "code_file": str, "language": str, "kernel_type": str, "is_private": bool,
             "enable_gpu": bool, "enable_internet": bool, "machine_shape": (str, type(None)),
             "dataset_sources": list, "kernel_sources": list, "model_sources": list, "keywords": list}
    for key, kind in types.items():
        if not isinstance(meta.get(key), kind):
            problems.append(f"{key} must be {getattr(kind, '__name__', 'a string or null')}, "
                            f"got {meta.get(key)!r}")
    if problems:
        return problems
    for key in ("dataset_sources", "kernel_sources", "model_sources", "keywords"):
        if not all(isinstance(item, str) and item for item in meta[key]):
            problems.append(f"{key} must hold non-empty strings")
    kernel_owner, _, slug = meta["id"].partition("/")
    if kernel_owner != owner or not OWNER_PATTERN.match(kernel_owner):
        problems.append(f"id {meta['id']!r} must start with the owner {owner!r}/")
    if not SLUG_PATTERN.match(slug):
        problems.append(f"id slug {slug!r} must be lowercase letters, digits and single dashes")
    if slugify(meta["title"]) != slug:
        problems.append(f"title {meta['title']!r} has the slug {slugify(meta['title'])!r}, not the id's {slug!r} "
                        "(Kaggle derives the slug from the title)")
    if not TITLE_LENGTH[0] <= len(meta["title"]) <= TITLE_LENGTH[1]:
        problems.append(f"title must be {TITLE_LENGTH[0]} to {TITLE_LENGTH[1]} characters long")
    if meta["code_file"] != nb.filename:
        problems.append(f"code_file must be {nb.filename!r}, got {meta['code_file']!r}")
    elif folder is not None and not (folder / meta["code_file"]).is_file():
        problems.append(f"code_file {meta['code_file']} is not in {folder}")
    if (meta["language"], meta["kernel_type"]) != ("python", "notebook"):
        problems.append("language must be 'python' and kernel_type 'notebook'")
    if nb.gpus > 0 and (meta["enable_gpu"], meta["machine_shape"]) != (True, GPU_MACHINE_SHAPE):
        problems.append(f"a GPU notebook needs enable_gpu true and machine_shape {GPU_MACHINE_SHAPE!r} (GPU T4 x2)")
    if nb.gpus == 0 and (meta["enable_gpu"] or meta["machine_shape"] is not None):
        problems.append("a CPU notebook must not ask for a GPU: enable_gpu false, machine_shape null")
    if meta["enable_internet"] != nb.needs_internet:
        problems.append(f"enable_internet must be {nb.needs_internet} (course.NOTEBOOKS needs_internet)")
    for source in meta["dataset_sources"] + meta["kernel_sources"]:
        if len(source.split("/")) != 2 or not all(source.split("/")):
            problems.append(f"source {source!r} must look like OWNER/SLUG")
    if library_dataset_id(owner) not in meta["dataset_sources"]:
        problems.append(f"dataset_sources must attach the library dataset {library_dataset_id(owner)}")
    if (AG_NEWS_DATASET in meta["dataset_sources"]) != nb.needs_data:
        problems.append(f"dataset_sources must {'' if nb.needs_data else 'not '}attach {AG_NEWS_DATASET} "
                        "(course.NOTEBOOKS needs_data)")
    return problems


def notebook_problems(path: Path) -> list[str]:
    """A notebook Kaggle can run as the course means it: valid, committed clean, the setup cell first."""
    nbformat = needs("nbformat", "publish kaggle", extra="course")
    if not path.is_file():
        return [f"{path} not found"]
    try:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
    except Exception as err:  # noqa: BLE001 - nbformat raises several unrelated types for a broken file
        return [f"{path.name} is not a valid notebook: {err}"]
    problems = []
    for i, cell in enumerate(book.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            problems.append(f"{path.name} cell {i} has outputs or an execution count: clear them")
    code = [cell.source for cell in book.cells if cell.cell_type == "code"]
    if not code or code[0] != SETUP_CELL:
        problems.append(f"{path.name}: the first code cell must be course.SETUP_CELL (it installs the library)")
    return problems


def dataset_problems(meta: dict, owner: str, folder: Path) -> list[str]:
    """dataset-metadata.json as `kaggle datasets create` wants it, and exactly one wheel beside it."""
    problems = []
    if meta.get("id") != library_dataset_id(owner):
        problems.append(f"id must be {library_dataset_id(owner)!r}")
    if not 6 <= len(meta.get("title", "")) <= 50:
        problems.append("title must be 6 to 50 characters long")
    if not 20 <= len(meta.get("subtitle", "")) <= 80:
        problems.append("subtitle must be 20 to 80 characters long")
    if not 6 <= len(LIBRARY_DATASET) <= 50 or not SLUG_PATTERN.match(LIBRARY_DATASET):  # the CLI's own limits
        problems.append(f"dataset slug {LIBRARY_DATASET!r} must be 6 to 50 lowercase letters, digits and dashes")
    licenses = meta.get("licenses")
    if not (isinstance(licenses, list) and len(licenses) == 1 and licenses[0].get("name")):
        problems.append("licenses must hold exactly one {'name': ...}")
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        problems.append(f"{folder} must hold exactly one wheel, found {len(wheels)}")
    return problems


def require(problems: list[str], what: str) -> None:
    if problems:
        raise PublishError(f"{what}:\n  " + "\n  ".join(problems))


# ---- staging ----------------------------------------------------------------------------------------------

def require_checkout() -> None:
    if not (ROOT / "pyproject.toml").is_file() or not PACKAGE_DIR.is_dir():
        raise PublishError(f"publish kaggle runs from a clone of the course repository ({REPOSITORY}); "
                           f"{ROOT} has no pyproject.toml and lib/distrinews/")


def build_wheel(dest: Path) -> Path:
    """Build the distrinews wheel into dest from a copy of the sources, so the checkout gains no build files."""
    with tempfile.TemporaryDirectory(prefix="distrinews-wheel-") as tmp:
        source = Path(tmp) / "src"
        (source / "lib").mkdir(parents=True)
        for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
            shutil.copy2(ROOT / name, source / name)
        shutil.copytree(ROOT / "space", source / "space", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copytree(PACKAGE_DIR, source / "lib" / "distrinews",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        # Without build isolation pip uses this environment's setuptools and needs no network
        isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--quiet",
                               "--wheel-dir", str(dest), str(source)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise PublishError("building the distrinews wheel failed:\n" + "\n".join(tail))
    wheels = sorted(dest.glob("distrinews-*.whl"))
    if len(wheels) != 1:
        raise PublishError(f"expected one distrinews wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def wheel_problems(wheel: Path) -> list[str]:
    """Every file of lib/distrinews is in the wheel, the Space app beside them, and the `distrinews` command.

    setuptools packs .py files only, unless pyproject.toml declares package data: a data file added to the
    package would be missing on Kaggle, so it is caught here.
    """
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next((archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")),
                            "")
    wanted = [f"distrinews/{p.relative_to(PACKAGE_DIR).as_posix()}" for p in PACKAGE_DIR.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    wanted += [f"distrinews/space/{name}" for name in ("app.py", "README.md", "requirements.txt",
                                                        "requirements-cpu.txt", "LICENSE")]  # setup.py
    missing = sorted(name for name in wanted if name not in names)
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):  # pyproject's license-files
        missing.append("LICENSE in its .dist-info")
    problems = [f"{wheel.name} lacks {', '.join(missing)}"] if missing else []
    if "distrinews = distrinews.cli:main" not in entry_points:
        problems.append(f"{wheel.name} does not install the `distrinews` command")
    return problems


def dataset_metadata(owner: str) -> dict:
    return {"title": LIBRARY_TITLE, "subtitle": LIBRARY_SUBTITLE, "description": LIBRARY_DESCRIPTION,
            "id": library_dataset_id(owner),
            "licenses": [{"name": "other"}],  # MIT, named in the description: Kaggle's list has no MIT
            "keywords": ["pytorch", "nlp"]}


def stage_library(stage: Path, owner: str) -> Path:
    """STAGE/library: the wheel and dataset-metadata.json, the folder `kaggle datasets version -p` uploads."""
    folder = fresh_dir(stage / "library")
    wheel = build_wheel(folder)
    meta = dataset_metadata(owner)
    (folder / DATASET_METADATA).write_text(render_json(meta), encoding="utf-8")
    require(wheel_problems(wheel) + dataset_problems(meta, owner, folder), f"library dataset in {folder}")
    return folder


def stage_kernel(nb: Notebook, stage: Path, owner: str, private: bool, notebook_dir: Path) -> Path:
    """STAGE/kernels/NN_slug: the notebook and its kernel-metadata.json, the folder `kaggle kernels push -p` reads."""
    source = notebook_dir / nb.filename
    require(notebook_problems(source), f"notebook {nb.name}")
    folder = fresh_dir(stage / "kernels" / nb.name)
    shutil.copy2(source, folder / nb.filename)
    meta = kernel_metadata(nb, owner, private)
    (folder / KERNEL_METADATA).write_text(render_json(meta), encoding="utf-8")
    require(kernel_problems(meta, nb, owner, folder), f"kernel metadata in {folder}")
    return folder


# ---- credentials and the Kaggle CLI -----------------------------------------------------------------------

def env(name: str) -> str:
    return os.environ.get(name, "").strip()


def kaggle_config_dirs() -> list[Path]:
    """Where the Kaggle CLI looks for kaggle.json: $KAGGLE_CONFIG_DIR, ~/.kaggle, $XDG_CONFIG_HOME/kaggle."""
    if env("KAGGLE_CONFIG_DIR"):
        return [Path(env("KAGGLE_CONFIG_DIR"))]
    xdg = Path(env("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path.home() / ".kaggle", xdg / "kaggle"]


def find_credentials() -> str:
    """Where the Kaggle CLI will find credentials, in its own order; only the place is returned, never a value."""
    home = Path.home() / ".kaggle"
    if env("KAGGLE_API_TOKEN"):
        return "$KAGGLE_API_TOKEN"
    for token_file in (home / "access_token", home / "access_token.txt"):
        if token_file.is_file() and token_file.read_text(encoding="utf-8").strip():
            return str(token_file)
    if env("KAGGLE_USERNAME") and env("KAGGLE_KEY"):
        return "$KAGGLE_USERNAME and $KAGGLE_KEY"
    for folder in kaggle_config_dirs():
        if (folder / "kaggle.json").is_file():
            return str(folder / "kaggle.json")
    if (home / "credentials.json").is_file():
        return f"{home / 'credentials.json'} (kaggle auth login)"
    raise PublishError("no Kaggle credentials found: create an API token at https://www.kaggle.com/settings/api, "
                       "then export KAGGLE_API_TOKEN=<token> or save it to ~/.kaggle/access_token (or put "
                       "kaggle.json in ~/.kaggle/, or set KAGGLE_USERNAME and KAGGLE_KEY, or run "
                       "`kaggle auth login`); or use --dry-run")


def find_cli() -> list[str]:
    """The kaggle command: $DISTRINEWS_KAGGLE_CLI, else beside this Python, else on PATH."""
    if env(CLI_ENV):
        if not Path(env(CLI_ENV)).is_file():
            raise PublishError(f"${CLI_ENV} names {env(CLI_ENV)}, which does not exist")
        return [env(CLI_ENV)]
    beside = Path(sys.executable).parent / "kaggle"
    found = str(beside) if beside.is_file() else shutil.which("kaggle")
    if not found:
        raise PublishError("the Kaggle CLI is not installed: `pip install kaggle` (in this environment), "
                           "or use --dry-run")
    return [found]


def run_kaggle(cli: list[str], args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run one Kaggle CLI command, echo its output, and fail on errors it reports while exiting 0."""
    print(f"$ {shlex.join(['kaggle', *args])}", flush=True)
    proc = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=1800)
    output = (proc.stdout + proc.stderr).strip()
    if output:
        print(output, flush=True)
    if check and (proc.returncode != 0 or FAILURE.search(output)):
        raise PublishError(f"`kaggle {' '.join(args[:2])}` failed (exit {proc.returncode}); its output is above")
    return proc


# ---- the plan and the push --------------------------------------------------------------------------------

def library_commands(folder: Path, owner: str, message: str, private: bool) -> dict[str, list[str]]:
    dataset = library_dataset_id(owner)
    create = ["datasets", "create", "-p", str(folder)] + ([] if private else ["--public"])  # forks must see it
    return {"status": ["datasets", "status", dataset],
            "version": ["datasets", "version", "-p", str(folder), "-m", message],
            "create": create}


def kernel_command(folder: Path, no_run: bool = False) -> list[str]:
    return ["kernels", "push", "-p", str(folder)] + (["--no-run"] if no_run else [])


def print_plan(library: dict | None, kernels: list[tuple[Notebook, Path]], no_run: bool) -> None:
    print("commands, in order:")
    if library:
        print(f"  {shlex.join(['kaggle', *library['status']])}")
        print(f"  {shlex.join(['kaggle', *library['version']])}    # when the dataset exists")
        print(f"  {shlex.join(['kaggle', *library['create']])}    # when it does not yet")
    for _, folder in kernels:
        print(f"  {shlex.join(['kaggle', *kernel_command(folder, no_run)])}")


def push_library(cli: list[str], commands: dict[str, list[str]], dataset: str) -> None:
    """A new version when the dataset exists, else create it; then wait until Kaggle has processed it."""
    status = run_kaggle(cli, commands["status"], check=False)
    if status.returncode == 0 and not FAILURE.search(status.stdout + status.stderr):
        run_kaggle(cli, commands["version"])
    elif re.search(r"\b404\b|not found", status.stdout + status.stderr, re.I):
        run_kaggle(cli, commands["create"])
    else:
        raise PublishError(f"could not tell whether {dataset} exists (`kaggle datasets status` exit "
                           f"{status.returncode}); its output is above")
    wait_until_ready(cli, commands["status"], dataset)


def wait_until_ready(cli: list[str], status_command: list[str], dataset: str) -> None:
    """Kernels pushed before the new version is ready would attach the old one, or none the first time."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        state = run_kaggle(cli, status_command).stdout.strip().lower()
        if state == "ready":
            return
        if time.monotonic() > deadline:
            raise PublishError(f"{dataset} is still {state!r} after {READY_TIMEOUT_S} s; push the kernels "
                               "later with --skip-library")
        time.sleep(READY_POLL_S)


# ---- the command ------------------------------------------------------------------------------------------

def add_publish_command(targets) -> None:
    """Register `publish kaggle` on the `publish` command's targets."""
    kaggle = targets.add_parser("kaggle", help="push the library dataset and the notebooks to Kaggle",
                                allow_abbrev=False, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    kaggle.add_argument("--owner", help=f"the Kaggle username to publish under (default: ${OWNER_ENV}, "
                                        f"else $KAGGLE_USERNAME, else {DEFAULT_OWNER})")
    kaggle.add_argument("--dry-run", action="store_true", help="stage and validate, print the commands, push nothing")
    kaggle.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or slugs (default: all)")
    kaggle.add_argument("--stage-dir", help="where to stage the folders (default: a temporary directory)")
    kaggle.add_argument("--skip-library", action="store_true",
                        help="neither stage nor push the library dataset (it is already current on Kaggle)")
    kaggle.add_argument("--private", action="store_true",
                        help="private kernels, and a private library dataset when it is created: a trial run")
    kaggle.add_argument("--no-run", action="store_true",
                        help="save the kernels without running them (Kaggle's Quick Save): no GPU time spent")
    kaggle.add_argument("-m", "--message", help="the library dataset's version notes")
    kaggle.add_argument("--notebooks", default=str(NOTEBOOK_DIR), help="where the .ipynb files are")
    kaggle.add_argument("--write-metadata", nargs="?", const=str(METADATA_DIR), metavar="DIR",
                        help=f"write the kernel metadata (owner {DEFAULT_OWNER}) to DIR (default: the "
                             "checkout's kernel-metadata/) and exit")
    kaggle.set_defaults(command=command_publish_kaggle)


def command_publish_kaggle(args: argparse.Namespace) -> int:
    try:
        if args.write_metadata:
            if args.owner:
                raise PublishError(f"--write-metadata writes the committed files with the owner {DEFAULT_OWNER} "
                                   "(change DEFAULT_OWNER in distrinews/kaggle.py); --owner applies when staging")
            for path in write_metadata(Path(args.write_metadata)):
                print(f"wrote {path}")
            return 0
        publish(args)
    except PublishError as err:
        print(f"distrinews: error: {err}", file=sys.stderr)
        return 2
    return 0


def resolve_owner(owner: str | None) -> tuple[str, str]:
    """The owner and where it came from: --owner, $DISTRINEWS_KAGGLE_OWNER, $KAGGLE_USERNAME, the placeholder."""
    candidates = ((owner, "--owner"), (env(OWNER_ENV), f"${OWNER_ENV}"), (env("KAGGLE_USERNAME"), "$KAGGLE_USERNAME"),
                  (DEFAULT_OWNER, "the placeholder; pass --owner YOUR_KAGGLE_USERNAME to publish"))
    value, why = next((value, why) for value, why in candidates if value)
    if not OWNER_PATTERN.match(value):
        raise PublishError(f"owner {value!r} ({why}) is not a Kaggle username")
    return value, why


def select(only: list[str] | None) -> list[Notebook]:
    try:
        return [notebook(key) for key in only] if only else list(NOTEBOOKS)
    except KeyError as err:
        raise PublishError(err.args[0]) from None


def publish(args: argparse.Namespace) -> None:
    needs("nbformat", "publish kaggle", extra="course")  # validates the notebooks: fail before building the wheel
    require_checkout()
    owner, why = resolve_owner(args.owner)
    selected = select(args.only)
    check_committed_metadata()
    cli = None
    if not args.dry_run:  # fail before any work when a push cannot happen
        print(f"Kaggle credentials: {find_credentials()}")
        cli = find_cli()
    stage = Path(args.stage_dir) if args.stage_dir else Path(tempfile.mkdtemp(prefix="distrinews-kaggle-"))
    print(f"owner: {owner} ({why})")
    library = None
    if not args.skip_library:
        folder = stage_library(stage, owner)
        wheel = next(folder.glob("*.whl"))
        message = args.message or f"{wheel.name} (distrinews publish kaggle)"
        library = library_commands(folder, owner, message, args.private)
        print(f"staged dataset {library_dataset_id(owner)} in {folder}: {DATASET_METADATA}, {wheel.name}")
    kernels = [(nb, stage_kernel(nb, stage, owner, args.private, Path(args.notebooks))) for nb in selected]
    for nb, folder in kernels:
        meta = kernel_metadata(nb, owner, args.private)
        hardware = "GPU T4 x2" if meta["enable_gpu"] else "CPU"
        print(f"staged kernel {meta['id']} in {folder}: {hardware}, internet "
              f"{'on' if meta['enable_internet'] else 'off'}, inputs {', '.join(meta['dataset_sources'])}")
    print_plan(library, kernels, args.no_run)
    if args.dry_run:
        print("dry run: nothing pushed")
        return
    if library:
        push_library(cli, library, library_dataset_id(owner))
    for _, folder in kernels:
        run_kaggle(cli, kernel_command(folder, args.no_run))
    print("published:")
    if library:
        print(f"  https://www.kaggle.com/datasets/{library_dataset_id(owner)}")
    for nb, _ in kernels:
        print(f"  https://www.kaggle.com/code/{kernel_metadata(nb, owner)['id']}")
