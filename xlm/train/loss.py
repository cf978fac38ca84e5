"""The module DDP/FSDP wrap: the model's forward and its output layer, returning the loss sum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xlm.model.attention_mask import AttentionMask
from xlm.objectives import Batch
from xlm.train.compile import Region, compile_regions


class LossModule(nn.Module):
    """What DDP/FSDP wrap: runs the model *and* its output layer in ``forward`` (every parameter a step
    uses is used inside the wrapped call). ``module(batch, pred_index, padded)`` returns the fp32 *sum*
    of cross-entropies over the batch's predicted tokens; ``module(x, lengths=..., ...)`` is the model's forward, and
    ``predict`` the model's output layer, so evaluation code can call it like the bare model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module = model
        self.output_loss: Callable[..., torch.Tensor] = output_loss
        self.regions: list[Region] = []

    def compile_regions(self, backend: str) -> None:
        """Regional compilation (:mod:`xlm.train.compile`): the model's layers and :func:`output_loss`."""
        self.regions = compile_regions(self.module, backend)
        self.output_loss = Region(output_loss, backend)
        self.regions.append(self.output_loss)

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
        for region in self.regions:  # packed batches have one shape per task: compiled static
            region.dynamic = segments is None
        h = self.module(b.x, padded=padded, **inputs)
        if pred_index is None:
            return F.cross_entropy(self.module.predict(h[b.pred_mask], **b.head()).float(), b.targets,
                                   reduction="sum")
        return self.output_loss(self.module, h, pred_index, b.targets, **b.head())

    def predict(self, h: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.module.predict(h, **kwargs)


def output_loss(model: nn.Module, h: torch.Tensor, pred_index: torch.Tensor, targets: torch.Tensor,
                **head: Any) -> torch.Tensor:
    """fp32 sum of cross-entropies of the states ``h`` ``(batch, seq, dim)`` at the flat positions
    ``pred_index`` ``(n_pred,)`` against ``targets`` ``(n_pred,)`` (ignore index -100: no loss);
    ``head``: the model's ``predict`` arguments (``decoder=True`` for translation)."""
    h = h.reshape(-1, h.shape[-1]).index_select(0, pred_index)
    return F.cross_entropy(model.predict(h, **head).float(), targets, reduction="sum")


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
