"""A task's model inputs and targets (:class:`Batch`), and the loss every objective shares.

Encoder objectives (MLM, TLM, CLM, CAMLM, BTMLM) feed ``x`` to the model; translation objectives
(AE, MT, BT) also carry a :class:`Source`, the encoder's input, and then ``x`` is the decoder's
target side, scored by the decoder's output layer (``model.predict(h, decoder=True)``).
Every loss is the mean cross-entropy over the predicted tokens, computed by scoring only those
positions (``model.predict(h[pred_mask])``), never full-vocabulary logits everywhere.
Objectives whose batch needs the model before the loss (BTMLM's pseudo tokens) leave a ``pending``
step in the batch; :func:`prepare` runs it, without gradients, before the forward that is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm.data.datasets import RawBatch

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


@dataclass
class Source:
    """The encoder input of a translation batch (``x`` ``(bs, src_len)`` framed ``</s> .. </s>``)."""

    x: Tensor
    lengths: Tensor  # (bs,)
    langs: Tensor | int
    padded: bool | None = None  # some row shorter than x.shape[1] (None: the model finds out, with a sync)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Source:
        """The same source with ``fn`` applied to each of its tensors (moving, pinning)."""
        f = lambda t: fn(t) if isinstance(t, Tensor) else t  # noqa: E731
        return Source(f(self.x), f(self.lengths), f(self.langs), self.padded)


@dataclass
class Batch:
    """Model inputs and the prediction targets of one task (tensors, batch-first)."""

    task: Task
    x: Tensor  # (bs, slen) corrupted input ids
    lengths: Tensor  # (bs,)
    langs: Tensor | int
    positions: Tensor | None
    pred_mask: Tensor  # (bs, slen) bool: positions whose output is scored
    targets: Tensor  # (n_pred,) ids to predict, in row-major order of pred_mask
    causal: bool
    attn_mask: Tensor | None = None  # (bs, slen, slen) bool, True: query i may attend key j (CAMLM, BTMLM)
    pending: Any = None  # objective-specific step run by prepare() with the model (BTMLM, BT generation)
    source: Source | None = None  # translation objectives: the encoder's input; x is then the target side

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def n_pred(self) -> int:
        return int(self.targets.numel())

    def inputs(self) -> dict[str, Any]:
        """Keyword arguments of the model's forward besides ``x``."""
        out = {"lengths": self.lengths, "langs": self.langs, "positions": self.positions, "causal": self.causal,
               "attn_mask": self.attn_mask}
        if self.source is not None:
            out["source"] = self.source
        return out

    def head(self) -> dict[str, Any]:
        """Keyword arguments of ``model.predict``: the decoder's output layer for translation batches."""
        return {} if self.source is None else {"decoder": True}

    def map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        """The same batch with ``fn`` applied to each of its tensors, the source's included (not the
        pending step's: it has its own ``to``)."""
        f = lambda t: fn(t) if isinstance(t, Tensor) else t  # noqa: E731
        return replace(self, x=f(self.x), lengths=f(self.lengths), langs=f(self.langs), positions=f(self.positions),
                       pred_mask=f(self.pred_mask), targets=f(self.targets), attn_mask=f(self.attn_mask),
                       source=self.source.map(fn) if self.source is not None else None)

    def to(self, device: torch.device) -> Batch:
        if device.type == "cpu":
            return self
        moved = self.map(lambda t: t.to(device, non_blocking=True))
        return replace(moved, pending=self.pending.to(device) if self.pending is not None else None)


def as_batch(task: Task, raw: RawBatch, x: np.ndarray, pred_mask: np.ndarray, targets: np.ndarray,
             causal: bool, attn_mask: np.ndarray | None = None, pending: Any = None) -> Batch:
    t = torch.from_numpy
    langs = raw.langs if isinstance(raw.langs, int) else t(raw.langs)
    positions = None if raw.positions is None else t(raw.positions)
    mask = None if attn_mask is None else t(attn_mask)
    return Batch(task, t(x), t(raw.lengths), langs, positions, t(pred_mask), t(targets), causal, mask, pending)


def prepare(model: nn.Module, batch: Batch) -> Batch:
    """Run the batch's pending model step (none for MLM/TLM/CLM/CAMLM), without gradients.

    ``model``: anything with the model's forward and ``predict`` (the bare model, the trainer's loss
    module -- the FSDP root); a DDP wrapper is unwrapped. The returned batch has no pending step.
    """
    if batch.pending is None:
        return batch
    with torch.no_grad():
        batch = batch.pending.run(model if hasattr(model, "predict") else model.module, batch)
    return replace(batch, pending=None)


def predict(model: nn.Module, batch: Batch) -> Tensor:
    """Scores ``(n_pred, n_words)`` for the predicted positions only."""
    h = model(batch.x, **batch.inputs())
    return getattr(model, "module", model).predict(h[batch.pred_mask], **batch.head())  # through a DDP wrapper too


def loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean cross-entropy over the predicted tokens (computed in fp32 under autocast)."""
    return F.cross_entropy(predict(model, batch).float(), batch.targets)


@torch.no_grad()
def score(model: nn.Module, batch: Batch) -> tuple[float, int, int]:
    """``(sum of cross-entropy, predicted tokens, correct argmax predictions)`` for evaluation."""
    logits = predict(model, batch).float()
    xent = F.cross_entropy(logits, batch.targets, reduction="sum")
    correct = (logits.argmax(-1) == batch.targets).sum()
    return float(xent), batch.n_pred, int(correct)
