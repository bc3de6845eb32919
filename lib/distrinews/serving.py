"""Serve and publish: `distrinews serve` and `distrinews publish space`.

    distrinews serve --checkpoint runs/cpu-demo/checkpoint              # the Space app on http://127.0.0.1:7860
    distrinews publish space --space-id me/distrinews --model-id me/distrinews-agnews \\
        --checkpoint runs/cpu-demo/checkpoint --dry-run                  # stage and validate, push nothing

`publish space` stages two folders, `STAGE/model` (the checkpoint's inference files, the int8 ONNX model built
from them here, once, and a model card generated from the run) and `STAGE/space` (app.py, README.md, LICENSE,
the requirements for the chosen hardware and the `distrinews` modules app.py imports, so the folder runs on its
own), validates them, then pushes both with huggingface_hub unless --dry-run. A CPU Space runs the prebuilt ONNX
model and installs no torch (space/requirements-cpu.txt); a ZeroGPU Space keeps PyTorch (space/requirements.txt).
Gradio (the `space` extra) and huggingface_hub are imported inside the commands: `distrinews train` never pays
for them, and an install without them says which extra to add.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .checkpoint import require_checkpoint
from .kaggle import add_publish_command as add_publish_kaggle
from .prebuilt import ONNX_FILE
from .publishing import PublishError, fresh_dir, model_card, needs  # PublishError: cli.py imports it from here

# The repository's space/ folder in a checkout; inside an installed wheel, the copy setup.py packs with it.
SPACE_SOURCE = next((d for d in (Path(__file__).resolve().parents[2] / "space", Path(__file__).resolve().parent / "space")
                     if (d / "app.py").exists()), Path(__file__).resolve().parents[2] / "space")
PACKAGE_DIR = Path(__file__).resolve().parent
# What app.py imports, directly or not: staged beside it, so the Space needs no install of the library
APP_MODULES = ("__init__.py", "environment.py", "inference.py", "labels.py", "modeling.py", "onnx_export.py",
               "prebuilt.py", "synthetic.py")
LICENSE_FILE = next((d / "LICENSE" for d in (SPACE_SOURCE, SPACE_SOURCE.parent) if (d / "LICENSE").exists()),
                    SPACE_SOURCE.parent / "LICENSE")  # the checkout's, or the copy setup.py packs beside the app
# The Space's requirements by hardware: on a CPU the prebuilt ONNX model alone, on ZeroGPU PyTorch (the docs'
# `spaces.GPU` runs torch code on the borrowed GPU).
REQUIREMENTS = {"cpu": "requirements-cpu.txt", "zero-gpu": "requirements.txt"}
NOT_ON_A_CPU_SPACE = ("torch", "transformers", "onnx", "onnxscript")  # what the prebuilt model spares it
MODEL_FILES_SKIPPED = ("training_state.pt",)  # optimizer state: large, and only for resuming
PLACEHOLDER_MODEL = "OWNER/distrinews-distilbert-agnews"
REQUIRED_FRONT_MATTER = ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file",
                         "python_version", "short_description", "models", "datasets", "license")
HARDWARE = {"cpu": "cpu-basic", "zero-gpu": "zero-a10g"}
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# What ZeroGPU runs (https://huggingface.co/docs/hub/spaces-zerogpu, "Supported Versions", read 2026-07): the
# Space's README python_version must be among them whatever the hardware, and a ZeroGPU Space's torch pin too.
ZEROGPU_PYTHON = ("3.10.13", "3.12.12")
ZEROGPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")
# The Space's sdk_version is the gradio installed where `publish space` runs, the one validate_space has just
# imported the staged app with; and every environment that publishes is one a CI environment tests: the
# project's own (gradio 6.x from PyPI) or the Kaggle-pinned one (the Kaggle image's gradio 5.50). A version
# fixed in space/README.md would be tested in only one of the two. Outside this range nothing tested it.
TESTED_GRADIO = ((5, 50), (7, 0))  # from 5.50 (Kaggle) up to, not including, 7.0


def add_commands(commands) -> None:
    """Register this module's subcommands on the CLI's subparsers."""
    serve = commands.add_parser("serve", help="serve the Space app (web demo + JSON API) for a checkpoint",
                                allow_abbrev=False)
    serve.add_argument("--checkpoint", required=True, help="a checkpoint directory or a hub id")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.set_defaults(command=command_serve)

    publish = commands.add_parser("publish", help="publish to the Hugging Face hub or to Kaggle", allow_abbrev=False)
    targets = publish.add_subparsers(required=True, metavar="TARGET")
    space = targets.add_parser("space", help="push the model and its demo Space", allow_abbrev=False)
    space.add_argument("--space-id", required=True, help="OWNER/NAME of the Space")
    space.add_argument("--model-id", required=True, help="OWNER/NAME of the model repository")
    space.add_argument("--checkpoint", required=True, help="the checkpoint directory to publish")
    space.add_argument("--dry-run", action="store_true", help="stage and validate, print what would be pushed")
    space.add_argument("--stage-dir", help="where to stage the folders (default: a temporary directory)")
    space.add_argument("--hardware", choices=tuple(HARDWARE), default="cpu", help="Space hardware (default cpu)")
    space.set_defaults(command=command_publish_space)
    add_publish_kaggle(targets)  # publish kaggle: the notebooks and the library


# ---- serve ------------------------------------------------------------------------------------------------

def command_serve(args) -> int:
    needs("gradio", "serve", extra="space")
    app_file = SPACE_SOURCE / "app.py"
    if not app_file.exists():
        raise PublishError(f"{app_file} not found; `serve` runs from a clone of the course repository")
    os.environ["DISTRINEWS_MODEL"] = str(require_checkpoint(args.checkpoint))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = load_app(app_file)
    print(f"serving {args.checkpoint} at http://{args.host}:{args.port}")
    print(f"engine: {app.CLASSIFIER.describe()}")  # which path load picked on this machine, and why
    print(f"DistriNews demo: http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    # share=False: on Kaggle Gradio would otherwise open a public gradio.live tunnel on its own
    app.launch(server_name=args.host, server_port=args.port, share=False, quiet=True)
    return 0


def load_app(app_file: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("distrinews_space_app", app_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- publish space ----------------------------------------------------------------------------------------

def command_publish_space(args) -> int:
    try:
        needs("gradio", "publish space", extra="space")  # validate_space imports the app, sdk_version names it
        if not args.dry_run:
            needs("huggingface_hub", "publish space")  # push uploads with it
        for name, repo_id in (("--space-id", args.space_id), ("--model-id", args.model_id)):
            if not REPO_ID.match(repo_id):
                raise PublishError(f"{name} must look like OWNER/NAME, got {repo_id!r}")
        checkpoint = require_checkpoint(args.checkpoint)  # its FileNotFoundError exits 2 through the CLI
        token = None if args.dry_run else find_token()  # fail before any work when a push cannot happen
        stage = Path(args.stage_dir) if args.stage_dir else Path(tempfile.mkdtemp(prefix="distrinews-publish-"))
        model_dir = stage_model(checkpoint, args.model_id, stage)
        space_dir = stage_space(args.model_id, stage, args.space_id, args.hardware)
        validate_space(space_dir, model_dir, args.hardware)
    except PublishError as err:
        print(f"distrinews: error: {err}", file=sys.stderr)
        return 2
    plan = [("model", args.model_id, model_dir), ("space", args.space_id, space_dir)]
    for kind, repo_id, folder in plan:
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        print(f"{'would push' if args.dry_run else 'pushing'} {kind} {repo_id} from {folder}: {len(files)} files")
        for name in files:
            print(f"  {name}")
    if args.dry_run:
        print(f"dry run: nothing pushed; Space hardware would be {HARDWARE[args.hardware]}")
        return 0
    push(plan, token, HARDWARE[args.hardware])
    print(f"published https://huggingface.co/{args.model_id} and https://huggingface.co/spaces/{args.space_id}")
    return 0


def find_token() -> str:
    """HF_TOKEN from the environment, else Kaggle Secrets; never printed."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        try:
            from kaggle_secrets import UserSecretsClient
        except ImportError:
            pass
        else:
            try:
                token = (UserSecretsClient().get_secret("HF_TOKEN") or "").strip()
            except Exception:  # noqa: BLE001 - a missing secret raises the client's own error types
                token = ""
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN (a write token from "
                           "https://huggingface.co/settings/tokens) or add it to Kaggle Secrets as HF_TOKEN; "
                           "or use --dry-run")
    return token


