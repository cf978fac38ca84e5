"""Process-group helpers: who am I (torchrun or SLURM environment), start/stop, reductions, wrapping.

Every place in the trainer that needs to know about other processes goes through here:
:func:`get_dist_info` for rank/world (datasets shard by it), :func:`init_distributed` to start gloo
(CPU) or nccl (CUDA) when ``world_size > 1``, :func:`all_reduce_sums` for metrics,
:func:`all_gather_objects` for per-rank checkpoint state, :func:`wrap_model` for DDP / FSDP2 and
:class:`StopSignal` for preemption (SIGTERM / SIGUSR1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from xlm.errors import XLMError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launcher: str = "none"  # "torchrun" | "slurm" | "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise XLMError(f"environment variable {name}={value!r} is not an integer") from None


def get_dist_info() -> DistInfo:
    """Read rank and world size from torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or SLURM.

    torchrun's variables win when both are set (``srun torchrun ...``). A SLURM allocation with a
    single task is a plain single-process run.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistInfo(_env_int("RANK"), _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0,
                        _env_int("WORLD_SIZE"), "torchrun")
    if "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ and _env_int("SLURM_NTASKS") > 1:
        return DistInfo(_env_int("SLURM_PROCID"), _env_int("SLURM_LOCALID") if "SLURM_LOCALID" in os.environ else 0,
                        _env_int("SLURM_NTASKS"), "slurm")
    return DistInfo()


def _slurm_master_addr() -> str:
    nodes = os.environ.get("SLURM_JOB_NODELIST", "")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        raise XLMError("SLURM run: cannot resolve the master host (set MASTER_ADDR, or make scontrol "
                       "available)") from None


def slurm_master_port() -> int:
    """``10000 + SLURM_JOB_ID % 20000`` (as ``scripts/slurm/*.sbatch``): jobs sharing a node get different ports."""
    job = os.environ.get("SLURM_JOB_ID", "0")
    return 10000 + (int(job) if job.isdigit() else 0) % 20000


def pick_device(info: DistInfo) -> torch.device:
    """``cuda:local_rank`` when CUDA is available, else CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Start the default process group when there is more than one process (no-op otherwise)."""
    if not info.distributed or dist.is_initialized():
        return
    if info.launcher == "slurm":
        os.environ.setdefault("MASTER_ADDR", _slurm_master_addr())
        os.environ.setdefault("MASTER_PORT", str(slurm_master_port()))
        os.environ.setdefault("RANK", str(info.rank))
        os.environ.setdefault("WORLD_SIZE", str(info.world_size))
    backend = "nccl" if device.type == "cuda" else "gloo"
    # After a torchrun restart (--max-restarts) the workers can meet in a store that still holds the
    # previous group's keys (a dead rank's address); a per-attempt prefix keeps every attempt apart.
    store, _, _ = next(dist.rendezvous("env://", info.rank, info.world_size))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"xlm/attempt-{attempt}", store),
                            rank=info.rank, world_size=info.world_size,
                            device_id=device if device.type == "cuda" else None)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sums(values: dict[str, float], device: torch.device | None = None,
                    group: dist.ProcessGroup | None = None) -> dict[str, float]:
    """Sum every value over all processes in a single collective (identity when single-process).

    Metrics are carried as sums (loss x tokens, tokens, correct predictions) so that the
    reduced ratios are exact token-weighted means across ranks. With ``group`` = :func:`host_group`
    and ``device`` = CPU the values never touch the accelerator (no device synchronization).
    """
    if not dist.is_initialized() or dist.get_world_size() == 1 or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return dict(zip(keys, t.tolist()))


def host_group() -> dist.ProcessGroup | None:
    """A gloo group over every process, for host-side numbers (the step's token counts): reducing them
    over NCCL would need a device copy and a synchronization. ``None`` (the default group) when that is
    gloo already or when single-process. Collective: every rank calls it, in the same order."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or dist.get_backend() == "gloo":
        return None
    return dist.new_group(backend="gloo")


def all_reduce_max(value: float, device: torch.device | None = None) -> float:
    """The largest value over all processes (identity when single-process): flags every rank must agree on."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` when single-process). Picklable objects only."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# -- wrapping -------------------------------------------------------------------------------------
