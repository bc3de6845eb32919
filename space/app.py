"""DistriNews Space: label a news headline as World, Sports, Business or Sci/Tech.

One server answers both people and programs:
    /              the Gradio demo (single headline, batch tab, about)
    POST /predict  JSON: {"text": "..."} or {"texts": ["...", ...]}  ->  {"predictions": [...]}
    GET  /health   JSON: {"status": "ok", "model": "..."}

The model comes from env DISTRINEWS_MODEL (a hub id or a local checkpoint directory), else a `model/` folder
beside this file. Run locally:  DISTRINEWS_MODEL=runs/cpu-demo/checkpoint python space/app.py

One file for every machine. On a CPU, where the model was published with its int8 ONNX file (`distrinews publish
space` builds it once), ONNX Runtime runs that file and torch is never imported: a CPU Space installs neither torch
nor the exporter (requirements-cpu.txt). Elsewhere `NewsClassifier.load` picks the fastest path the machine allows
(a checkpoint on a CPU: exported to int8 ONNX on the first start, or PyTorch's int8) and /health names it. Where
there is a CUDA GPU (a GPU Space, `distrinews serve` on a GPU machine) the model runs there with float32 weights,
the int8 kernels being CPU kernels. ZeroGPU follows https://huggingface.co/docs/hub/spaces-zerogpu: the model is
placed on CUDA here, at import, and the GPU is borrowed only while `run_model`, the @spaces.GPU function, runs.
"""

from __future__ import annotations

# ZeroGPU: `spaces` must be imported before anything initialises CUDA. On a Space without ZeroGPU its decorator
# does nothing; off Spaces it is not installed and `gpu` below does nothing either.
try:
    import spaces
except ImportError:
    spaces = None

import dataclasses
import os
import threading
import time
import unicodedata
from pathlib import Path

import gradio as gr
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from distrinews.prebuilt import OnnxClassifier, Prediction  # imports no torch

COURSE_URL = "https://github.com/OWNER/distrinews"  # placeholder: the course repository
MAX_TEXTS = 64  # headlines per call, API and batch tab alike
MAX_CHARS = 200_000  # longer texts are cut before tokenizing; the model reads only its first 128 tokens anyway
CONCURRENCY = 4  # Gradio events in flight at once; the model lock below still runs one forward at a time
EXAMPLES = [
    "UN Security Council meets after ceasefire talks collapse in the region",  # World
    "Late goal sends the home side into the cup final",  # Sports
    "Shares slide as the central bank signals another rate rise",  # Business
    "New chip promises faster machine learning on smartphones",  # Sci/Tech
]

GPU_SECONDS = 20  # ZeroGPU's limit per call: 64 headlines take milliseconds, and shorter limits queue sooner

ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # as `spaces` itself reads it
gpu = spaces.GPU(duration=GPU_SECONDS) if spaces is not None else (lambda function: function)


class InputError(ValueError):
    """Input the model cannot label; the message says what to send instead."""


def find_model() -> str:
    source = os.environ.get("DISTRINEWS_MODEL") or ""
    if source:
        return source
    local = Path(__file__).resolve().parent / "model"
    if local.is_dir():
        return str(local)
    raise RuntimeError("no model: set DISTRINEWS_MODEL to a hub id or a checkpoint directory "
                       "(e.g. DISTRINEWS_MODEL=runs/cpu-demo/checkpoint), or put one in a model/ folder beside app.py")