def stage_model(checkpoint: Path, model_id: str, stage: Path) -> Path:
    """The checkpoint's inference files, its int8 ONNX model and a model card, in STAGE/model."""
    folder = fresh_dir(stage / "model")
    for path in checkpoint.iterdir():
        if path.is_file() and path.name not in MODEL_FILES_SKIPPED:
            shutil.copy2(path, folder / path.name)
    build_onnx(checkpoint, folder / ONNX_FILE)
    (folder / "README.md").write_text(model_card(checkpoint, model_id, onnx_file=ONNX_FILE), encoding="utf-8")
    return folder


def build_onnx(checkpoint: Path, target: Path) -> Path:
    """The int8 ONNX model a CPU Space runs, made here once rather than at every cold start of the Space:
    exported, fused and checked against torch's logits by distrinews.onnx_export, then quantized.

    7-bit weights (`reduced_range`) whatever this machine has: the Space's CPU is unknown here, and on an x86 CPU
    without VNNI 8-bit weights can saturate (onnx_export.needs_reduced_range says why).
    """
    for module in ("onnxruntime", "onnx", "onnxscript"):
        needs(module, "publish space", extra="space")
    from .modeling import build_model, build_tokenizer
    from .onnx_export import OnnxUnavailable, load_onnx_model

    model = build_model(str(checkpoint), build_tokenizer(str(checkpoint))).float().eval()
    with tempfile.TemporaryDirectory(prefix="distrinews-onnx-") as work:
        try:
            onnx_model = load_onnx_model(model, quantize=True, cache=work, reduced_range=True)
        except OnnxUnavailable as err:
            raise PublishError(f"cannot build the int8 ONNX model for the Space: {err}") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(onnx_model.path, target)
    return target


