"""Run outputs a person and a program can read: console + ``train.log``, ``metrics.jsonl``, TensorBoard.

Only the main process writes files; other ranks log warnings to the console. ``metrics.jsonl``
holds one JSON object per line (``{"kind": "train"|"eval", "step": ..., ...}``). When a run resumes
from a checkpoint, records of steps after it (work that is about to be redone) are dropped, so the
file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from xlm.errors import XLMError
from xlm.io import atomic_write_text

_FORMAT = "%(asctime)s | %(message)s"


def get_logger(name: str = "xlm") -> logging.Logger:
    return logging.getLogger(name)


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
        self.logger.addHandler(console)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._jsonl = None
        self._tb = None
        self._tb_enabled = tensorboard and is_main
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
            fh.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
            self.logger.addHandler(fh)
        if self._tb_enabled:
            try:
                import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)
            except ImportError:
                raise XLMError("run.tensorboard: true needs the tensorboard package "
                               "(pip install tensorboard), or set run.tensorboard=false") from None

    def info(self, msg: str) -> None:
        self.logger.info(msg)

    def warning(self, msg: str) -> None:
        self.logger.warning(f"WARNING: {msg}")

    def start(self, resume_step: int) -> None:
        """Open ``metrics.jsonl`` and TensorBoard, first dropping records after ``resume_step``."""
        if not self.is_main:
            return
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
        for h in list(self.logger.handlers):
            self.logger.removeHandler(h)
            h.close()


def format_train_line(step: int, max_steps: int, values: dict[str, Any], task_losses: dict[str, float]) -> str:
    """``step 100/2000 | loss 5.12 | MLM-en 5.01 MLM-fr 5.22 | lr 1.2e-04 | gnorm 1.23 | 12.3k tok/s``."""
    parts = [f"step {step}/{max_steps}", f"loss {values['loss']:.4f}"]
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