def wrap_model(module: torch.nn.Module, parallelism: str, device: torch.device,
               blocks: list[torch.nn.Module] | None = None) -> torch.nn.Module:
    """DDP (default) or FSDP2 around ``module``; ``module`` itself when single-process.

    ``module`` must compute everything that touches parameters (forward *and* the output layer) in
    its ``forward`` so DDP's reducer sees every parameter it uses. Tied weights are one parameter
    (DDP reduces it once). Parameters a step may leave unused (a language embedding when every
    drawn task is monolingual in another language is still used; none are unused in this model, but
    a task with no prediction can be) are handled with ``find_unused_parameters=True``.
    FSDP2 shards each of ``blocks`` then the root (NCCL on CUDA; it also runs on CPU with gloo).
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return module
    if parallelism == "fsdp":
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError:  # pragma: no cover - old torch
            raise XLMError("train.parallelism: fsdp needs torch >= 2.6 (torch.distributed.fsdp.fully_shard)") from None
        for block in blocks or []:
            fully_shard(block)
        fully_shard(module)
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None,
               find_unused_parameters=True)


@contextlib.contextmanager
def no_grad_sync(model: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Skip the gradient reduction of this backward unless ``sync`` (DDP ``no_sync``; FSDP2 gradient sync off)."""
    if sync:
        yield
        return
    if hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def is_fsdp(model: torch.nn.Module) -> bool:
    return hasattr(model, "set_requires_gradient_sync")


# -- preemption -----------------------------------------------------------------------------------
class StopSignal:
    """Remembers a SIGTERM / SIGUSR1 (SLURM preemption, ``scancel``, a time limit warning).

    The handler only sets a flag; the trainer checks it (all-reduced, so every rank stops at the
    same step) at the next step boundary, saves a checkpoint and returns normally (exit code 0).
    A second signal of the same kinds terminates the process at once.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.received is not None:  # a second signal: stop now, the default way
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signal.Signals(signum).name

    def install(self) -> StopSignal:
        for name in self.SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def uninstall(self) -> None:
        for sig, prev in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, prev)
        self._previous.clear()


def request_slurm_requeue() -> bool:
    """``scontrol requeue $SLURM_JOB_ID`` (rank 0, after the preemption checkpoint); False when not possible."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, timeout=60)
        return True
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False


# -- device facts ---------------------------------------------------------------------------------
# Dense peak TFLOP/s (no sparsity) for bf16/fp16 tensor cores, and fp32 (tf32 off), by device name.
PEAK_TFLOPS: dict[str, tuple[float, float]] = {  # name fragment -> (bf16/fp16, fp32)
    "B200": (2250.0, 75.0),
    "H200": (989.0, 67.0),
    "H800": (989.0, 67.0),
    "H100 PCIe": (756.0, 51.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "A800": (312.0, 19.5),
    "A40": (149.7, 37.4),
    "A10G": (125.0, 31.2),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "V100": (125.0, 15.7),
    "T4": (65.0, 8.1),
    "RTX 4090": (165.0, 82.6),
    "RTX 3090": (71.0, 35.6),
}


def peak_flops(device: torch.device, precision: str, cpu_peak_gflops: float = 0.0) -> float | None:
    """Peak FLOP/s of one device for MFU; None when unknown (MFU then reads n/a)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for frag, (half, full) in PEAK_TFLOPS.items():
            if frag in name:
                return (half if precision in ("fp16", "bf16") else full) * 1e12
        return None
    return cpu_peak_gflops * 1e9 if cpu_peak_gflops > 0 else None


def memory_bytes(device: torch.device) -> int:
    """CUDA: peak allocated since start; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux
    except (ImportError, OSError):  # pragma: no cover
        return 0
