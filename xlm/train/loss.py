"""The module DDP/FSDP wrap: the model's forward and its output layer, returning the loss sum."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xlm.model.attention_mask import AttentionMask
from xlm.objectives import Batch


class LossModule(nn.Module):
    """What DDP/FSDP wrap: runs the model *and* its output layer in ``forward`` (every parameter a step
    uses is used inside the wrapped call). ``module(batch, pred_index, padded)`` returns the fp32 *sum*
    of cross-entropies over the batch's predicted tokens; ``module(x, lengths=..., ...)`` is the model's forward, and
    ``predict`` the model's output layer, so evaluation code can call it like the bare model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args and isinstance(args[0], Batch):
            return self.loss(*args, **kwargs)
        return self.module(*args, **kwargs)

    def loss(self, b: Batch, pred_index: torch.Tensor | None = None, padded: bool | None = None,
             segments: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of cross-entropies over the predicted positions.

        ``pred_index`` ``(n_pred,)``: flat row-major indices of ``b.pred_mask`` computed on the host,
        so that selecting the positions is a gather with a known shape (``h[pred_mask]`` needs a
        device-to-host sync to learn its size). ``padded``: whether some row is padded, known on the
        host (None: the model finds out, with a sync). Same values either way. ``segments`` ``(bs, slen)``:
        packed rows' example ids (:mod:`xlm.data.packing`): attention stays within an example.
        """
        inputs = b.inputs()  # the objective's own attention mask (CAMLM, BTMLM) included
        # As descriptions, the model applies them by flex_attention or as the dense mask (the same values)
        if segments is not None:  # packed rows (MLM/TLM only, never with an objective's own mask)
            inputs["attn_mask"] = AttentionMask(segments=segments)
        elif inputs.get("attn_mask") is not None:
            inputs["attn_mask"] = AttentionMask(dense=inputs["attn_mask"])
        h = self.module(b.x, padded=padded, **inputs)
        h = h[b.pred_mask] if pred_index is None else h.reshape(-1, h.shape[-1]).index_select(0, pred_index)
        scores = self.module.predict(h, **b.head())
        return F.cross_entropy(scores.float(), b.targets, reduction="sum")

    def predict(self, h: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.module.predict(h, **kwargs)


def mark_dynamic(batch: Batch, pred_index: torch.Tensor) -> None:
    """Tell ``torch.compile`` that batch and sequence sizes and the number of predictions vary (pairs,
    the short last batch of an epoch, masking), so it compiles one graph for all of them instead of one
    per shape. Left as is: whether rows are padded, causality, the language tensor's rank (a few graphs).
    Packed batches (``data.pack``) are not marked: each packed task has one shape, compiled static."""
    b = batch
    source = (b.source.x, b.source.lengths) if b.source is not None else ()  # translation: the encoder's input
    for t in (b.x, b.lengths, b.langs, b.positions, b.pred_mask, b.targets, b.attn_mask, pred_index, *source):
        if isinstance(t, torch.Tensor):
            for dim in range(t.dim()):
                torch._dynamo.maybe_mark_dynamic(t, dim)