def has_gpu() -> bool:
    """ZeroGPU, or an NVIDIA GPU that CUDA_VISIBLE_DEVICES does not hide: asked without importing torch, which a
    CPU Space does not install."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
    return ZERO_GPU or (not hidden and any(Path("/dev").glob("nvidia[0-9]*")))


def load_classifier(source: str, device: str = "auto"):
    """On a CPU, the int8 ONNX model published beside the weights, when there is one; else NewsClassifier.load."""
    if device == "cpu" or (device == "auto" and not has_gpu()):
        prebuilt = OnnxClassifier.load(source)
        if prebuilt is not None:
            return prebuilt
    try:
        from distrinews.inference import NewsClassifier  # torch: a GPU, or a checkpoint without onnx/
    except ImportError as err:
        raise RuntimeError(f"{source} has no int8 ONNX model (onnx/model-int8.onnx), and {err.name} is not installed "
                           "to run its weights: publish the model with `distrinews publish space`, which builds "
                           "that file, or install requirements.txt (with torch)") from None
    return NewsClassifier.load(source, device=device)


MODEL_SOURCE = find_model()
# device="auto": CUDA where there is a GPU, float32 there; else the CPU, int8 (the published ONNX file; for a bare
# checkpoint ONNX Runtime's export, cached after the first start, or PyTorch's where onnxruntime is missing). On
# ZeroGPU torch sees a GPU at import too (`spaces` emulates CUDA outside @spaces.GPU calls), so the model is placed
# on CUDA here, at module level, as the ZeroGPU docs ask ("Model loading"): moving it inside the decorated call
# would be slower, and would not last, since each call runs in a worker process whose changes never come back.
CLASSIFIER = load_classifier(MODEL_SOURCE)
MODEL_LOCK = threading.Lock()  # one forward at a time: callers come from the Gradio queue and the API threadpool
# The JSON API is no Gradio event: ZeroGPU bills each @spaces.GPU call to the visitor through the Gradio request
# (its x-ip-token header, https://huggingface.co/docs/hub/spaces-api-endpoints), and a call from a plain route
# has none, so it would spend the Space's small anonymous quota. On ZeroGPU the API answers on the CPU, in int8
# (ONNX Runtime's where installed, like any CPU Space).
CPU_CLASSIFIER = load_classifier(MODEL_SOURCE, device="cpu") if ZERO_GPU else CLASSIFIER
# Its own lock on ZeroGPU: GPU workers are forked from this process, and a lock an API thread holds at that moment
# would stay held forever in the worker's copy.
CPU_LOCK = threading.Lock() if ZERO_GPU else MODEL_LOCK


def clean(text) -> tuple[str, bool]:
    """Strip control characters, reject blank text, cut very long text; returns (text, was_cut)."""
    if not isinstance(text, str):
        raise InputError(f"each text must be a string, got {type(text).__name__}")
    # Cc: NUL and friends; Cs: lone surrogates (not encodable); Co/Cn: private and unassigned code points.
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\t\n" else ch
                   for ch in text[:MAX_CHARS + 1]).strip()
    if not text:
        raise InputError("the text is empty: type a news headline or a short article")
    return text[:MAX_CHARS], len(text) > MAX_CHARS


@gpu
def run_model(texts: list[str]) -> list[Prediction]:
    """The model's forward for the UI. On ZeroGPU it runs in a worker process holding a GPU: it changes no state,
    and returns plain data, which is pickled back."""
    with MODEL_LOCK:
        return CLASSIFIER.predict(texts)


def run_on_cpu(texts: list[str]) -> list[Prediction]:
    with CPU_LOCK:
        return CPU_CLASSIFIER.predict(texts)


run_api_model = run_on_cpu if ZERO_GPU else run_model  # see CPU_CLASSIFIER
API_CLASSIFIER = CPU_CLASSIFIER if ZERO_GPU else CLASSIFIER  # what answers the JSON API, for /health


def classify(texts: list, run=run_model) -> list[Prediction]:
    """Label a list of raw texts with `run`; InputError says what is wrong with the input."""
    if not texts:
        raise InputError("no texts: send at least one headline")
    if len(texts) > MAX_TEXTS:
        raise InputError(f"too many texts: {len(texts)} sent, at most {MAX_TEXTS} per call")
    cleaned = [clean(text) for text in texts]
    predictions = run([text for text, _ in cleaned])
    return [dataclasses.replace(p, truncated=p.truncated or cut) for p, (_, cut) in zip(predictions, cleaned)]


def predict(text: str) -> dict[str, float]:
    """The four class probabilities of one headline, for gr.Label."""
    return classify([text])[0].probabilities


# ---- the UI -------------------------------------------------------------------------------------------------

def ui_predict(text: str):
    start = time.perf_counter()
    try:
        prediction = classify([text])[0]
    except InputError as err:
        gr.Warning(str(err))
        return None, f"**{err}**"
    note = f"Last call: {(time.perf_counter() - start) * 1000:.1f} ms on {device_name()}."
    if prediction.truncated:
        note += f" The text was longer than the model reads ({CLASSIFIER.max_length} tokens) and was truncated."
    return prediction.probabilities, note


def ui_batch(lines: str):
    texts = [line for line in (lines or "").splitlines() if line.strip()]
    start = time.perf_counter()
    try:
        predictions = classify(texts)
    except InputError as err:
        gr.Warning(str(err))
        return [], f"**{err}**"
    rows = [[text[:200], p.label, round(p.probabilities[p.label], 4), p.truncated]
            for text, p in zip(texts, predictions)]
    elapsed = (time.perf_counter() - start) * 1000
    return rows, f"Last call: {len(texts)} headlines in {elapsed:.1f} ms on {device_name()}."


def device_name() -> str:
    return "GPU" if CLASSIFIER.device.startswith("cuda") else "CPU"


ABOUT = f"""
## About

