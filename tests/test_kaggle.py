"""Kaggle: kernel metadata generated from course.NOTEBOOKS, the library as a Kaggle dataset, and the push.

The staging tests use placeholder notebooks (a copy of the course's names with the shared first cells), so the
logic is tested whatever state the real notebooks are in; one dry run goes over the real notebooks/ folder.
No test reaches the network: pushes go to a fake `kaggle` executable that records what it was asked.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, run_cli

from distrinews import cli, kaggle
from distrinews.course import LIBRARY_DATASET, NOTEBOOKS, PARAMETERS_CELL, SETUP_CELL, Notebook, notebook

IDS = [nb.name for nb in NOTEBOOKS]
OWNER = "course-owner"
SECRET = "fake-kaggle-key-0123456789"
NO_CREDENTIALS = {"KAGGLE_API_TOKEN": "", "KAGGLE_USERNAME": "", "KAGGLE_KEY": "", "KAGGLE_CONFIG_DIR": "",
                  "XDG_CONFIG_HOME": "", "DISTRINEWS_KAGGLE_OWNER": "", "DISTRINEWS_KAGGLE_CLI": ""}


def committed(nb: Notebook) -> dict:
    return json.loads((kaggle.METADATA_DIR / nb.name / kaggle.KERNEL_METADATA).read_text())


# ---- the committed metadata ---------------------------------------------------------------------------------

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_committed_metadata_is_valid(nb):
    meta = committed(nb)
    assert kaggle.kernel_problems(meta, nb, kaggle.DEFAULT_OWNER) == []
    assert meta["id"].split("/")[1] == kaggle.slugify(meta["title"])  # Kaggle derives the slug from the title
    assert nb.number in meta["title"] and 5 <= len(meta["title"]) <= 50


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_committed_metadata_names_a_notebook_of_the_checkout(nb):
    assert (ROOT / "notebooks" / committed(nb)["code_file"]).is_file()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=IDS)
def test_gpu_notebooks_ask_for_two_t4s_and_cpu_notebooks_for_no_gpu(nb):
    meta = committed(nb)
    if nb.gpus:
        assert meta["enable_gpu"] is True and meta["machine_shape"] == "NvidiaTeslaT4"
    else:
        assert meta["enable_gpu"] is False and meta["machine_shape"] is None
    assert meta["enable_internet"] is nb.needs_internet
    assert f"{kaggle.DEFAULT_OWNER}/{LIBRARY_DATASET}" in meta["dataset_sources"]  # every notebook gets the library
    assert ("amananandrai/ag-news-classification-dataset" in meta["dataset_sources"]) is nb.needs_data


def test_committed_metadata_is_what_the_generator_writes(tmp_path):
    """One source of truth: regenerate from course.NOTEBOOKS and compare byte for byte, folders included."""
    run_cli("publish", "kaggle", "--write-metadata", str(tmp_path))
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    ours = sorted(p.relative_to(kaggle.METADATA_DIR) for p in kaggle.METADATA_DIR.rglob("*") if p.is_file())
    assert ours == fresh, "kernel-metadata/ has other files than the generator writes"
    for path in fresh:
        assert (kaggle.METADATA_DIR / path).read_text() == (tmp_path / path).read_text(), (
            f"kernel-metadata/{path} drifted: run `distrinews publish kaggle --write-metadata`")
    kaggle.check_committed_metadata()  # what publish checks before staging


def test_the_generator_drops_the_folder_of_a_removed_notebook(tmp_path):
    kaggle.write_metadata(tmp_path)
    (tmp_path / "99_gone").mkdir()
    (tmp_path / "99_gone" / kaggle.KERNEL_METADATA).write_text("{}")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("not generated")
    kaggle.write_metadata(tmp_path)
    assert not (tmp_path / "99_gone").exists() and (tmp_path / "notes" / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "notes") == sorted(IDS)


def test_stale_committed_metadata_is_refused(tmp_path):
    kaggle.write_metadata(tmp_path)
    path = tmp_path / NOTEBOOKS[5].name / kaggle.KERNEL_METADATA
    path.write_text(path.read_text().replace('"NvidiaTeslaT4"', '"NvidiaTeslaP100"'))
    with pytest.raises(kaggle.PublishError, match=f"out of date for {NOTEBOOKS[5].name}.*--write-metadata"):
        kaggle.check_committed_metadata(committed=tmp_path)


# ---- the rules ----------------------------------------------------------------------------------------------

GPU_NB, CPU_NB = notebook("05"), notebook("08")


@pytest.mark.parametrize("nb,change,problem", [
    (GPU_NB, {"machine_shape": None}, "machine_shape 'NvidiaTeslaT4'"),
    (GPU_NB, {"machine_shape": "NvidiaTeslaP100"}, "machine_shape 'NvidiaTeslaT4'"),
    (CPU_NB, {"enable_gpu": True, "machine_shape": "NvidiaTeslaT4"}, "must not ask for a GPU"),
    (GPU_NB, {"title": "05 Train on two GPUs"}, "Kaggle derives the slug from the title"),
    (GPU_NB, {"enable_gpu": "true"}, "enable_gpu must be bool"),
    (GPU_NB, {"dataset_sources": ["amananandrai/ag-news-classification-dataset"]}, "attach the library dataset"),
    (CPU_NB, {"dataset_sources": [f"{OWNER}/{LIBRARY_DATASET}"]}, "must attach amananandrai"),
    (GPU_NB, {"enable_internet": False}, "enable_internet must be True"),
    (GPU_NB, {"code_file": "train.ipynb"}, "code_file must be"),
    (GPU_NB, {"id": f"someone-else/{kaggle.slugify(kaggle.kaggle_title(GPU_NB))}"}, "must start with the owner"),
    (GPU_NB, {"kernel_type": "script"}, "kernel_type 'notebook'"),
    (GPU_NB, {"competition_sources": []}, "fields must be exactly"),
], ids=["gpu-without-shape", "gpu-on-p100", "cpu-asks-gpu", "title-slug", "bool-as-string", "no-library",
        "no-ag-news", "internet", "code-file", "owner", "script", "extra-field"])
def test_validation_names_what_is_wrong(nb, change, problem):
    meta = {**kaggle.kernel_metadata(nb, OWNER), **change}
    problems = kaggle.kernel_problems(meta, nb, OWNER)
    assert any(problem in p for p in problems), problems
    assert kaggle.kernel_problems(kaggle.kernel_metadata(nb, OWNER), nb, OWNER) == []


def test_code_file_must_be_staged_beside_the_metadata(tmp_path):
    meta = kaggle.kernel_metadata(GPU_NB, OWNER)
    assert any("is not in" in p for p in kaggle.kernel_problems(meta, GPU_NB, OWNER, tmp_path))
    (tmp_path / GPU_NB.filename).write_text("{}")
    assert kaggle.kernel_problems(meta, GPU_NB, OWNER, tmp_path) == []


@pytest.mark.parametrize("title,slug", [
    ("02 Inspect DistilBERT", "02-inspect-distilbert"),
    ("03 Train the single-GPU baseline", "03-train-the-single-gpu-baseline"),
    ("1,000 steps -- fp16/bf16 (T4)!", "1000-steps-fp16-bf16-t4"),  # python-slugify drops a thousands comma
    ("What's new: it's fine", "what-s-new-it-s-fine"),
])
def test_slugify_follows_kaggles_slug_rules(title, slug):
    assert kaggle.slugify(title) == slug


def test_a_long_title_keeps_its_headline_and_a_hopeless_one_is_refused():
    colon = Notebook("07", "x", "Measure what DDP buys: throughput, scaling efficiency, bandwidth", "", 2, True, True)
    assert kaggle.kaggle_title(colon) == "07 Measure what DDP buys"
    hopeless = Notebook("07", "x", "Measure " + "very " * 10 + "much", "", 2, True, True)
    with pytest.raises(kaggle.PublishError, match="shorten it in distrinews.course.NOTEBOOKS"):
        kaggle.kaggle_title(hopeless)


# ---- staging: the dry run through the real CLI --------------------------------------------------------------

def write_placeholder(path: Path, nb: Notebook) -> None:
    """A notebook with the course's anatomy essentials: the H1, the setup cell first, the parameters cell."""
    book = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"},
                                              "language_info": {"name": "python"}})
    book.cells = [nbformat.v4.new_markdown_cell(f"# {nb.title}"), nbformat.v4.new_code_cell(SETUP_CELL),
                  nbformat.v4.new_code_cell(PARAMETERS_CELL, metadata={"tags": ["parameters"]})]
    nbformat.write(book, path)


