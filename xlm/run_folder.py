"""Run-folder safety: one process per folder, and a restart never silently replaces another run's results.

**The lock.** Rank 0 holds a POSIX record lock (``fcntl.lockf``) on ``RUN/.lock`` for as long as it
runs; a second training process on the same folder stops with one line naming the holder (host,
pid, start time, SLURM job). The kernel drops the lock when the holder dies, however it dies
(``kill -9`` included), so a killed run never blocks its restart: not by hand, not under
``torchrun --max-restarts`` (the agent restarts workers only after the old ones are gone), not after
a SLURM requeue. On NFS the lock lives on the server (it follows the holder's death; if the holder's
whole node disappears, the server frees it when that client's lease expires, 90 s by default on
NFSv4). Lustre needs the ``flock`` mount option. Where the file system refuses locks, training warns
and runs unlocked. The file's text (who holds it) is informative only: the lock is what counts.

**Restarting a folder.** Resuming from a step checkpoint is the trainer's business. When there is
none, the folder may still hold results of an earlier attempt (``best.pt``, ``config.yaml``): the run
starts again only if they come from the same config (all keys but :data:`RESUMABLE_CHANGES`) and the
same data (fingerprint of the vocabulary and corpora), and then seeds its best metric from
``best.pt``, so ``best.pt`` is only ever replaced by a better model of the same run. Otherwise it
refuses, naming what differs.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import yaml

from xlm.config import Config, config_from_dict, to_dict
from xlm.errors import XLMError
from xlm.serialization import safe_load

# Keys of the config that may change when a run is resumed or restarted (everything else must match).
RESUMABLE_CHANGES = ("run.dir", "run.log_every", "run.tensorboard", "run.debug", "train.max_steps", "train.eval_every",
                     "train.save_every", "train.keep_last", "train.early_stopping_patience", "train.nan_tolerance",
                     "train.eval_max_sentences", "train.eval_at_start", "train.eval_only", "train.precision",
                     "train.compile", "train.parallelism", "train.peak_tflops", "data.path",
                     "init.from", "init.strict", "init.emb",
                     "optim.implementation", "train.compile_backend", "train.compile_scope", "train.prefetch",
                     "model.checkpoint_activations", "data.pack")
# data.preprocess only states how the text was prepared (recorded in checkpoints): stating it later is fine.
RESUMABLE_PREFIXES = ("data.preprocess.",)
LOCK_NAME = ".lock"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_changes(old: dict, new: Config) -> tuple[list[str], list[str]]:
    """``(blocking, allowed)`` dotted keys whose values differ between a stored config dict and ``new``."""
    before, after = flatten(to_dict(config_from_dict(old))), flatten(to_dict(new))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    allowed = [k for k in changed if k in RESUMABLE_CHANGES or k.startswith(RESUMABLE_PREFIXES)]
    return [k for k in changed if k not in allowed], allowed


def describe_changes(old: dict, new: Config, keys: list[str]) -> str:
    before, after = flatten(to_dict(config_from_dict(old))), flatten(to_dict(new))
    return ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys[:5])


class RunLock:
    """``RUN/.lock``, held by one process (see the module docstring for the rules)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock (creating the folder); returns a warning when the file system cannot lock.

        Raises :class:`XLMError` naming the holder when another live process has it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN):
                holder = _read_holder(fd)
                os.close(fd)
                raise XLMError(f"{self.path.parent}: another training process is using this run folder "
                               f"({holder or 'holder unknown'}); wait for it to end, or use another run.dir") from None
            os.close(fd)  # ENOLCK, EOPNOTSUPP...: a file system without locks
            return (f"{self.path}: the file system does not support locks ({e.strerror}); running unlocked: "
                    "make sure no other process trains in this folder")
        info = (f"host {socket.gethostname()}, pid {os.getpid()}, started "
                f"{datetime.datetime.now().isoformat(timespec='seconds')}"
                + (f", SLURM job {os.environ['SLURM_JOB_ID']}" if os.environ.get("SLURM_JOB_ID") else "") + "\n")
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the lock; the file stays (deleting it would race)
            self._fd = None


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 512, 0).decode().strip()
    return ""


def check_restart(run_dir: Path, cfg: Config, data_fingerprint: str, vocab_words: list[str],
                  best_name: str = "best.pt") -> tuple[float | None, int]:
    """Checks for a folder without step checkpoints; returns ``(best metric, its step)`` from ``best.pt``.

    ``(None, -1)`` when the folder holds no earlier result. Raises :class:`XLMError` when it holds
    results of another config or other data.
    """
    stored = run_dir / "config.yaml"
    if stored.is_file():
        try:
            old = yaml.safe_load(stored.read_text(encoding="utf-8"))
            blocking, _ = config_changes(old, cfg)
        except (yaml.YAMLError, XLMError, UnicodeDecodeError, AttributeError, TypeError) as e:
            raise XLMError(f"{stored}: unreadable ({e}); this folder holds another run's results: use a new "
                           "run.dir") from None
        if blocking:
            raise XLMError(f"{stored}: this folder holds results of another config "
                           f"({describe_changes(old, cfg, blocking)}); use a new run.dir or restore these values")
    best = run_dir / "checkpoints" / best_name
    if not best.is_file():
        return None, -1
    ckpt = safe_load(best)
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise XLMError(f"{best}: not a checkpoint of this trainer; move it away or use a new run.dir")
    blocking, _ = config_changes(ckpt["config"], cfg)
    if blocking:
        raise XLMError(f"{best}: comes from another config ({describe_changes(ckpt['config'], cfg, blocking)}); "
                       "use a new run.dir, or move it away to start this one")
    same_data = (ckpt["data_fingerprint"] == data_fingerprint if ckpt.get("data_fingerprint")
                 else list(ckpt.get("dictionary", {}).get("words", [])) == vocab_words)
    if not same_data:
        raise XLMError(f"{best}: comes from other data than {cfg.data.path} (another vocabulary or corpora); use "
                       "a new run.dir, or move it away to start this one")
    vm = cfg.train.validation_metric.lstrip("_")
    value = (ckpt.get("metrics") or {}).get(vm)
    if value is None:
        raise XLMError(f"{best}: has no {vm!r} to compare with (train.validation_metric); move it away to start")
    return float(value), int(ckpt.get("step", -1))


def remove_half_made(run_dir: Path) -> None:
    """Delete a run folder this process created and that holds no checkpoint (a run that failed before step 1)."""
    if not (run_dir / "checkpoints").is_dir() or not any((run_dir / "checkpoints").glob("*.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)
