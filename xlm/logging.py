"""Run outputs a person and a program can read: console + ``train.log``, ``metrics.jsonl``, TensorBoard.

Only the main process writes files; other ranks log warnings to the console. Nothing is written
before :meth:`RunLogger.start` (a run that fails before it leaves no folder behind); lines logged
earlier are kept and written to ``train.log`` then. Every line carries the clock time and the time
elapsed since the process started. ``metrics.jsonl`` holds one JSON object per line
(``{"kind": "train"|"eval", "step": ..., ...}``). When a run resumes from a checkpoint, records of
steps after it (work that is about to be redone) are dropped, so the file reads as one
uninterrupted run. TensorBoard is optional: without the package, a warning says so and the run goes on.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import sys
import time
from pathlib import Path
from typing import Any

from xlm.io import atomic_write_text

_FORMAT = "%(asctime)s | %(elapsed)s | %(message)s"
_START = time.time()  # (this module is imported as the process starts its work)


def get_logger(name: str = "xlm") -> logging.Logger:
    return logging.getLogger(name)


def hms(seconds: float) -> str:
    """``3725.2`` -> ``1:02:05``."""
    s = max(int(seconds), 0)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _Elapsed(logging.Filter):
    """Adds ``record.elapsed``: time since the process started (``H:MM:SS``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.elapsed = hms(record.created - _START)
        return True


class RunLogger:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True, is_main: bool = True, debug: bool = False):
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self.logger = get_logger()
        self.logger.setLevel(logging.DEBUG if debug else logging.INFO)
        self.logger.propagate = False
        for h in list(self.logger.handlers):  # a second Trainer in the same process (tests)
            self.logger.removeHandler(h)
            h.close()
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        console.setLevel(logging.INFO if is_main else logging.WARNING)
        console.addFilter(_Elapsed())
        self.logger.addHandler(console)
        # Lines logged before start() wait here, to go into train.log once the folder is made.
        self._early = logging.handlers.BufferingHandler(capacity=10_000)
        self._early.addFilter(_Elapsed())
        if is_main:
            self.logger.addHandler(self._early)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._jsonl = None
        self._tb = None
        self._tb_enabled = tensorboard and is_main
        if self._tb_enabled:
            try:
                import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)
            except ImportError:
                self._tb_enabled = False
                self.warning("run.tensorboard: the tensorboard package is not installed (pip install tensorboard, "
                             "or set run.tensorboard=false): metrics go to metrics.jsonl only")

    def info(self, msg: str) -> None:
        self.logger.info(msg)

    def warning(self, msg: str) -> None:
        self.logger.warning(f"WARNING: {msg}")

    def start(self, resume_step: int, restart: bool = False) -> None:
        """Open ``train.log``, ``metrics.jsonl`` and TensorBoard, first dropping records after ``resume_step``.

        ``restart``: the folder's earlier attempt left no step checkpoint and the run starts again
        at step 0; its records are moved to ``metrics.before-restart.jsonl``.
        """
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
        fh.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
        fh.addFilter(_Elapsed())
        for record in self._early.buffer:
            fh.handle(record)
        self.logger.removeHandler(self._early)
        self._early.buffer.clear()
        self.logger.addHandler(fh)
        if restart and self.metrics_path.exists():
            self.metrics_path.replace(self.run_dir / "metrics.before-restart.jsonl")
            self.info(f"earlier records moved to {self.run_dir / 'metrics.before-restart.jsonl'}")
        if self.metrics_path.exists():
            kept = []
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if isinstance(record, dict) and record.get("step", 0) <= resume_step:
                    kept.append(line)
            atomic_write_text(self.metrics_path, "".join(f"{line}\n" for line in kept))
        self._jsonl = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if self._tb_enabled:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step else None
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)

    def record(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append one JSON line and the numeric values to TensorBoard (``kind/name``)."""
        if not self.is_main or self._jsonl is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
        self._jsonl.write(json.dumps({"kind": kind, "step": step, **clean}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._early.buffer.clear()
        for h in list(self.logger.handlers):
            self.logger.removeHandler(h)
            h.close()


def format_train_line(step: int, max_steps: int, values: dict[str, Any], task_losses: dict[str, float],
                      eta_seconds: float | None = None) -> str:
    """``step 100/2000 | eta 0:12:03 | loss 5.12 | MLM-en 5.01 MLM-fr 5.22 | lr 1.2e-04 | gnorm 1.23 | 12.3k tok/s``.

    ``loss`` is the lambda-weighted mean of the tasks' losses (``-`` when nothing was predicted).
    """
    parts = [f"step {step}/{max_steps}"]
    if eta_seconds is not None:
        parts.append(f"eta {hms(eta_seconds)}")
    loss = values.get("loss")
    parts.append(f"loss {loss:.4f}" if loss is not None and math.isfinite(loss) else "loss -")
    if task_losses:
        parts.append(" ".join(f"{k} {v:.3f}" for k, v in task_losses.items()))
    parts += [f"lr {values['lr']:.3e}", f"gnorm {values['grad_norm']:.2f}",
              f"{values['tokens_per_s'] / 1000:.1f}k tok/s"]
    return " | ".join(parts)


def format_eval_lines(step: int, metrics: dict[str, float]) -> list[str]:
    lines = [f"evaluation at step {step}:"]
    width = max((len(k) for k in metrics), default=0)
    lines += [f"  {k:<{width}} {v:10.3f}" for k, v in metrics.items()]
    return lines
