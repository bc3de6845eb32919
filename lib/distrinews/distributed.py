"""The process group: the only module that reads torchrun's RANK, LOCAL_RANK and WORLD_SIZE.

`setup()` returns a `DistContext` that everything else receives. Launched plainly (`python -m distrinews`)
it describes a single process and creates no process group, so the same code runs both ways.

Switches, read from the environment before the group starts:
- `DISTRINEWS_DEBUG=1` sets `NCCL_DEBUG=INFO` and `TORCH_DISTRIBUTED_DEBUG=DETAIL` (unless already set):
  NCCL prints its topology and transports, torch checks that every rank calls the same collectives.
- `NCCL_P2P_DISABLE=1` makes NCCL move data through host memory instead of GPU peer-to-peer. Whether
  Kaggle's T4 pair does P2P is unverified; if NCCL hangs or errors on its first all-reduce, set it.
`distrinews diagnose` (under torchrun) runs one all-reduce and prints what the group looks like.
"""

from __future__ import annotations

import datetime
import gc
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .precision import unsupported_gpu_message


class DistError(RuntimeError):
    """A launch that cannot work; raised before any collective could hang."""


@dataclass(frozen=True)
class DistContext:
    rank: int = 0  # global rank, 0 .. world_size - 1
    local_rank: int = 0  # rank on this machine: picks the GPU
    world_size: int = 1  # processes in the job, across all machines
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None when no process group exists

    @property
    def is_main(self) -> bool:
        """Rank 0 of the whole job: logs, progress bars and the files every node shares."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Rank 0 of this machine: per-node work such as warming a local cache."""
        return self.local_rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def restart_count() -> int:
    """How many times torchrun has restarted this job's workers (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def group_rank_and_size() -> tuple[int, int]:
    """(rank, world size) in the process group this process has joined; (0, 1) outside any group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def torchrun_ranks() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) when launched plainly.

    Also applies the `DISTRINEWS_DEBUG` switch, which must happen before the process group starts.
    """
    if not launched_by_torchrun():
        return 0, 0, 1
    apply_debug_switch()
    return int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])


def cpu_threads(requested: int = 0, cores: int | None = None) -> int:
    """Torch CPU threads for this process: `requested` (--num-threads) when given, else the user's
    OMP_NUM_THREADS, else this process's share of this machine's cores (at least 1), else torch's default.

    torchrun sets OMP_NUM_THREADS=1 in every worker when it starts several on a machine, with a warning, so
    2 processes on an 8-core laptop would train on 2 cores. It sets the variable only when its own
    environment lacks it, so the launcher's environment as it started (/proc/PPID/environ) tells its default
    from a user's OMP_NUM_THREADS=1; where that cannot be read (macOS, Windows), 1 with several local
    processes is taken for torchrun's default (pass --num-threads 1 to insist).

    Args:
        cores: the machine's cores (default: those this process may run on); tests fake it.
    """
    if requested:
        return requested
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if launched_by_torchrun() else 1
    omp = os.environ.get("OMP_NUM_THREADS")
    launcher = launcher_environment()
    torchrun_default = omp == "1" and local > 1 and (launcher is None or "OMP_NUM_THREADS" not in launcher)
    if omp and not torchrun_default:
        return max(1, int(omp)) if omp.isdigit() else torch.get_num_threads()
    if local == 1:
        return torch.get_num_threads()
    if cores is None:  # the cores this process may run on (a container's or taskset's share), where known
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // local)


def launcher_environment() -> dict[str, str] | None:
    """The parent process's environment as it was when it started (torchrun's, for a worker); None if unreadable."""
    try:
        raw = Path(f"/proc/{os.getppid()}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)


def set_cpu_threads(requested: int, device: torch.device) -> int:
    """Apply `cpu_threads` on a CPU rank (a GPU rank keeps torch's setting); returns the threads torch runs."""
    if device.type == "cpu" or requested:
        torch.set_num_threads(cpu_threads(requested))
    return torch.get_num_threads()


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """This process's device: `cuda:LOCAL_RANK` when CUDA is asked for or available ("auto"), else the CPU.

    A launch with more processes on this machine than visible GPUs fails here, before any collective could hang,
    unless `DISTRINEWS_BACKEND=gloo` asks for ranks to share the GPUs (see `backend_for`).
    """
    if not pick_cuda(requested):
        return torch.device("cpu")
    if backend_override() == "gloo":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if launched_by_torchrun() else 1
        check_enough_gpus(local_rank, local_world_size)
        device = torch.device("cuda", local_rank)
    unsupported = unsupported_gpu_message(device.index)  # e.g. a P100 under a torch built without sm_60
    if unsupported:
        raise DistError(unsupported)
    return device


def backend_override() -> str:
    value = os.environ.get("DISTRINEWS_BACKEND", "")
    if value not in ("", "nccl", "gloo"):
        raise DistError(f"DISTRINEWS_BACKEND must be nccl or gloo (or unset); got {value!r}")
    return value


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPUs, and gloo between GPUs where this PyTorch has no NCCL (one line says so).

    `DISTRINEWS_BACKEND=gloo` makes GPU ranks use gloo instead, for exactly one case: several ranks sharing one
    GPU, which NCCL refuses ("Duplicate GPU detected"). `make gpu-check` runs DDP's device paths that way on a
    single-GPU machine; it is slow, and for checking only.
    """
    if backend_override() or device.type != "cuda":
        return backend_override() or "gloo"
    if not dist.is_nccl_available():  # PyTorch for Windows (and macOS) is built without NCCL
        if torchrun_ranks()[0] == 0:
            print("distributed: this PyTorch has no NCCL (Windows builds lack it): GPU ranks use gloo, "
                  "which works and is slower", flush=True)
        return "gloo"
    return "nccl"


def setup(device: str = "auto", timeout_s: int = 600) -> DistContext:
    """Join the process group when launched by torchrun; otherwise describe one local process.

    The tools (`distrinews evaluate`, `diagnose`, `bench`) use this; the training programs show the same steps
    in their own code.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda".
        timeout_s: how long a collective may wait before it fails (torch defaults: 10 minutes for NCCL, 30 for gloo).
    """
    rank, local_rank, world_size = torchrun_ranks()
    dev = pick_device(device, local_rank)
    if not launched_by_torchrun():
        return DistContext(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # DDP: set the device before init, or every rank allocates on GPU 0
    backend, timeout = backend_for(dev), datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(  # DDP: join the group through this attempt's keys of torchrun's store
        backend=backend, store=attempt_store(timeout), rank=rank, world_size=world_size, timeout=timeout,
        device_id=dev if backend == "nccl" else None)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, backend=backend)


def attempt_store(timeout: datetime.timedelta) -> dist.Store:
    """torchrun's rendezvous store, with keys that belong to this launch attempt alone.

    When torchrun restarts a job (`--max-restarts`), the new workers share the agent's TCP store with the dead
    attempt, whose keys are still there under the same names: a new rank can read a dead peer's address and fail
    to join ("connectFullMesh ... Connection refused") or hang (pytorch/pytorch#135712). Torch's own prefix by
    restart count was removed because nodes can disagree on that count. Instead, rank 0 of each attempt draws a
    random id and answers every other rank's own random ticket with it; all ranks then use keys under that id,
    which no earlier attempt can have written. Without torchrun's shared store (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1,
    or another env:// launcher) rank 0 hosts a new store every attempt, which is returned unchanged.
    The prefix cannot hide NCCL's own keys, which it writes past every prefix: rank 0 deletes those a dead
    attempt left (`DEAD_ATTEMPT_KEYS`) before it lets any rank go on.

    Started without torchrun (`python train_ddp.py`), the process is a group of one: an in-memory store.
    """
    if not launched_by_torchrun():
        return dist.HashStore()
    store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
    store.set_timeout(timeout)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return store
    me = uuid.uuid4().hex
    if rank == 0:
        for key in DEAD_ATTEMPT_KEYS:  # before any rank of this attempt is answered, so before any group starts
            store.delete_key(key)
        answered = {peer: None for peer in range(1, world_size)}  # the ticket each rank was last answered for
        deadline = time.monotonic() + timeout.total_seconds()
        while answered:
            for peer in list(answered):
                if store.check([f"attempt/ack/{me}/{peer}"]):
                    del answered[peer]
                elif store.check([f"attempt/join/{peer}"]):
                    ticket = store.get(f"attempt/join/{peer}").decode()
                    if ticket != answered[peer]:  # possibly a dead attempt's ticket: answer anyway, wait for the ack
                        store.set(f"attempt/answer/{ticket}", me)
                        answered[peer] = ticket
            if answered:
                if time.monotonic() > deadline:
                    raise DistError(f"ranks {sorted(answered)} never joined this attempt within {timeout}")
                time.sleep(0.01)
        attempt = me
    else:
        store.set(f"attempt/join/{rank}", me)
        attempt = store.get(f"attempt/answer/{me}").decode()  # only this attempt's rank 0 knows this ticket
        store.set(f"attempt/ack/{attempt}/{rank}", "1")
    return dist.PrefixStore(f"attempt/{attempt}/", store)


# Keys a failed NCCL group writes to the raw store, past every prefix: ProcessGroupNCCL keeps a `globalStore_`,
# its store with all PrefixStores unwrapped (getUnderlyingNonPrefixStore), and on a collective timeout its watchdog
# sets "exception_dump" there to make every rank's heartbeat monitor dump its flight recorder, then exit. A new
# attempt's monitor polls the same key in the same agent store, so a leftover one would kill healthy workers.
DEAD_ATTEMPT_KEYS = ("exception_dump",)


def apply_debug_switch() -> None:
    if os.environ.get("DISTRINEWS_DEBUG") == "1":
        os.environ.setdefault("NCCL_DEBUG", "INFO")  # must be set before NCCL initialises
        os.environ.setdefault("TORCH_DISTRIBUTED_DEBUG", "DETAIL")  # must be set before init_process_group


def pick_cuda(device: str) -> bool:
    if device not in ("auto", "cpu", "cuda"):
        raise DistError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise DistError("device 'cuda' (and so NCCL) was asked for but no CUDA GPU is visible; "
                        "on Kaggle turn on Settings -> Accelerator -> GPU T4 x2, or pass --device cpu")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def check_enough_gpus(local_rank: int, local_world_size: int) -> None:
    visible = torch.cuda.device_count()
    if local_world_size > visible:
        raise DistError(f"{local_world_size} processes per node but only {visible} visible GPU(s): "
                        f"launch with --nproc_per_node={visible}, or pass --device cpu to train on CPU with gloo")


def teardown(ctx: DistContext) -> None:
    """Leave the process group, after the last collective. `del` the DDP wrapper first where a name still holds it.

    A DDP wrapper that outlives its group is destroyed at interpreter exit, after the group, and gloo's threads
    can then abort the exit: the rank "fails" after its work is done. DDP holds itself in reference cycles, so
    `del` alone does not free it; the gc.collect() here does.
    """
    if ctx.is_distributed and dist.is_initialized():
        gc.collect()  # DDP: free DDP wrappers nothing refers to any more, while their process group still exists
        dist.destroy_process_group()  # DDP: leave cleanly so torchrun sees a normal exit


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()  # DDP: wait until every rank got here (e.g. rank 0 finished writing a file)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over all ranks in place; a no-op in a single process."""
    if ctx.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)  # DDP: every rank must call this, never behind is_main
    return tensor


def diagnose(ctx: DistContext) -> dict:
    """One all-reduce across all ranks, plus what every rank runs on; returns the same report on every rank."""
    ones = torch.ones(1, device=ctx.device)
    all_reduce_sum(ones, ctx)  # DDP: returns once every rank's 1 is in the sum and the sum is on every rank
    name = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu"
    mine = {"rank": ctx.rank, "local_rank": ctx.local_rank, "device": str(ctx.device), "name": name}
    everyone = [mine]
    if ctx.is_distributed:
        everyone = [None] * ctx.world_size
        dist.all_gather_object(everyone, mine)  # DDP: a collective, called on every rank
    nccl = torch.cuda.nccl.version() if torch.cuda.is_available() else None
    return {
        "backend": ctx.backend or "none (single process)",
        "world_size": ctx.world_size,
        "all_reduce_sum": float(ones.item()),
        "all_reduce_ok": int(ones.item()) == ctx.world_size,
        "ranks": everyone,
        "nccl_version": ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl,
        "nccl_p2p_disable": os.environ.get("NCCL_P2P_DISABLE", "unset"),
        "torch": torch.__version__,
    }
