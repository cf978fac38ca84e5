"""Process-group helpers: who am I (torchrun or SLURM environment), start/stop, one metric reduce.

Kept deliberately small. Every place in the trainer that needs to know about other processes goes
through here: :func:`get_dist_info` for rank/world (datasets shard by it), :func:`init_distributed`
to start gloo (CPU) or nccl (CUDA) when ``world_size > 1``, and :func:`all_reduce_sums` for metrics,
so that DDP/FSDP wrapping can slot in without touching the rest of the loop.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

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
        if "MASTER_PORT" not in os.environ:
            raise XLMError("SLURM run: set MASTER_PORT (e.g. export MASTER_PORT=$((10000 + SLURM_JOB_ID % 20000)))")
        os.environ.setdefault("RANK", str(info.rank))
        os.environ.setdefault("WORLD_SIZE", str(info.world_size))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                            device_id=device if device.type == "cuda" else None)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sums(values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Sum every value over all processes in a single collective (identity when single-process).

    Metrics are carried as sums (loss x tokens, tokens, correct predictions) so that the
    reduced ratios are exact token-weighted means across ranks.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1 or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist()))