def stage_space(model_id: str, stage: Path, space_id: str, hardware: str = "cpu") -> Path:
    """app.py, README.md (front matter naming the model), LICENSE, the hardware's requirements.txt and the
    distrinews modules."""
    folder = fresh_dir(stage / "space")
    shutil.copy2(SPACE_SOURCE / "app.py", folder / "app.py")
    shutil.copy2(SPACE_SOURCE / REQUIREMENTS[hardware], folder / "requirements.txt")
    shutil.copy2(LICENSE_FILE, folder / "LICENSE")
    readme = (SPACE_SOURCE / "README.md").read_text(encoding="utf-8").replace(PLACEHOLDER_MODEL, model_id)
    readme = readme.replace("OWNER-NAME.hf.space", space_id.replace("/", "-").replace("_", "-").lower() + ".hf.space")
    readme = re.sub(r"(?m)^sdk_version: .*$", f"sdk_version: {tested_gradio_version()}", readme, count=1)
    (folder / "README.md").write_text(readme, encoding="utf-8")
    package = folder / "distrinews"
    package.mkdir()
    for name in APP_MODULES:
        shutil.copy2(PACKAGE_DIR / name, package / name)
    return folder


def tested_gradio_version() -> str:
    """The installed gradio's version, for the Space's sdk_version; an error when no CI tests that version."""
    try:
        installed = version("gradio")
    except PackageNotFoundError:
        raise PublishError('`distrinews publish space` needs gradio, which is not installed here: '
                           'pip install "distrinews[space]"') from None
    major_minor = tuple(int(part) for part in re.findall(r"\d+", installed)[:2])
    if not TESTED_GRADIO[0] <= major_minor < TESTED_GRADIO[1]:
        raise PublishError(f"gradio {installed} is installed, but the Space is tested with gradio 5.50 (Kaggle) "
                           'to 6.x only: pip install "distrinews[space]" (gradio 6)')
    return installed


