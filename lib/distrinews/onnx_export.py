"""ONNX Runtime on the CPU: export a classifier once, quantize it to int8, run it; and the CPU's instruction sets.

    onnx_model = load_onnx_model(model, quantize=True)       # exported on first use, then read from the cache
    onnx_model(input_ids=ids, attention_mask=mask).logits     # called like the transformers model it came from

Why: PyTorch's dynamic int8 (`quantize_dynamic`) is fast where the CPU has VNNI and much less so where it has only
AVX2 (`distrinews bench infer`: ratio 0.29 on one 2-core EPYC, 0.42 on another). ONNX Runtime runs the whole graph in its own
kernels (fused LayerNorm and GELU, int8 matrix multiplies for AVX2, AVX-512, VNNI and AMX alike); `distrinews bench
infer` times it beside the other candidates on the machine at hand.

- Export: torch's own exporter, `torch.onnx.export(dynamo=True)` (with onnxscript): the one PyTorch maintains; the
  TorchScript exporter (dynamo=False) is deprecated. Batch size and sequence length stay dynamic. The exported graph
  must match the torch model's logits on a padded batch, or it is not used.
- Fusion: onnxscript's ONNX Runtime fusions (`optimize_for_ort`, from the exporter's maintainers, written for
  dynamo graphs) turn each layer's attention into one `Attention` node, and add and LayerNorm into
  SkipLayerNormalization, bias and GELU into BiasGelu; once quantized, each Attention becomes QAttention, one int8
  matrix multiply for Q, K and V (`distrinews bench infer`, DistilBERT-base on 2 threads: int8 p50 10.3-10.6 ms
  fused, 11.4-11.6 ms unfused; docs/inference.md has the table). The fused graph must match torch too, or the unfused
  one is used.
- Int8: `onnxruntime.quantization.quantize_dynamic`, weights int8 with a scale per output channel, activations
  uint8 quantized on the fly.
  On an x86 CPU without VNNI the weights get 7 bits (`reduce_range`), as ONNX Runtime's quantization guide advises:
  AVX2's u8 x s8 multiply (vpmaddubsw) sums pairs into int16, which full 8-bit weights can overflow and 7-bit ones
  cannot (2 x 255 x 64 < 32,767).
- Cache: DISTRINEWS_CACHE (default ~/.cache/distrinews) / onnx / KEY, KEY a hash of the weights, the config and the
  versions that made the file, so a checkpoint folder is never written to (it may be read-only, or be published);
  the LRU_KEEP most recently used models stay, older ones go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

LRU_KEEP = 4  # exported models kept in the cache (DistilBERT-base: 268 MB fp32 + 67 MB int8 each)
FOLD_LIMIT = 1 << 28  # elements: large enough to fold a layer's concatenated Q, K and V weights
EXPORT_ATOL = 1e-3  # largest logit difference allowed between the exported graph and torch, in fp32
LOG = logging.getLogger(__name__)
ISA_NAMES = {"avx2": "AVX2", "avx512": "AVX-512", "vnni": "VNNI", "amx": "AMX"}


class OnnxUnavailable(RuntimeError):
    """The ONNX Runtime path cannot run here; the message is one line saying why."""


# ---- the CPU -------------------------------------------------------------------------------------------------

def cpu_isa() -> dict[str, bool]:
    """Which of AVX2, AVX-512, VNNI (AVX512-VNNI or AVX-VNNI) and AMX this CPU has, the instruction sets int8 uses."""
    flags = set()
    try:  # Linux names every flag; elsewhere torch knows the vector width it dispatches to
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if not flags:
        capability = torch.backends.cpu.get_cpu_capability()  # "AVX2", "AVX512", "DEFAULT", ...
        flags = {"avx2"} | ({"avx512f"} if capability.startswith("AVX512") else set()) if "AVX" in capability else set()
    return {"avx2": "avx2" in flags, "avx512": "avx512f" in flags,
            "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}), "amx": bool(flags & {"amx_int8", "amx_tile"})}


def describe_isa(isa: dict[str, bool]) -> str:
    """`AVX2 AVX-512 VNNI AMX` (those present), or `no AVX2/AVX-512/VNNI/AMX`."""
    present = [name for key, name in ISA_NAMES.items() if isa.get(key)]
    return " ".join(present) if present else "no " + "/".join(ISA_NAMES.values())


def needs_reduced_range(isa: dict[str, bool] | None = None) -> bool:
    """7-bit int8 weights on an x86 CPU without VNNI, where 8-bit ones can saturate AVX2's int16 sums."""
    isa = cpu_isa() if isa is None else isa
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86") and not isa["vnni"]