@pytest.fixture(scope="module")
def placeholder_notebooks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notebooks")
    for nb in NOTEBOOKS:
        write_placeholder(folder / nb.filename, nb)
    return folder


@pytest.fixture(scope="module")
def dry_run(placeholder_notebooks, tmp_path_factory):
    stage = tmp_path_factory.mktemp("stage")
    proc = run_cli("publish", "kaggle", "--dry-run", "--owner", OWNER, "--notebooks", str(placeholder_notebooks),
                   "--stage-dir", str(stage), env=NO_CREDENTIALS)  # a dry run needs neither credentials nor CLI
    return stage, proc.stdout


def printed_commands(stdout: str) -> list[str]:
    return [line.strip().split("    #")[0] for line in stdout.splitlines() if line.startswith("  kaggle ")]


def test_dry_run_stages_a_pushable_folder_per_notebook(dry_run, placeholder_notebooks):
    stage, stdout = dry_run
    assert sorted(p.name for p in (stage / "kernels").iterdir()) == sorted(IDS)
    for nb in NOTEBOOKS:
        folder = stage / "kernels" / nb.name
        assert sorted(p.name for p in folder.iterdir()) == sorted([nb.filename, kaggle.KERNEL_METADATA])
        assert (folder / nb.filename).read_bytes() == (placeholder_notebooks / nb.filename).read_bytes()
        meta = json.loads((folder / kaggle.KERNEL_METADATA).read_text())
        assert meta["id"].startswith(f"{OWNER}/") and f"{OWNER}/{LIBRARY_DATASET}" in meta["dataset_sources"]
        assert kaggle.kernel_problems(meta, nb, OWNER, folder) == []
        # the owner is the only difference from the committed file
        assert json.dumps(meta).replace(OWNER, kaggle.DEFAULT_OWNER) == json.dumps(committed(nb))
        assert f"staged kernel {meta['id']} in {folder}" in stdout
    assert "dry run: nothing pushed" in stdout


