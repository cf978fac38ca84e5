"""Counters a checkpoint carries (:class:`TrainState`) and the metrics summed over a log interval."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Counters saved in every checkpoint (plain numbers, so they load with weights_only)."""

    step: int = 0
    updates: int = 0
    tokens: int = 0  # input tokens processed (all ranks)
    best_metric: float | None = None
    best_step: int = -1
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    nan_streak: int = 0
    train_seconds: float = 0.0
    overflow_steps: int = 0  # fp16: steps skipped by the loss scaler (gradient overflow)
    world_size: int = 1  # of the run that wrote the checkpoint



@dataclass
class Interval:
    steps: int = 0
    steps_with_loss: int = 0
    loss: float = 0.0
    grad_norm: float = 0.0
    tokens: int = 0
    predicted: int = 0
    seconds: float = 0.0
    tasks: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, out: dict[str, Any]) -> None:
        """One step's statistics (``seconds`` is added by the loop: the time spent, waits included)."""
        self.steps += 1
        if out["loss"] is not None:
            self.steps_with_loss += 1
            self.loss += out["loss"]
        self.grad_norm += out["grad_norm"] if math.isfinite(out["grad_norm"]) else 0.0
        self.tokens += out["tokens"]
        self.predicted += out["predicted"]
        for k, v in out["tasks"].items():
            self.tasks[k].append(v)