# ---- what is installed ---------------------------------------------------------------------------------------

def onnx_unavailable(*modules: str) -> str | None:
    """None when the modules import (default: ONNX Runtime, onnx and onnxscript); else one line naming the missing."""
    missing = []
    for module in modules or ("onnxruntime", "onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return f"{', '.join(missing)} not installed (pip install onnxruntime onnx onnxscript)"
    return None


# ---- the model ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    logits: torch.Tensor


class OnnxModel:
    """An ONNX Runtime session that answers like a transformers sequence classifier: `model(**inputs).logits`."""

    def __init__(self, path: Path, config, threads: int, int8: bool, reduced_range: bool):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the same count torch uses, so the two compare like for like
        options.inter_op_num_threads = 1  # one graph, run node by node: parallelism is inside the matmuls
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: a spinning pool takes the cores from the tokenizer and from any
        # other process on a small shared machine (a free Space, a laptop, this benchmark's other candidates).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path, self.config, self.int8, self.reduced_range = path, config, int8, reduced_range

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Output:
        logits = self.session.run(["logits"], {"input_ids": input_ids.cpu().numpy().astype("int64"),
                                               "attention_mask": attention_mask.cpu().numpy().astype("int64")})[0]
        return Output(torch.from_numpy(logits))

    def eval(self) -> OnnxModel:
        return self

    def parameters(self):
        return iter(())  # no torch weights: NewsClassifier reads this as "runs on the CPU"


class LogitsOnly(torch.nn.Module):
    """The exported graph's signature: two integer tensors in, the logits out (no dict, no loss)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def load_onnx_model(model: torch.nn.Module, quantize: bool = True, cache: str | Path | None = None,
                    threads: int = 0, reduced_range: bool | None = None) -> OnnxModel:
    """The ONNX Runtime twin of a float32 transformers classifier, exported (and quantized) once per weights.

    Args:
        quantize: dynamic int8 (7-bit weights on x86 without VNNI); False: float32.
        cache: the folder for exported files (default: DISTRINEWS_CACHE/onnx, keyed by the weights).
        threads: ONNX Runtime intra-op threads (0: torch's current count).
        reduced_range: 7-bit int8 weights (None: where this CPU needs them, see needs_reduced_range).
    Raises:
        OnnxUnavailable: what is missing or what failed, in one line.
    """
    require("onnxruntime")  # a cached file needs only the runtime; onnx and onnxscript (~2 s to import) make files
    reduced = quantize and (needs_reduced_range() if reduced_range is None else reduced_range)
    folder = prepare_folder(Path(cache)) if cache else prepare_folder(default_cache() / weights_key(model), prune=True)
    fp32_file = folder / "model.onnx"
    if not fp32_file.exists():
        require("onnx", "onnxscript")  # the exporter
        export_onnx(model, fp32_file)
    path = fp32_file
    if quantize:
        path = folder / ("model-int8-7bit.onnx" if reduced else "model-int8.onnx")
        if not path.exists():
            require("onnx")  # the quantizer reads and writes the graph with it
            quantize_onnx(fp32_file, path, reduced)
    try:
        return OnnxModel(path, model.config, threads or torch.get_num_threads(), quantize, reduced)
    except Exception as err:  # noqa: BLE001 - a damaged cached file or an old runtime: say which, fall back
        raise OnnxUnavailable(f"ONNX Runtime cannot load {path}: {one_line(err)}") from err


def require(*modules: str) -> None:
    """Raise OnnxUnavailable naming the modules that do not import."""
    reason = onnx_unavailable(*modules)
    if reason:
        raise OnnxUnavailable(reason)


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    """Export with torch's dynamo exporter, dynamic batch and length; checked against torch before it is kept."""
    example = example_inputs(model.config)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapped = LogitsOnly(model.float()).eval()  # the wrapper too: the exporter checks its mode
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with warnings.catch_warnings(), quiet_logging():
            warnings.simplefilter("ignore")  # the exporter's notes on axis names and deprecations
            torch.onnx.export(wrapped, example, str(partial), dynamo=True, external_data=False,
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_shapes={"input_ids": {0: batch, 1: length},
                                              "attention_mask": {0: batch, 1: length}},
                              verbose=False)
        check_export(wrapped, partial)
        fuse_checked(wrapped, partial)
    except OnnxUnavailable:
        partial.unlink(missing_ok=True)
        raise
    except Exception as err:  # noqa: BLE001 - the exporter raises many types; the torch path still works
        partial.unlink(missing_ok=True)
        raise OnnxUnavailable(f"ONNX export failed: {one_line(err)}") from err
    os.replace(partial, path)  # atomic: another process reading the cache sees no half-written file
    return path


def fuse_checked(wrapped: torch.nn.Module, path: Path) -> dict[str, int]:
    """Replace the exported graph at `path` by its fused twin when that twin gives torch's logits too.

    Returns the fusions applied ({} when the unfused graph stays: onnxscript too old, a fusion that failed, or a
    fused graph that does not match torch, e.g. an attention bias that is more than the padding mask).
    """
    fused = path.with_name(path.name + ".fused")
    try:
        counts = fuse_for_ort(path, fused)
        check_export(wrapped, fused)
    except Exception as err:  # noqa: BLE001 - fusion is an optimization: the checked unfused graph still runs
        LOG.info("distrinews: ONNX graph left unfused: %s", one_line(err))
        fused.unlink(missing_ok=True)
        return {}
    os.replace(fused, path)
    return counts


def fuse_for_ort(source: Path, path: Path) -> dict[str, int]:
    """Write `source` with ONNX Runtime's transformer kernels fused in; return what was fused, by kind.

    onnxscript's `optimize_for_ort` makes one com.microsoft Attention node per layer. Two changes let ONNX
    Runtime's quantizer turn those into QAttention, which it skips otherwise: `qkv_hidden_sizes` goes when Q, K
    and V have the same size (the attribute's default meaning), and the padding mask goes in as `mask_index` (the
    0/1 attention_mask as int32) instead of the additive bias the graph computed from it, an input QAttention does
    not have. That is right for an encoder whose only attention bias is padding; check_export is the proof.
    """
    import onnx_ir as ir
    import onnxscript.optimizer
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    with warnings.catch_warnings(), quiet_logging():
        warnings.simplefilter("ignore")
        model, counts = optimize_for_ort(ir.load(str(source)))
        # Fold the concatenated Q, K, V weights into one constant: the quantizer quantizes constants only.
        onnxscript.optimizer.optimize(model, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT)
        attentions = [node for node in model.graph if node.op_type == "Attention" and node.domain == "com.microsoft"]
        if not attentions:
            raise OnnxUnavailable(f"no attention fused ({counts})")
        mask = next(value for value in model.graph.inputs if value.name == "attention_mask")
        mask_index = ir.node("Cast", [mask], attributes={"to": ir.DataType.INT32}, name="attention_mask_int32")
        model.graph.insert_before(attentions[0], mask_index)
        for node in attentions:
            sizes = node.attributes.get("qkv_hidden_sizes")
            if sizes is not None and len(set(sizes.as_ints())) == 1:
                del node.attributes["qkv_hidden_sizes"]
            if len(node.inputs) > 5 and node.inputs[5] is not None:  # the additive mask, from attention_mask
                node.replace_input_with(5, None)
                node.replace_input_with(3, mask_index.outputs[0])
        onnxscript.optimizer.optimize(model)  # drops the nodes that computed the additive mask
        ir.save(model, str(path))
    return {kind: count for kind, count in counts.items() if count}


def example_inputs(config) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two: lengths 9 and 5, so the graph is traced with a mask that matters."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, config.vocab_size, (2, 9), generator=generator)
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[1, 5:] = 0
    return input_ids, attention_mask


def check_export(wrapped: torch.nn.Module, path: Path) -> None:
    """The exported graph gives torch's logits on a batch of another size and length than the one traced."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, wrapped.model.config.vocab_size, (3, 13), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = 0
    attention_mask[2, 10:] = 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})[0]
    with torch.inference_mode():
        want = wrapped(input_ids, attention_mask).numpy()
    difference = float(abs(got - want).max())
    if not difference <= EXPORT_ATOL:
        raise OnnxUnavailable(f"the exported graph's logits differ from torch's by {difference:.2g}")


def quantize_onnx(source: Path, path: Path, reduced_range: bool) -> Path:
    """Dynamic int8: int8 weights for every MatMul with constant weights, uint8 activations quantized per call.

    One scale per output channel, not per matrix: on the fine-tuned MiniLM and the 7,600 AG News test rows, labels
    agreed with fp32 on 98.7% of rows with one scale per matrix and on 99.5% (8-bit) and 99.7% (7-bit) per channel,
    at the same latency (`distrinews bench accuracy` measures it).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with quiet_logging():
            quantize_dynamic(str(source), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=reduced_range,
                             # the fused com.microsoft nodes' outputs have no inferred type: they are float
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    except Exception as err:  # noqa: BLE001 - as for the export
        partial.unlink(missing_ok=True)
        raise OnnxUnavailable(f"ONNX int8 quantization failed: {one_line(err)}") from err
    os.replace(partial, path)
    return path


QUIET_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")  # the exporter's and the fusions' notes, pass by pass


@contextmanager
def quiet_logging():
    """Keep the exporter's and the fusions' notes and the quantizer's root-logger advice (pre-processing, which
    does not run on this graph) off the screen, even in an app that logs at INFO.

    `logging.warning` on an unconfigured root logger would also configure it for the whole process; a handler
    in place for the duration prevents that, and a filter drops the records logged meanwhile at the root.
    """
    root, loggers = logging.getLogger(), [logging.getLogger(name) for name in QUIET_LOGGERS]
    handler, drop, levels = logging.NullHandler(), (lambda record: False), [log.level for log in loggers]
    root.addHandler(handler)
    root.addFilter(drop)
    for log in loggers:
        log.setLevel(logging.ERROR)  # e.g. the exporter on torchvision ops this model never uses
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
        root.removeFilter(drop)
        root.removeHandler(handler)


# ---- the cache -------------------------------------------------------------------------------------------------

def default_cache() -> Path:
    return Path(os.environ.get("DISTRINEWS_CACHE", Path.home() / ".cache" / "distrinews")) / "onnx"


def weights_key(model: torch.nn.Module) -> str:
    """A hash of the weights, the config and the versions of what exports and quantizes them."""
    import onnxruntime

    digest = hashlib.sha256()
    digest.update(json.dumps({"config": model.config.to_dict(), "torch": torch.__version__,
                              "onnxruntime": onnxruntime.__version__, "format": 3}, sort_keys=True,
                             default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()[:20]


def prepare_folder(folder: Path, prune: bool = False) -> Path:
    """The cache folder, created and marked as just used; a temporary one when it cannot be written.

    Args:
        prune: remove all but the LRU_KEEP most recently used folders beside it (only in the default cache).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.touch()
        probe.unlink()
        os.utime(folder)  # least recently used goes first
        if prune:
            prune_cache(folder.parent, keep=LRU_KEEP, current=folder)
        return folder
    except OSError:
        return Path(tempfile.mkdtemp(prefix="distrinews-onnx-"))  # this process exports again; nothing is lost


def prune_cache(root: Path, keep: int, current: Path) -> None:
    entries = sorted((p for p in root.iterdir() if p.is_dir() and p != current), key=lambda p: p.stat().st_mtime)
    for old in entries[:max(0, len(entries) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def one_line(err: BaseException) -> str:
    """`TypeName: first line of the message`, without the terminal colours some exporter messages carry."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


__all__ = ["OnnxModel", "OnnxUnavailable", "cpu_isa", "describe_isa", "load_onnx_model", "needs_reduced_range",
           "onnx_unavailable"]
