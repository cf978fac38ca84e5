"""The module DDP/FSDP wrap: the model's forward and its output layer, returning the loss sum."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xlm.objectives import Batch


class LossModule(nn.Module):
    """What DDP/FSDP wrap: runs the model *and* its output layer in ``forward`` (every parameter a step
    uses is used inside the wrapped call). ``module(batch)`` returns the fp32 *sum* of cross-entropies
    over the batch's predicted tokens; ``module(x, lengths=..., ...)`` is the model's forward, and
    ``predict`` the model's output layer, so evaluation code can call it like the bare model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if len(args) == 1 and not kwargs and isinstance(args[0], Batch):
            b = args[0]
            h = self.module(b.x, lengths=b.lengths, langs=b.langs, positions=b.positions, causal=b.causal)
            scores = self.module.predict(h[b.pred_mask])
            return F.cross_entropy(scores.float(), b.targets, reduction="sum")
        return self.module(*args, **kwargs)

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self.module.predict(h)
