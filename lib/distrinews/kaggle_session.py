"""Each notebook's Kaggle session, as its kernel-metadata.json asks for it, against what the notebook needs there.

A learner forks a notebook with its metadata's settings and presses Save & Run All. `session(nb)` reads what that
session gives: GPUs, internet, the inputs attached, and Kaggle's packages (`.ci/kaggle-versions.txt` and what they
require). `problems(nb)` runs the course's own decisions under that session (the preset `resolve_preset` picks,
where that preset's model and data load from) and reads the notebook's cells (the packages they import, down
through the library modules they use; the notebook output they read; the Kaggle line of the first cell). Nothing
here is a table of what each notebook needs: both sides come from the metadata, the code and the cells.

tests/test_kaggle_contract.py holds every notebook to it; `.ci/kaggle-rehearsal` then executes each notebook as
Kaggle does (`rehearsal_plan` says how far each must get).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from . import course
from .config import PRESETS
from .course import DDP_RUN, GPU_PRESETS, LIBRARY_DATASET, NOTEBOOKS, Notebook, gpu_preset, notebook
from .kaggle import AG_NEWS_DATASET, GPU_MACHINE_SHAPE, METADATA_DIR, ROOT, kernel_id

PINS = ROOT / ".ci" / "kaggle-versions.txt"  # Kaggle's image, as pins
PACKAGE_DIR = Path(__file__).resolve().parent
INSTALL = re.compile(r"^\s*[%!]pip install (.+)$", re.M)


@dataclass(frozen=True)
class Session:
    """What a notebook's Kaggle session gives, read from its kernel-metadata.json."""

    gpus: int  # 2 on "GPU T4 x2"; 1 where enable_gpu has no machine shape (Kaggle then hands out a P100)
    gpu_name: str  # "Tesla T4", "Tesla P100" or ""
    internet: bool
    datasets: tuple[str, ...]  # owner/slug of each attached dataset
    kernels: tuple[str, ...]  # owner/slug of each notebook whose output is attached
    packages: frozenset[str]  # importable top-level names

    def settings(self) -> str:
        """The accelerator and internet settings, as Kaggle's Settings panel names them: "GPU T4 x2, internet on"."""
        accelerator = "GPU T4 x2" if self.gpus == 2 else (f"GPU {self.gpu_name}" if self.gpus else "no accelerator")
        return f"{accelerator}, internet {'on' if self.internet else 'off'}"

    def describe(self) -> str:
        inputs = [source.split("/")[1] for source in self.datasets + self.kernels]
        return f"{self.settings()}, inputs: {', '.join(inputs) or 'none'}"


def read_metadata(nb: Notebook, metadata_dir: Path = METADATA_DIR) -> dict:
    return json.loads((metadata_dir / nb.name / "kernel-metadata.json").read_text())


def session(nb: Notebook, metadata_dir: Path = METADATA_DIR, pins: Path = PINS) -> Session:
    meta = read_metadata(nb, metadata_dir)
    two_t4 = meta["enable_gpu"] and meta.get("machine_shape") == GPU_MACHINE_SHAPE
    gpus = 2 if two_t4 else (1 if meta["enable_gpu"] else 0)
    return Session(gpus=gpus, gpu_name="Tesla T4" if two_t4 else ("Tesla P100" if gpus else ""),
                   internet=bool(meta["enable_internet"]), datasets=tuple(meta["dataset_sources"]),
                   kernels=tuple(meta["kernel_sources"]), packages=kaggle_packages(pins))


