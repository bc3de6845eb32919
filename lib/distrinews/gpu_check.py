"""`distrinews gpu-check` (`make gpu-check`): the GPU paths CPU tests cannot reach, in at most 8 minutes on one GPU.

Runs on a bare GPU machine, from the checkout: `PYTHONPATH=lib python3 -m distrinews gpu-check`, with PyTorch
(CUDA), transformers, onnxruntime, pandas and matplotlib, and nothing from the hub or the network. A step whose
optional package is missing (gradio for `serve`, say) is reported SKIPPED with the package named, never passed.
Each step runs a real entry point in a subprocess, on the tiny model and synthetic news, and is judged on numbers:

- every GPU's architecture is in `torch.cuda.get_arch_list()` (else the first kernel dies: "no kernel image");
- fp16 training reaches the smoke accuracy floor, and the GradScaler let its optimizer steps through (the
  optimizer's own step count in the checkpoint against the steps run); bf16 where the GPU has 8.0+;
- a run killed mid-epoch and resumed ends with the uninterrupted run's confusion matrix;
- one-rank NCCL runs (`torchrun --nproc_per_node=1`) of the training program, of evaluation, of notebook 04's
  collectives and of notebook 10's scripts, extracted from the notebooks' `%%writefile` cells at run time: a
  one-rank NCCL group still refuses CPU tensors and runs eager init, barriers and `all_gather_object`;
- two DDP ranks sharing the GPU (`DISTRINEWS_BACKEND=gloo`: NCCL refuses two ranks on one device) take one SGD
  step equal to one process's step on the same global batch, as notebook 04 proves gradient equivalence;
- prediction, the web app, `bench train`, `bench infer` and `bench allreduce` on the GPU.

It writes one report, `RESULTS/gpu_check-<label>-<date>.json` and `.csv` (one row per step, status PASS, FAIL or
SKIPPED), naming the hardware and the library versions. Without a CUDA GPU it says so and exits 1;
`--plan` prints the steps and what each would skip here, without running any.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = "results"
BUDGET_S = 8 * 60
SMOKE_FLOOR = 0.9  # test accuracy the smoke preset reaches (tests/test_cli.py holds the same floor on CPU)
LIB = Path(__file__).resolve().parents[1]  # lib/: the children import this checkout's library from any folder
NOTEBOOKS = LIB.parent / "notebooks"
# The scripts notebooks 04 and 10 write (%%writefile), each run as one NCCL rank with its lesson's arguments.
# hang.py's `skip` and `eval` cases hang by design with two ranks; `eval-fixed` is the one that must pass.
NOTEBOOK_RUNS = {
    ("04_ddp_concepts", "collectives.py"): [[]],
    ("10_ddp_internals", "overlap.py"): [["--model", "tiny", "--batch", "8", "--seq", "64", "--small-bucket-mb",
                                          "0.1"]],
    ("10_ddp_internals", "hang.py"): [["--case", "eval-fixed", "--timeout", "60"]],
    ("10_ddp_internals", "options.py"): [["--case", "measure"]],
    ("10_ddp_internals", "memory.py"): [["--wrap", wrap, "--model", "tiny", "--batch", "8", "--seq", "64"]
                                        for wrap in ("ddp", "fsdp")],
}


def add_command(commands) -> None:
    check = commands.add_parser("gpu-check", help="run the GPU paths (training, resume, DDP, NCCL, serving, "
                                                  "benchmarks) on this machine's GPU and write a report",
                                allow_abbrev=False)
    check.add_argument("--out", default=DEFAULT_OUT, help="folder for the JSON and CSV report (default results/)")
    check.add_argument("--plan", action="store_true", help="print the steps and what would be skipped; run none")
    check.set_defaults(command=command_gpu_check)


def command_gpu_check(args: argparse.Namespace) -> int:
    import torch

    if args.plan:
        with tempfile.TemporaryDirectory() as work:
            for step in plan(Path(work), bf16=True):
                missing = missing_packages(step)
                print(f"{step['name']:<48} {'SKIPPED: needs ' + ', '.join(missing) if missing else 'runs'}")
        return 0
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU is visible here (torch.cuda.is_available() is False); run it on a machine "
              "with a GPU, e.g. a Kaggle notebook with Settings -> Accelerator -> GPU", file=sys.stderr)
        return 1
    report = run_checks(Path(args.out))
    counts = {status: sum(s["status"] == status for s in report["steps"]) for status in ("PASS", "FAIL", "SKIPPED")}
    print(f"gpu-check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIPPED']} skipped "
          f"of {len(report['steps'])} steps in {report['seconds']:.0f} s; report: {report['json']}")
    return 0 if counts["FAIL"] == 0 else 1


def run_checks(out: Path) -> dict:
    import torch

    from .results import append_rows, describe_hardware, timestamp

    hardware = describe_hardware(torch.device("cuda", 0))
    start, steps = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        env = {**os.environ, "DISTRINEWS_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join([str(LIB), *filter(None, [os.environ.get("PYTHONPATH")])])}
        for step in plan(work, bf16=torch.cuda.get_device_capability(0)[0] >= 8):
            left = BUDGET_S - (time.perf_counter() - start)
            steps.append(run_check(step, env, work, left))
            row = steps[-1]
            print(f"{row['status']:<7} {row['step']:<48} {row['seconds']:>6.1f} s  {row['detail']}", flush=True)
    stamp = timestamp()
    report = {"command": "gpu-check", "timestamp": stamp, **hardware, "python": sys.version.split()[0],
              "seconds": round(time.perf_counter() - start, 1), "steps": steps}
    name = f"gpu_check-{re.sub(r'[^A-Za-z0-9]+', '_', hardware['label']).strip('_')}-{stamp[:10]}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    append_rows(out, name, [{"label": hardware["label"], "timestamp": stamp, **s} for s in steps])
    report["json"] = str(out / f"{name}.json")
    return report


def plan(work: Path, bf16: bool) -> list[dict]:
    """The steps, in order: a command (or an in-process check), the optional packages it needs, how it is judged."""
    cli = [sys.executable, "-m", "distrinews"]

    def torchrun(n: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]

    smoke = ["train", "--preset", "smoke", "--device", "cuda", "--epochs", "1", "--save-every-steps", "20"]
    # notebook 04's equivalence step: plain SGD, no dropout, no warm-up, fp32, one step
    one_step = ["train", "--preset", "smoke", "--device", "cuda", "--padding", "dynamic", "--max-steps", "1",
                "--no-dropout", "true", "--warmup-ratio", "0", "--optimizer", "sgd", "--learning-rate", "0.5",
                "--precision", "fp32", "--resume", "false"]
    steps = [
        {"name": "GPU architectures in torch's arch list", "inline": "arch"},
        {"name": "train fp16 (autocast + GradScaler)", "cmd": cli + smoke + ["--precision", "fp16", "--output-dir",
                                                                            str(work / "fp16")],
         "expect": "precision fp16", "eval": work / "fp16", "steps_applied": work / "fp16"},
    ]
    if bf16:
        steps.append({"name": "train bf16", "cmd": cli + smoke + ["--precision", "bf16", "--output-dir",
                                                                   str(work / "bf16")],
                      "expect": "precision bf16", "eval": work / "bf16"})
    steps += [
        {"name": "crash at step 40", "cmd": cli + smoke + ["--precision", "fp16", "--fail-at-step", "40",
                                                          "--output-dir", str(work / "resumed")],
         "returncode": 1, "expect_err": "injected failure before step 40"},
        {"name": "resume on CUDA, same result", "cmd": cli + smoke + ["--precision", "fp16", "--output-dir",
                                                                      str(work / "resumed")],
         "expect": "resuming from", "same_eval": (work / "resumed", work / "fp16")},
        {"name": "NCCL, 1 rank: train_ddp.py", "cmd": torchrun(1) + ["-m", "distrinews"] + smoke + [
            "--precision", "fp16", "--output-dir", str(work / "nccl")],
         "expect": "backend nccl", "eval": work / "nccl"},
        {"name": "NCCL, 1 rank: evaluate", "cmd": torchrun(1) + ["-m", "distrinews", "evaluate", "--checkpoint",
                                                                  str(work / "fp16" / "checkpoint"), "--output",
                                                                  str(work / "nccl-eval.json")],
         "eval_file": work / "nccl-eval.json"},
        {"name": "DDP: 2 ranks share the GPU (gloo), fp16", "cmd": torchrun(2) + ["-m", "distrinews"] + smoke + [
            "--precision", "fp16", "--grad-accum-steps", "2", "--output-dir", str(work / "ddp")],
         "env": {"DISTRINEWS_BACKEND": "gloo"}, "expect": "world size 2", "eval": work / "ddp"},
        {"name": "DDP step: 2 ranks x 8 (shared GPU)", "cmd": torchrun(2) + ["-m", "distrinews"] + one_step + [
            "--per-device-batch-size", "8", "--output-dir", str(work / "step-ddp")],
         "env": {"DISTRINEWS_BACKEND": "gloo"}, "expect": "world size 2"},
        {"name": "DDP step == 1 process x 16 step", "cmd": cli + one_step + [
            "--per-device-batch-size", "16", "--output-dir", str(work / "step-single")],
         "needs": ("pandas",), "same_step": (work / "step-ddp", work / "step-single")},
    ]
    for (notebook, script), runs in NOTEBOOK_RUNS.items():
        for args in runs:
            steps.append({"name": f"NCCL, 1 rank: {notebook[:2]}/{script} {' '.join(args[:2])}".rstrip(),
                          "notebook": (notebook, script), "cmd": torchrun(1) + [script, *args],
                          "cwd": work / notebook})
    steps += [
        {"name": "predict on CUDA", "cmd": cli + ["predict", "--checkpoint", str(work / "fp16" / "checkpoint"),
                                                  "--device", "cuda", "--json", "Late goal wins the cup"],
         "expect": '"label"'},
        {"name": "serve on CUDA: /health, /predict", "serve": work / "fp16" / "checkpoint",
         "needs": ("gradio", "httpx")},
        {"name": "bench train fp16 and bf16", "cmd": cli + ["bench", "train", "--preset", "smoke", "--device", "cuda",
                                                             "--steps", "20", "--precision", "fp16", "bf16",
                                                             "--results-dir", str(work / "bench"), "--json"],
         "expect": "samples/s"},
        {"name": "bench infer on CUDA", "cmd": cli + ["bench", "infer", "--model", "tiny", "--device", "cuda",
                                                      "--runs", "10", "--json"], "infer": True},
        {"name": "bench allreduce (NCCL, 1 rank)", "cmd": torchrun(1) + ["-m", "distrinews", "bench", "allreduce",
                                                                         "--device", "cuda", "--max-mb", "64",
                                                                         "--results-dir", str(work / "bench"),
                                                                         "--json"],
         "expect": "nccl"},
    ]
    return steps


def missing_packages(step: dict) -> list[str]:
    """The optional packages a step needs that this Python cannot import."""
    return [name for name in step.get("needs", ()) if not importable(name)]


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, a broken install
        return False


def run_check(step: dict, env: dict, work: Path, budget_s: float = BUDGET_S) -> dict:
    start = time.perf_counter()
    missing = missing_packages(step)
    if missing:
        status, detail = "SKIPPED", f"needs {', '.join(missing)}, not installed here"
    elif budget_s <= 0:
        status, detail = "FAIL", "not run: over the 8-minute budget"
    else:
        try:
            if "inline" in step:
                ok, detail = check_architectures()
            elif "serve" in step:
                ok, detail = serve_and_call(step["serve"], env, work)
            else:
                if "notebook" in step:
                    write_notebook_script(*step["notebook"], step["cwd"])
                ok, detail = run_command(step, {**env, **step.get("env", {})}, budget_s)
        except Exception as err:  # one broken step must not hide the others: record it and go on
            ok, detail = False, f"{type(err).__name__}: {err}"
        status = "PASS" if ok else "FAIL"
    return {"step": step["name"], "status": status, "ok": status == "PASS",
            "seconds": round(time.perf_counter() - start, 1), "detail": detail[:500]}


def check_architectures() -> tuple[bool, str]:
    import torch

    from .precision import unsupported_gpu_message

    problems = [message for i in range(torch.cuda.device_count()) if (message := unsupported_gpu_message(i))]
    found = ", ".join(f"sm_{major}{minor}" for major, minor in
                      (torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())))
    return not problems, "; ".join(problems) or f"{found} in {' '.join(torch.cuda.get_arch_list())}"


def notebook_scripts(notebook: str) -> dict[str, str]:
    """The scripts a notebook writes: `%%writefile NAME` cell -> its text, as the notebook has it today."""
    cells = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text())["cells"]
    scripts = {}
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("%%writefile"):
            first, _, body = source.partition("\n")
            scripts[first.split()[-1]] = body
    return scripts


def write_notebook_script(notebook: str, script: str, folder: Path) -> Path:
    scripts = notebook_scripts(notebook)
    if script not in scripts:
        raise FileNotFoundError(f"{notebook}.ipynb no longer writes {script}: update gpu_check.NOTEBOOK_RUNS")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / script).write_text(scripts[script])
    return folder / script


def run_command(step: dict, env: dict, timeout_s: float = BUDGET_S) -> tuple[bool, str]:
    """Run a step's command; on a timeout kill its whole process group (torchrun and its workers alike)."""
    proc = subprocess.Popen(step["cmd"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=step.get("cwd"), start_new_session=True)  # its own group, killed as one
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too, not only torchrun
        proc.communicate()
        return False, f"timed out after {timeout_s:.0f} s; killed the process group"
    if proc.returncode != step.get("returncode", 0):
        return False, f"exit {proc.returncode}: {(stderr or stdout)[-400:]}"
    for key, stream in (("expect", stdout), ("expect_err", stderr)):
        if key in step and step[key] not in stream:
            return False, f"{step[key]!r} not in the output: {stream[-300:]}"
    return judge(step, stdout)


def judge(step: dict, stdout: str) -> tuple[bool, str]:
    """Pass on numbers, not on the exit code: accuracy floors, steps applied, equal results."""
    verdicts = []
    if "eval" in step or "eval_file" in step:
        metrics = json.loads(Path(step.get("eval_file") or step["eval"] / "eval.json").read_text())
        verdicts.append((metrics["accuracy"] >= SMOKE_FLOOR, f"accuracy {metrics['accuracy']:.3f} on "
                                                             f"{metrics['n_examples']} examples (floor {SMOKE_FLOOR})"))
    if "steps_applied" in step:
        applied, run = optimizer_steps(step["steps_applied"] / "checkpoint")
        verdicts.append((applied >= run / 2, f"{applied}/{run} fp16 optimizer steps applied by the GradScaler"))
    if "same_eval" in step:
        resumed, reference = (json.loads((folder / "eval.json").read_text()) for folder in step["same_eval"])
        same = resumed["confusion_matrix"] == reference["confusion_matrix"]
        verdicts.append((same, f"confusion matrix {'equals' if same else 'DIFFERS from'} the uninterrupted run's"))
    if "same_step" in step:
        verdicts.append(same_step(*step["same_step"]))
    if step.get("infer"):
        verdicts.append(judge_infer(stdout))
    if not verdicts:
        return True, stdout.strip().splitlines()[-1][:300] if stdout.strip() else "ok"
    return all(ok for ok, _ in verdicts), "; ".join(detail for _, detail in verdicts)


def optimizer_steps(checkpoint: Path) -> tuple[int, int]:
    """(updates the optimizer applied, optimizer steps the run took) from a checkpoint's training state."""
    import torch

    state = torch.load(checkpoint / "training_state.pt", map_location="cpu", weights_only=True)
    applied = max((int(s["step"]) for s in state["optimizer"]["state"].values() if "step" in s), default=0)
    return applied, state["progress"]["step"]


def same_step(ddp_run: Path, single_run: Path) -> tuple[bool, str]:
    """Notebook 04's proof: the DDP step and the one-process step on the same global batch give the same weights."""
    from .concepts import compare_weights, initial_weights

    table = compare_weights(ddp_run, single_run, initial=initial_weights(ddp_run))
    change, diff = table["max |change by training|"].max(), table["max |difference|"].max()
    ok = change > 0 and diff < 1e-4 * change
    return ok, f"largest difference {diff:.2e} against a largest change by the step of {change:.2e}"


def judge_infer(stdout: str) -> tuple[bool, str]:
    import torch

    report = json.loads(stdout.strip().splitlines()[-1])
    name = torch.cuda.get_device_name(0)
    half = [key for key in report["candidates"] if key in ("fp16", "bf16")]
    ok = report["label"].startswith(name) and bool(half)
    return ok, (f"row labelled {report['label']!r} (GPU {name!r}); candidates {', '.join(report['candidates'])}; "
                f"default {report['default_path']} p50 {report['optimized_p50_ms']} ms")


def serve_command(checkpoint: Path, port: int) -> list[str]:
    """`distrinews serve` on the checkpoint; the app loads it with device auto, which is the GPU here."""
    return [sys.executable, "-m", "distrinews", "serve", "--checkpoint", str(checkpoint), "--host", "127.0.0.1",
            "--port", str(port)]


def serve_and_call(checkpoint: Path, env: dict, work: Path) -> tuple[bool, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(work / "serve.log", "w")
    server = subprocess.Popen(serve_command(checkpoint, port), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                return False, "the server did not answer /health: " + (work / "serve.log").read_text()[-300:]
            time.sleep(1)
        answer = httpx.post(f"{url}/predict", json={"texts": ["Late goal wins the cup", "Shares slide"]}, timeout=60)
        ok = answer.status_code == 200 and len(answer.json()["predictions"]) == 2
        return ok, f"POST /predict -> {answer.status_code}: {answer.text[:200]}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