This demo closes **DistriNews**, a course that fine-tunes DistilBERT on [AG News](https://huggingface.co/datasets/fancyzhx/ag_news)
(120,000 news articles in four classes) and scales the same training script from one CPU to many GPUs with
PyTorch **DistributedDataParallel (DDP)**: one process per device, gradients averaged by all-reduce.
Course repository: [{COURSE_URL}]({COURSE_URL}).

- **Model:** `{MODEL_SOURCE}`: a sequence classifier with the four AG News labels, trained with DDP.
- **Runs as:** {CLASSIFIER.describe()}.
- **Inputs:** a headline or a short article, in any language (the model was trained on English news).
  It reads the first {CLASSIFIER.max_length} tokens; longer texts are truncated and the result says so.
- **API:** `POST /predict` with `{{"text": "..."}}` or `{{"texts": [...]}}` (at most {MAX_TEXTS}), `GET /health`.
"""

with gr.Blocks(title="DistriNews: AG News classifier") as demo:
    gr.Markdown("# DistriNews: what kind of news is this?\nWorld, Sports, Business or Sci/Tech.")
    with gr.Tab("Headline"):
        headline = gr.Textbox(label="Headline", placeholder="Type a news headline", lines=2, max_lines=8)
        submit = gr.Button("Classify", variant="primary")
        label = gr.Label(num_top_classes=4, label="Prediction", elem_id="prediction")
        note = gr.Markdown(elem_id="note")
        gr.Examples(EXAMPLES, inputs=headline)
        submit.click(ui_predict, headline, [label, note], api_name="predict")
        headline.submit(ui_predict, headline, [label, note], api_name=False)
    with gr.Tab("Batch"):
        lines = gr.Textbox(label=f"Headlines, one per line (at most {MAX_TEXTS})", lines=8,
                           value="\n".join(EXAMPLES))
        run_batch = gr.Button("Classify all", variant="primary")
        table = gr.Dataframe(headers=["headline", "label", "confidence", "truncated"], label="Predictions",
                             interactive=False)
        batch_note = gr.Markdown()
        run_batch.click(ui_batch, lines, [table, batch_note], api_name="predict_batch")
    with gr.Tab("About"):
        gr.Markdown(ABOUT)
demo.queue(default_concurrency_limit=CONCURRENCY)


# ---- the JSON API, and the server that carries both -------------------------------------------------------

API = APIRouter()


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@API.get("/health")
def health() -> dict:
    return {"status": "ok", "model": MODEL_SOURCE, "engine": API_CLASSIFIER.engine}


@API.post("/predict")
async def predict_api(request: Request):
    try:
        body = await request.json()
    except ValueError:
        return error(422, 'the body must be JSON: {"text": "..."} or {"texts": ["...", ...]}')
    if not isinstance(body, dict) or len(set(body) & {"text", "texts"}) != 1:
        return error(422, 'send exactly one of {"text": "..."} or {"texts": ["...", ...]}')
    texts = [body["text"]] if "text" in body else body["texts"]
    if not isinstance(texts, list):
        return error(422, '"texts" must be a list of strings')
    if len(texts) > MAX_TEXTS:
        return error(413, f"too many texts: {len(texts)} sent, at most {MAX_TEXTS} per call")
    try:
        predictions = await run_in_threadpool(classify, texts, run_api_model)  # the event loop stays free
    except InputError as err:
        return error(422, str(err))
    return {"predictions": [p.to_dict() for p in predictions]}


def launch(**options) -> None:
    """Serve the demo and the JSON API on one port; options go to `demo.launch` (server_name, server_port...).

    Gradio's own launch, not uvicorn around a mounted app: on ZeroGPU, `spaces` hooks `launch` to hand the weights
    placed on CUDA to its GPU scheduler, and a mounted app never calls it. The API routes go first in the server's
    route list, so /predict and /health are ours, not Gradio's.
    """
    demo.launch(app_kwargs={"routes": list(API.routes)}, **options)


if __name__ == "__main__":
    launch()  # host and port from GRADIO_SERVER_NAME and GRADIO_SERVER_PORT, as Spaces set them
