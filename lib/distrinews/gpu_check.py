"""`distrinews gpu-check` (`make gpu-check`): the GPU paths CPU tests cannot reach, in at most 8 minutes on one GPU.

Each step runs a real entry point in a subprocess, on the tiny model and synthetic news (nothing from the hub):

- fp16 training (autocast + GradScaler) and bf16 training where the GPU has compute capability 8.0+;
- a run killed mid-epoch (`--fail-at-step`) and resumed, which must end with the uninterrupted run's result;
- two DDP processes sharing one GPU (`DISTRINEWS_BACKEND=gloo`: NCCL refuses two ranks on one device), so the
  DDP device paths run: set_device, the wrap on CUDA, no_sync, all-reduce of CUDA tensors, exact evaluation;
- prediction (`distrinews predict`) and the web app (`distrinews serve`, GET /health and POST /predict) on CUDA;
- `bench train`, `bench infer` and `bench allreduce` on the GPU.

It writes one report, `RESULTS/gpu_check-<label>-<date>.json` and `.csv` (one row per step), naming the hardware
and the library versions. Without a CUDA GPU it says so and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OUT = "results"
BUDGET_S = 8 * 60


def add_command(commands) -> None:
    check = commands.add_parser("gpu-check", help="run the GPU paths (training, resume, DDP, serving, benchmarks) "
                                                  "on this machine's GPU and write a report", allow_abbrev=False)
    check.add_argument("--out", default=DEFAULT_OUT, help="folder for the JSON and CSV report (default results/)")
    check.set_defaults(command=command_gpu_check)


def command_gpu_check(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU is visible here (torch.cuda.is_available() is False); run it on a machine "
              "with a GPU, e.g. a Kaggle notebook with Settings -> Accelerator -> GPU", file=sys.stderr)
        return 1
    report = run_checks(Path(args.out))
    print(f"gpu-check: {sum(s['ok'] for s in report['steps'])}/{len(report['steps'])} steps passed in "
          f"{report['seconds']:.0f} s; report: {report['json']}")
    return 0 if all(step["ok"] for step in report["steps"]) else 1


def run_checks(out: Path) -> dict:
    import torch

    from .results import append_rows, describe_hardware, timestamp

    hardware = describe_hardware(torch.device("cuda", 0))
    start, steps = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        env = {**os.environ, "DISTRINEWS_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
        for step in plan(work, bf16=torch.cuda.get_device_capability(0)[0] >= 8):
            if time.perf_counter() - start > BUDGET_S:
                steps.append({"step": step["name"], "ok": False, "seconds": 0.0, "detail": "skipped: over budget"})
                continue
            steps.append(run_check(step, env, work))
            print(f"{'ok  ' if steps[-1]['ok'] else 'FAIL'} {steps[-1]['step']:<34} {steps[-1]['seconds']:>6.1f} s  "
                  f"{steps[-1]['detail']}", flush=True)
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
    """The steps, in order; each is a command, an optional environment, and a check of what it left behind."""
    cli = [sys.executable, "-m", "distrinews"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    smoke = ["train", "--preset", "smoke", "--device", "cuda", "--epochs", "1", "--save-every-steps", "20"]
    steps = [
        {"name": "train fp16 (autocast + GradScaler)", "cmd": cli + smoke + ["--precision", "fp16",
                                                                            "--output-dir", str(work / "fp16")],
         "expect": "precision fp16", "eval": work / "fp16"},
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
        {"name": "DDP: 2 ranks share the GPU (gloo)", "cmd": torchrun + ["-m", "distrinews"] + smoke + [
            "--precision", "fp16", "--grad-accum-steps", "2", "--output-dir", str(work / "ddp")],
         "env": {"DISTRINEWS_BACKEND": "gloo"}, "expect": "world size 2", "eval": work / "ddp"},
        {"name": "predict on CUDA", "cmd": cli + ["predict", "--checkpoint", str(work / "fp16" / "checkpoint"),
                                                  "--device", "cuda", "--json", "Late goal wins the cup"],
         "expect": '"label"'},
        {"name": "serve on CUDA: /health, /predict", "serve": work / "fp16" / "checkpoint"},
        {"name": "bench train fp16 and bf16", "cmd": cli + ["bench", "train", "--preset", "smoke", "--device", "cuda",
                                                             "--steps", "20", "--precision", "fp16", "bf16",
                                                             "--results-dir", str(work / "bench"), "--json"],
         "expect": "samples/s"},
        {"name": "bench infer on CUDA", "cmd": cli + ["bench", "infer", "--model", "tiny", "--device", "cuda",
                                                      "--runs", "10", "--json"], "expect": "p50"},
        {"name": "bench allreduce (NCCL, 1 rank)", "cmd": [sys.executable, "-m", "torch.distributed.run",
                                                           "--standalone", "--nproc_per_node=1", "-m", "distrinews",
                                                           "bench", "allreduce", "--device", "cuda", "--max-mb", "64",
                                                           "--results-dir", str(work / "bench"), "--json"],
         "expect": "nccl"},
    ]
    return steps


def run_check(step: dict, env: dict, work: Path) -> dict:
    start = time.perf_counter()
    try:
        ok, detail = serve_and_call(step["serve"], env, work) if "serve" in step else \
            run_command(step, {**env, **step.get("env", {})})
    except Exception as err:  # one broken step must not hide the others: record it and go on
        ok, detail = False, f"{type(err).__name__}: {err}"
    return {"step": step["name"], "ok": ok, "seconds": round(time.perf_counter() - start, 1), "detail": detail[:500]}


def run_command(step: dict, env: dict) -> tuple[bool, str]:
    proc = subprocess.run(step["cmd"], capture_output=True, text=True, env=env, timeout=BUDGET_S)
    if proc.returncode != step.get("returncode", 0):
        return False, f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-400:]}"
    for key, stream in (("expect", proc.stdout), ("expect_err", proc.stderr)):
        if key in step and step[key] not in stream:
            return False, f"{step[key]!r} not in the output: {stream[-300:]}"
    if "eval" in step:
        metrics = json.loads((step["eval"] / "eval.json").read_text())
        return True, f"accuracy {metrics['accuracy']:.3f} on {metrics['n_examples']} examples"
    if "same_eval" in step:
        resumed, reference = (json.loads((folder / "eval.json").read_text()) for folder in step["same_eval"])
        same = resumed["confusion_matrix"] == reference["confusion_matrix"]
        return same, f"confusion matrix {'equals' if same else 'DIFFERS from'} the uninterrupted run's"
    return True, proc.stdout.strip().splitlines()[-1][:300] if proc.stdout.strip() else "ok"


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