def test_dry_run_stages_the_library_dataset(dry_run):
    folder = dry_run[0] / "library"
    meta = json.loads((folder / kaggle.DATASET_METADATA).read_text())
    assert meta["id"] == f"{OWNER}/{LIBRARY_DATASET}" and meta["licenses"] == [{"name": "other"}]
    assert 6 <= len(meta["title"]) <= 50 and 20 <= len(meta["subtitle"]) <= 80 and "MIT" in meta["description"]
    wheels = list(folder.glob("*.whl"))
    assert len(wheels) == 1 and sorted(p.name for p in folder.iterdir()) == sorted([wheels[0].name,
                                                                                     kaggle.DATASET_METADATA])
    with zipfile.ZipFile(wheels[0]) as archive:
        names = set(archive.namelist())
    modules = {f"distrinews/{p.name}" for p in (ROOT / "lib" / "distrinews").glob("*.py")}
    assert modules <= names and "distrinews/course.py" in names and "distrinews/train_ddp.py" in names


def test_dry_run_prints_the_exact_commands_library_first(dry_run):
    stage, stdout = dry_run
    library = stage / "library"
    commands = printed_commands(stdout)
    wheel = next(library.glob("*.whl")).name
    assert commands[:3] == [
        f"kaggle datasets status {OWNER}/{LIBRARY_DATASET}",
        f"kaggle datasets version -p {library} -m '{wheel} (distrinews publish kaggle)'",
        f"kaggle datasets create -p {library} --public",
    ]
    assert commands[3:] == [f"kaggle kernels push -p {stage / 'kernels' / nb.name}" for nb in NOTEBOOKS]