def validate_space(space_dir: Path, model_dir: Path, hardware: str = "cpu") -> None:
    """Front matter keys present, the hardware's requirements, and app.py answering from the staged folder alone
    with the staged model (on a CPU Space: from the prebuilt ONNX model, with torch never imported)."""
    import yaml

    text = (space_dir / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise PublishError("space README.md has no YAML front matter")
    meta = yaml.safe_load(match.group(1)) or {}
    missing = [key for key in REQUIRED_FRONT_MATTER if not meta.get(key)]
    if missing:
        raise PublishError(f"space README.md front matter lacks {', '.join(missing)}")
    if len(meta["short_description"]) > 60:
        raise PublishError("space README.md short_description is longer than 60 characters")
    if str(meta["python_version"]) not in ZEROGPU_PYTHON:
        raise PublishError(f"space README.md python_version {meta['python_version']} is not one ZeroGPU runs: use "
                           f"{' or '.join(ZEROGPU_PYTHON)} (https://huggingface.co/docs/hub/spaces-zerogpu)")
    requirements = (space_dir / "requirements.txt").read_text(encoding="utf-8")
    if hardware == "cpu":
        heavy = [name for name in re.findall(r"(?m)^([A-Za-z0-9_.-]+)", requirements) if name in NOT_ON_A_CPU_SPACE]
        if heavy or not re.search(r"(?m)^onnxruntime\b", requirements):
            raise PublishError(f"a CPU Space's requirements.txt installs onnxruntime and none of "
                               f"{', '.join(NOT_ON_A_CPU_SPACE)} (found {', '.join(heavy) or 'no onnxruntime'})")
    else:
        pins = re.findall(r"(?m)^torch==([\w.]+)\s*$", requirements)
        if len(pins) != 1 or pins[0] not in ZEROGPU_TORCH:
            raise PublishError(f"space requirements.txt must pin torch to one version ZeroGPU runs, e.g. "
                               f"torch=={ZEROGPU_TORCH[-1]} (https://huggingface.co/docs/hub/spaces-zerogpu)")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SPACES_ZERO_GPU")}
    env.update(DISTRINEWS_MODEL=str(model_dir.resolve()), GRADIO_ANALYTICS_ENABLED="False",
               **({"CUDA_VISIBLE_DEVICES": ""} if hardware == "cpu" else {}))  # a GPU here is none on the Space
    # `python -c` puts the cwd first on sys.path, so the staged distrinews must win over the installed one. Here,
    # as on a CPU Space, the app runs the staged ONNX model: it must answer without importing torch.
    probe = ("import pathlib, sys, app, distrinews; here = pathlib.Path('distrinews').resolve(); "
             "assert pathlib.Path(distrinews.__file__).resolve().parent == here, distrinews.__file__; "
             "assert app.predict(app.EXAMPLES[0]); "
             f"assert {hardware != 'cpu'} or 'torch' not in sys.modules, 'the CPU Space app imported torch'")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=space_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise PublishError(f"the staged app.py does not run from {space_dir} alone:\n" + "\n".join(tail))


def push(plan: list[tuple[str, str, Path]], token: str, hardware: str) -> None:
    from huggingface_hub import HfApi  # command_publish_space checked that it is installed

    api = HfApi(token=token)
    for kind, repo_id, folder in plan:
        if kind == "space":
            api.create_repo(repo_id, repo_type="space", space_sdk="gradio", space_hardware=hardware, exist_ok=True)
            api.add_space_variable(repo_id, "DISTRINEWS_MODEL", plan[0][1])  # app.py loads the model from the hub
        else:
            api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type=kind, folder_path=str(folder),
                          commit_message="Publish with distrinews publish space")