@functools.cache
def kaggle_packages(pins: Path = PINS) -> frozenset[str]:
    """The top-level names importable on Kaggle: the standard library, the pinned distributions and everything they
    require, and Kaggle's own `kaggle_secrets`."""
    pinned = [re.split(r"[=<>!~ ;\[]", line, maxsplit=1)[0] for line in pins.read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    return frozenset(importable(tuple(pinned)) | set(sys.stdlib_module_names) | {"kaggle_secrets"})


@functools.cache
def importable(distributions: tuple[str, ...]) -> frozenset[str]:
    """The top-level names that installing `distributions` makes importable, with everything they require (read
    from this environment's package metadata; a distribution not installed here counts by its usual name)."""
    import importlib.metadata as md

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    todo, dists = list(distributions), set()
    while todo:
        name = normal(todo.pop())
        if name in dists:
            continue
        dists.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [re.split(r"[=<>!~ ;\[(]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r]
    names = {top for top, owners in md.packages_distributions().items() if any(normal(d) in dists for d in owners)}
    return frozenset(names | {d.replace("-", "_") for d in dists})


def code_cells(nb: Notebook, notebook_dir: Path = ROOT / "notebooks") -> list[tuple[int, str]]:
    """(index among all cells, source) of every code cell."""
    cells = json.loads((notebook_dir / nb.filename).read_text())["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def first_cell(nb: Notebook, notebook_dir: Path = ROOT / "notebooks") -> str:
    return "".join(json.loads((notebook_dir / nb.filename).read_text())["cells"][0]["source"])


def python_of(source: str) -> list[str]:
    """The Python a cell runs: IPython syntax (`!cmd`, `%magic`) made plain, and a `%%writefile` script apart."""
    if source.startswith("%%writefile"):
        return [source.split("\n", 1)[1]]
    from IPython.core.inputtransformer2 import TransformerManager

    return [TransformerManager().transform_cell(source)]


# ---------------------------------------------------------------------------------------------------------- imports


def imports_in(code: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, guarded by `except ImportError`) of every import in `code`, at any depth."""
    tree = ast.parse(code)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any("ImportError" in ast.dump(h.type) or "ModuleNotFoundError"
                                             in ast.dump(h.type) for h in node.handlers if h.type is not None):
            guarded |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in guarded) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # inside the package: relative to distrinews
                names = [node.module] if node.module else [alias.name for alias in node.names]
                found += [(f"distrinews.{name}", node.lineno, id(node) in guarded) for name in names]
            elif node.module == "distrinews":
                found += [(f"distrinews.{alias.name}", node.lineno, id(node) in guarded) for alias in node.names]
            else:
                found.append((node.module, node.lineno, id(node) in guarded))
    return found


def packages_needed(code: str) -> dict[str, str]:
    """{top-level package: where it is imported} for `code` and, through every library module it imports, the
    library code it runs. An import inside `try: ... except ImportError:` has a fallback and is not needed."""
    needed: dict[str, str] = {}
    seen: set[str] = set()
    todo = [("this cell", name, line, guarded) for name, line, guarded in imports_in(code)]
    while todo:
        where, name, line, guarded = todo.pop()
        top = name.split(".")[0]
        if top == "distrinews":
            module = name.split(".")[1] if "." in name else "__init__"
            path = PACKAGE_DIR / f"{module}.py"
            if module not in seen and path.is_file():
                seen.add(module)
                todo += [(f"distrinews/{module}.py", n, l, g) for n, l, g in imports_in(path.read_text())]
        elif not guarded:
            needed.setdefault(top, f"{where} line {line}")
    return needed


def installed_by(cells: list[tuple[int, str]]) -> set[str]:
    """The top-level names a notebook's own `%pip install NAME ...` cells make importable."""
    names: list[str] = []
    for _, source in cells:
        for match in INSTALL.finditer(source):
            names += [re.split(r"[=<>!~\[]", word.strip("\"'"))[0] for word in match.group(1).split()
                      if not word.startswith(("-", "{", "$"))]
    return importable(tuple(names))


# ---------------------------------------------------------------------------------------------------------- presets


def lay_out_inputs(s: Session, root: Path) -> None:
    """Empty stand-ins for the session's inputs, where Kaggle mounts them (the contract reads only their names)."""
    for source in s.datasets:
        folder = root / source.split("/")[1]
        folder.mkdir(parents=True, exist_ok=True)
        if source == AG_NEWS_DATASET:
            for name in ("train.csv", "test.csv"):
                (folder / name).write_text('Class Index,Title,Description\n3,"A title","A description"\n')
        else:
            (folder / "distrinews-0.1.0-py3-none-any.whl").write_bytes(b"")
    for source in s.kernels:
        checkpoint = root / source.split("/")[1] / DDP_RUN / "checkpoint"
        checkpoint.mkdir(parents=True, exist_ok=True)
        (checkpoint / "config.json").write_text("{}")


@contextlib.contextmanager
def simulated(s: Session):
    """The course's look-ups answer as they would in session `s`: Kaggle's inputs under a fresh root (yielded),
    internet on or off, Kaggle's packages, an empty Hugging Face cache, no local AG News folder, s.gpus GPUs."""
    from huggingface_hub import constants

    from . import data

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp) / "input"
        lay_out_inputs(s, root)
        stack.enter_context(mock.patch.dict(os.environ, {"KAGGLE_KERNEL_RUN_TYPE": "Batch"}))  # restored after
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", course.PRESET_ENV, data.LOCAL_DATA_ENV):
            os.environ.pop(name, None)
        find_kaggle_dir = data.kaggle_dataset_dir
        stack.enter_context(mock.patch.object(data, "kaggle_dataset_dir", lambda *a: find_kaggle_dir(root)))
        stack.enter_context(mock.patch.object(course, "internet_reachable", lambda *a, **k: s.internet))
        stack.enter_context(mock.patch.object(course, "package_installed", lambda name: name in s.packages))
        stack.enter_context(mock.patch.object(data, "local_dataset_dir", lambda: None))
        stack.enter_context(mock.patch.object(constants, "HF_HUB_CACHE", str(Path(tmp) / "hub")))
        stack.enter_context(mock.patch("torch.cuda.device_count", lambda: s.gpus))
        gpu = {"name": s.gpu_name, "precision": "fp16"}
        stack.enter_context(mock.patch.object(course, "_last_hardware", {"gpus": [gpu] * s.gpus, "cpu_count": 4}))
        yield str(root)


def resolved_preset(nb: Notebook, s: Session) -> str:
    """The preset the notebook's `course.resolve_preset(PRESET)` cell picks in session `s`."""
    with simulated(s), mock.patch.object(course, "_current_notebook", nb.number), \
            contextlib.redirect_stdout(io.StringIO()):
        return course.resolve_preset(None)


def presets_used(source: str, preset: str) -> set[str]:
    """The presets a cell runs: the resolved one wherever it names PRESET, and any named literally."""
    used = {preset} if re.search(r"\bPRESET\b", source) else set()
    return used | {name for name in re.findall(r"--preset[ =]([\w-]+)", source) if name in PRESETS}


def setting_line(nb: Notebook, s: Session) -> str:
    """The one line of a notebook's first cell that says what its Kaggle session is and what it runs there."""
    preset = resolved_preset(nb, s)
    line = f"**On Kaggle:** {s.describe()}; the `{preset}` preset there"
    if s.internet:
        offline = resolved_preset(nb, Session(**{**s.__dict__, "internet": False}))
        if offline != preset:
            line += f" (with internet off: `{offline}`)"
    return line + "."


# ---------------------------------------------------------------------------------------------------------- contract


def problems(nb: Notebook, s: Session | None = None, notebook_dir: Path = ROOT / "notebooks") -> list[str]:
    """Every way notebook `nb` would stop on its Kaggle session, or run something else than it says."""
    s = s or session(nb)
    cells = code_cells(nb, notebook_dir)
    found: list[str] = []

    def problem(index: int | None, text: str) -> None:
        found.append(f"{nb.name}{f' cell {index}' if index is not None else ''}: {text}")

    # The accelerator: Kaggle's torch has no kernels for the P100 it hands out without a machine shape.
    if s.gpus and s.gpu_name != "Tesla T4":
        problem(None, f"its metadata asks for a GPU without machine_shape {GPU_MACHINE_SHAPE!r}: Kaggle may give a "
                      f"{s.gpu_name}, which Kaggle's torch cannot run")
    # The setup cell installs the library from the attached wheel.
    if not any(source.split("/")[1] == LIBRARY_DATASET for source in s.datasets):
        problem(cells[0][0], f"the setup cell installs the library from the {LIBRARY_DATASET} dataset, which the "
                             f"session does not attach")
    for index, source in cells:
        if "github.com/OWNER" in source:
            problem(index, "installs from a placeholder repository URL (github.com/OWNER), which does not exist")

    # The preset the notebook resolves there, and what that preset loads.
    preset = resolved_preset(nb, s)
    wanted = min(nb.gpus, s.gpus)
    if wanted and preset in GPU_PRESETS.values() and preset != gpu_preset(wanted):
        problem(None, f"resolves the {preset} preset on {s.gpus} GPUs, but is written for {nb.gpus}: it would "
                      f"train as {preset}")
    resolving = next(index for index, source in cells if "course.resolve_preset(" in source)
    with simulated(s) as root:
        for index, source in cells:
            if index <= resolving:  # the parameters cell and the resolve cell name PRESET; the cells after run it
                continue
            for name in sorted(presets_used(source, preset)):
                config = PRESETS[name]
                where, why = course.find_model(config.model_name)
                if not where:
                    problem(index, f"the {name} preset loads {config.model_name}, which cannot load on its Kaggle "
                                   f"session ({s.describe()}): {why}")
                if config.data_source == "auto" and not course.find_real_data(root)[0]:
                    problem(index, f"the {name} preset would train on SYNTHETIC data: the session attaches no AG "
                                   f"News and has no internet for the hub")

    # Packages: what the cells import, down through the library code they run.
    installable = installed_by(cells) if s.internet else set()
    for index, source in cells:
        for code in python_of(source):
            for package, where in sorted(packages_needed(code).items()):
                if package not in s.packages and package not in installable:
                    problem(index, f"needs {package} ({where}), which Kaggle's image lacks and the notebook does "
                                   f"not install{'' if s.internet else ' (internet is off)'}")

    # The notebook output it reads: attached, and written where this notebook looks.
    if nb.reads_output_of:
        source_nb = notebook(nb.reads_output_of)
        if kernel_id(source_nb) not in s.kernels:
            problem(None, f"reads the output of {source_nb.name}, which its metadata does not attach")
        if not any(f"--output-dir {DDP_RUN}" in src for _, src in code_cells(source_nb, notebook_dir)):
            problem(None, f"reads {DDP_RUN} from {source_nb.name}'s output, and {source_nb.name} writes no {DDP_RUN}")

    # The first cell says what the session is and what runs there.
    line = setting_line(nb, s)
    if line not in first_cell(nb, notebook_dir):
        problem(0, f"the first cell must say, in one line: {line}")
    return found


def all_problems() -> list[str]:
    return [text for nb in NOTEBOOKS for text in problems(nb)]