def test_dry_run_of_some_private_notebooks_without_the_library(placeholder_notebooks, tmp_path):
    proc = run_cli("publish", "kaggle", "--dry-run", "--only", "05", "setup", "--skip-library", "--private",
                   "--no-run", "--owner", OWNER, "--notebooks", str(placeholder_notebooks),
                   "--stage-dir", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kernels"]
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == ["00_setup", "05_ddp_training"]
    meta = json.loads((tmp_path / "kernels" / "00_setup" / kaggle.KERNEL_METADATA).read_text())
    assert meta["is_private"] is True and committed(notebook("00"))["is_private"] is False
    assert printed_commands(proc.stdout) == [f"kaggle kernels push -p {tmp_path / 'kernels' / name} --no-run"
                                             for name in ("05_ddp_training", "00_setup")]


def test_a_private_library_is_created_private(tmp_path):
    assert "--public" in kaggle.library_commands(tmp_path, OWNER, "notes", private=False)["create"]
    assert "--public" not in kaggle.library_commands(tmp_path, OWNER, "notes", private=True)["create"]


def test_a_notebook_with_outputs_is_refused(placeholder_notebooks, tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(placeholder_notebooks, folder)
    book = nbformat.read(folder / GPU_NB.filename, as_version=4)
    book.cells[2].outputs = [nbformat.v4.new_output("stream", text="preset: smoke\n")]
    nbformat.write(book, folder / GPU_NB.filename)
    proc = run_cli("publish", "kaggle", "--dry-run", "--only", "05", "--skip-library", "--notebooks", str(folder),
                   "--stage-dir", str(tmp_path / "stage"), check=False)
    assert proc.returncode == 2
    assert "05_ddp_training.ipynb cell 2 has outputs" in proc.stderr and "Traceback" not in proc.stderr


def test_a_notebook_without_the_setup_cell_is_refused(placeholder_notebooks, tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(placeholder_notebooks, folder)
    book = nbformat.read(folder / GPU_NB.filename, as_version=4)
    del book.cells[1]
    nbformat.write(book, folder / GPU_NB.filename)
    proc = run_cli("publish", "kaggle", "--dry-run", "--only", "05", "--skip-library", "--notebooks", str(folder),
                   "--stage-dir", str(tmp_path / "stage"), check=False)
    assert proc.returncode == 2 and "course.SETUP_CELL" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--only", "42"], "no notebook '42'"),
    (["--owner", "not a user"], "is not a Kaggle username"),
])
def test_bad_arguments_exit_2_with_one_clear_line(args, message, tmp_path):
    proc = run_cli("publish", "kaggle", "--dry-run", "--skip-library", *args, "--stage-dir", str(tmp_path),
                   check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_dry_run_without_the_course_extra_says_what_to_install(placeholder_notebooks, tmp_path, monkeypatch,
                                                                capsys):
    """Regression: without nbformat (the `course` extra) the dry run died with ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "nbformat", None)  # as if nbformat were not installed
    code = cli.main(["publish", "kaggle", "--dry-run", "--only", "05", "--skip-library", "--owner", OWNER,
                     "--notebooks", str(placeholder_notebooks), "--stage-dir", str(tmp_path / "stage")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert 'needs nbformat, which is not installed here: pip install "distrinews[course]"' in err
    assert not (tmp_path / "stage").exists()  # it fails before any work


def package_imports(module: str) -> set[str]:
    """The distrinews modules that lib/distrinews/MODULE.py imports, at the top or inside functions."""
    tree = ast.parse((ROOT / "lib" / "distrinews" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distrinews."):
            found.add(node.module.split(".")[1])
    return found


def test_the_publishing_modules_do_not_import_each_other():
    """Regression: kaggle imported serving and serving imported kaggle; both now share `publishing`."""
    for a, b in itertools.combinations(("serving", "kaggle", "publishing"), 2):
        assert not (b in package_imports(a) and a in package_imports(b)), f"{a} and {b} import each other"
    assert package_imports("publishing") == set()  # the shared part sits below both
    assert "serving" not in package_imports("kaggle")


def test_dry_run_over_the_real_notebooks(tmp_path):
    """Done means: the course's own notebooks/ stage and validate, library included."""
    proc = run_cli("publish", "kaggle", "--dry-run", "--stage-dir", str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(printed_commands(proc.stdout)) == 3 + len(NOTEBOOKS)
    assert len(list((tmp_path / "library").glob("distrinews-*.whl"))) == 1


# ---- the library installs on its own ------------------------------------------------------------------------

def fresh_venv(path: Path) -> Path:
    """A virtual environment that sees nothing of this one: its own pip, no distrinews, no PYTHONPATH."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
    return path / "bin" / "python"


def clean_env() -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.mark.slow
def test_the_setup_cell_installs_the_staged_wheel_into_a_fresh_venv(dry_run, tmp_path):
    """Kaggle's layout, /kaggle/input/datasets/OWNER/distrinews-lib, made under tmp; then every module imports."""
    inputs = tmp_path / "input"
    shutil.copytree(dry_run[0] / "library", inputs / "datasets" / OWNER / LIBRARY_DATASET)
    python = fresh_venv(tmp_path / "venv")
    cell = SETUP_CELL.replace("/kaggle/input", str(inputs))
    assert cell != SETUP_CELL
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([str(python), "-c", cell + "\nprint('from', course.__file__)"], cwd=work, env=clean_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "installing distrinews from" in proc.stdout and f"{OWNER}/{LIBRARY_DATASET}" in proc.stdout
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    assert f"from {site / 'distrinews' / 'course.py'}" in proc.stdout  # the wheel's copy, not the checkout's

    # The Kaggle image brings torch, transformers...: lend this environment's packages, as a path only (a .pth
    # line adds a folder without running the .pth files in it, so the checkout's editable install stays out).
    ours = Path(subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_dependencies.pth").write_text(f"{ours}\n")
    probe = textwrap.dedent("""\
        import importlib, pathlib, pkgutil, distrinews
        names = sorted(m.name for m in pkgutil.iter_modules(distrinews.__path__))
        for name in names:
            importlib.import_module(f"distrinews.{name}")
        print(pathlib.Path(distrinews.__file__).parent, " ".join(names))
    """)
    proc = subprocess.run([str(python), "-c", probe], cwd=work, env=clean_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, names = proc.stdout.split()[0], proc.stdout.split()[1:]
    assert Path(where) == site / "distrinews"
    assert sorted(names) == sorted(p.stem for p in (ROOT / "lib" / "distrinews").glob("*.py") if p.stem != "__init__")
    command = subprocess.run([str(python.parent / "distrinews"), "train", "--help"], cwd=work, env=clean_env(),
                             capture_output=True, text=True, timeout=600)
    assert command.returncode == 0 and "--preset" in command.stdout, command.stderr[-3000:]
    space = subprocess.run([str(python), "-c", "from distrinews.serving import SPACE_SOURCE; print(SPACE_SOURCE)"],
                           cwd=work, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert Path(space.stdout.strip()) == site / "distrinews" / "space", space.stderr[-3000:]  # setup.py packed it
    assert (site / "distrinews" / "space" / "app.py").read_text() == (ROOT / "space" / "app.py").read_text()


# ---- pushing: credentials, the CLI, the order ---------------------------------------------------------------

FAKE_KAGGLE = '''\
import json, os, pathlib, sys
args = sys.argv[1:]
log = pathlib.Path(os.environ["FAKE_KAGGLE_LOG"])
calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
with log.open("a") as out:
    out.write(json.dumps(args) + "\\n")
mode = os.environ.get("FAKE_KAGGLE_MODE", "new")
if args[:2] == ["datasets", "status"]:
    uploaded = any(call[:2] in (["datasets", "create"], ["datasets", "version"]) for call in calls)
    if mode == "new" and not uploaded:
        print("404 Client Error: Not Found for url: https://www.kaggle.com/api/v1/datasets/status", file=sys.stderr)
        sys.exit(1)
    print("ready")
elif args[:2] in (["datasets", "create"], ["datasets", "version"]):
    folder = pathlib.Path(args[args.index("-p") + 1])
    meta = json.loads((folder / "dataset-metadata.json").read_text())
    assert len(list(folder.glob("*.whl"))) == 1
    print("Dataset is being created. Please check progress at https://www.kaggle.com/datasets/" + meta["id"])
elif args[:2] == ["kernels", "push"]:
    folder = pathlib.Path(args[args.index("-p") + 1])
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    if not (folder / meta["code_file"]).is_file():
        print("Source file not found", file=sys.stderr)
        sys.exit(1)
    if mode == "push-error":
        print("Kernel push error: Notebook not found")  # the real CLI exits 0 here
    else:
        print("Kernel version 1 successfully pushed.  Please check progress at https://www.kaggle.com/code/"
              + meta["id"])
else:
    sys.exit(f"unexpected command {args}")
'''


@pytest.fixture
def fake_kaggle(tmp_path) -> dict:
    script = tmp_path / "fake-kaggle"
    script.write_text(f"#!{sys.executable}\n{FAKE_KAGGLE}")
    script.chmod(0o755)
    return {**NO_CREDENTIALS, "DISTRINEWS_KAGGLE_CLI": str(script), "FAKE_KAGGLE_LOG": str(tmp_path / "calls.jsonl"),
            "KAGGLE_USERNAME": OWNER, "KAGGLE_KEY": SECRET, "HOME": str(tmp_path)}


def calls(fake: dict) -> list[list[str]]:
    return [json.loads(line) for line in Path(fake["FAKE_KAGGLE_LOG"]).read_text().splitlines()]


def test_push_creates_the_library_waits_for_it_then_pushes_every_kernel(fake_kaggle, placeholder_notebooks,
                                                                        tmp_path):
    stage = tmp_path / "stage"
    proc = run_cli("publish", "kaggle", "--notebooks", str(placeholder_notebooks), "--only", "05", "08",
                   "--stage-dir", str(stage), env=fake_kaggle)  # owner from $KAGGLE_USERNAME
    dataset = f"{OWNER}/{LIBRARY_DATASET}"
    assert calls(fake_kaggle) == [
        ["datasets", "status", dataset],  # 404: not there yet
        ["datasets", "create", "-p", str(stage / "library"), "--public"],
        ["datasets", "status", dataset],  # ready: only now may kernels attach it
        ["kernels", "push", "-p", str(stage / "kernels" / "05_ddp_training")],
        ["kernels", "push", "-p", str(stage / "kernels" / "08_inference")],
    ]
    assert "Kaggle credentials: $KAGGLE_USERNAME and $KAGGLE_KEY" in proc.stdout
    assert f"https://www.kaggle.com/code/{OWNER}/05-train-distilbert-on-two-gpus-with-ddp" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


def test_push_makes_a_new_version_of_an_existing_library(fake_kaggle, placeholder_notebooks, tmp_path):
    stage = tmp_path / "stage"
    run_cli("publish", "kaggle", "--owner", OWNER, "--notebooks", str(placeholder_notebooks), "--only", "00",
            "-m", "new notebooks", "--stage-dir", str(stage), env={**fake_kaggle, "FAKE_KAGGLE_MODE": "existing"})
    assert [call[:2] for call in calls(fake_kaggle)] == [["datasets", "status"], ["datasets", "version"],
                                                          ["datasets", "status"], ["kernels", "push"]]
    assert calls(fake_kaggle)[1] == ["datasets", "version", "-p", str(stage / "library"), "-m", "new notebooks"]


def test_an_error_the_kaggle_cli_reports_with_exit_0_fails_the_push(fake_kaggle, placeholder_notebooks, tmp_path):
    proc = run_cli("publish", "kaggle", "--notebooks", str(placeholder_notebooks), "--only", "05", "08",
                   "--skip-library", "--stage-dir", str(tmp_path / "stage"), check=False,
                   env={**fake_kaggle, "FAKE_KAGGLE_MODE": "push-error"})
    assert proc.returncode == 2 and "`kaggle kernels push` failed" in proc.stderr
    assert len(calls(fake_kaggle)) == 1  # stops at the first failure


def test_push_without_credentials_exits_2_and_says_where_to_put_them(tmp_path, placeholder_notebooks):
    stage = tmp_path / "stage"
    proc = run_cli("publish", "kaggle", "--notebooks", str(placeholder_notebooks), "--stage-dir", str(stage),
                   check=False, env={**NO_CREDENTIALS, "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stdout
    for hint in ("no Kaggle credentials", "KAGGLE_API_TOKEN", "kaggle.json", "--dry-run"):
        assert hint in proc.stderr
    assert not stage.exists()  # it fails before any work


def test_credentials_are_found_where_the_kaggle_cli_looks_and_never_printed(tmp_path, monkeypatch):
    for name in NO_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(kaggle.PublishError):
        kaggle.find_credentials()
    (tmp_path / ".config" / "kaggle").mkdir(parents=True)
    (tmp_path / ".config" / "kaggle" / "kaggle.json").write_text(json.dumps({"username": "u", "key": SECRET}))
    assert kaggle.find_credentials() == str(tmp_path / ".config" / "kaggle" / "kaggle.json")
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "access_token").write_text(SECRET)
    assert kaggle.find_credentials() == str(tmp_path / ".kaggle" / "access_token")
    monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET)
    assert kaggle.find_credentials() == "$KAGGLE_API_TOKEN"


def test_push_without_the_kaggle_cli_says_pip_install_kaggle(fake_kaggle, placeholder_notebooks, tmp_path):
    if (Path(sys.executable).parent / "kaggle").exists():
        pytest.skip("the Kaggle CLI is installed in this environment")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**fake_kaggle, "DISTRINEWS_KAGGLE_CLI": "", "PATH": str(empty)}
    proc = run_cli("publish", "kaggle", "--notebooks", str(placeholder_notebooks), "--skip-library",
                   "--stage-dir", str(tmp_path / "stage"), check=False, env=env)
    assert proc.returncode == 2 and "pip install kaggle" in proc.stderr
