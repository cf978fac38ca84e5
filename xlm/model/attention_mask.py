"""Per-example attention masks as a description, made into a dense bool mask or a flex_attention BlockMask.

An :class:`AttentionMask` states *who may attend to whom* by rules that combine with AND:

- ``segments`` ``(batch, seq)`` ids: query and key attend when their ids are equal (packed rows,
  :mod:`xlm.data.packing`: one id per example, 0 on padding);
- ``sides`` ``(batch, seq)`` ids: query and key attend when their ids *differ* (ERNIE-M's CAMLM and
  BTMLM cross-side rule, :mod:`xlm.objectives.camlm`: ``attn_mask[b, i, j] = side(i) != side(j)``);
- ``dense`` ``(batch, seq, seq)`` bool: any per-example mask, True where query ``i`` may attend key ``j``.

:meth:`AttentionMask.to_dense` gives the ``(batch, seq, seq)`` bool mask of
:meth:`xlm.model.TransformerModel.forward`'s ``attn_mask`` (SDPA with a dense mask, any device, any
torch >= 2.4). :meth:`AttentionMask.block_mask` gives a ``torch.nn.attention.flex_attention``
``BlockMask`` with padding and causality folded in exactly as :func:`xlm.model.transformer.full_attention_mask`
folds them (padded queries attend everywhere: their outputs are zeroed), so both paths compute the same
values (tested on CPU). flex_attention appeared in torch 2.5 (:data:`FLEX_AVAILABLE`); torch 2.13 runs it
on CPU in the forward pass only (no backward), fused only under ``torch.compile``, and has no attention
dropout: :func:`use_flex` says when the model uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

try:  # torch >= 2.5
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

    FLEX_AVAILABLE = True
except ImportError:  # pragma: no cover - torch 2.4
    BlockMask = create_block_mask = flex_attention = None  # type: ignore[assignment,misc]
    FLEX_AVAILABLE = False

BACKENDS = ("auto", "sdpa", "flex")


@dataclass
class AttentionMask:
    """Rules of who may attend to whom in each example (see the module docstring); None: no such rule."""

    segments: Tensor | None = None  # (batch, seq) int: attend within the same id
    sides: Tensor | None = None  # (batch, seq) int or bool: attend across different ids
    dense: Tensor | None = None  # (batch, seq, seq) bool: True where query i may attend key j

    def shape(self) -> tuple[int, int]:
        """``(batch, seq)``; raises ValueError when no rule is given or the rules disagree on it."""
        rules = [t for t in (self.segments, self.sides, self.dense) if t is not None]
        # (sizes compared one by one, never hashed: under torch.compile they may be symbolic)
        if not rules or any(t.shape[0] != rules[0].shape[0] or t.shape[1] != rules[0].shape[1] for t in rules):
            raise ValueError("AttentionMask: needs at least one rule, all of one (batch, seq) shape; got "
                             f"{[tuple(t.shape) for t in rules]}")
        if self.dense is not None and (self.dense.dim() != 3 or self.dense.dtype != torch.bool):
            raise ValueError(f"AttentionMask.dense must be bool (batch, seq, seq), got {self.dense.dtype} "
                             f"{tuple(self.dense.shape)}")
        return rules[0].shape[0], rules[0].shape[1]

    def to_dense(self) -> Tensor:
        """``(batch, seq, seq)`` bool, True where query ``i`` may attend key ``j`` (padding not included)."""
        self.shape()  # checks
        mask = None
        if self.segments is not None:
            mask = self.segments.unsqueeze(2) == self.segments.unsqueeze(1)
        if self.sides is not None:
            cross = self.sides.unsqueeze(2) != self.sides.unsqueeze(1)
            mask = cross if mask is None else mask & cross
        if self.dense is not None:
            mask = self.dense if mask is None else mask & self.dense
        assert mask is not None
        return mask

    def mask_mod(self, lengths: Tensor | None, causal: bool) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
        """flex_attention's ``mask_mod(b, h, q, k) -> bool``: the rules, then key padding (``lengths``
        ``(batch,)``; None: no padding) and causality, and padded queries attend everywhere."""
        segments, sides, dense = self.segments, self.sides, self.dense

        def allowed(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
            ok = q >= 0  # True, as a tensor
            if segments is not None:
                ok = ok & (segments[b, q] == segments[b, k])
            if sides is not None:
                ok = ok & (sides[b, q] != sides[b, k])
            if dense is not None:
                ok = ok & dense[b, q, k]
            if causal:
                ok = ok & (k <= q)
            if lengths is not None:
                ok = (ok & (k < lengths[b])) | (q >= lengths[b])
            return ok

        return allowed

    def block_mask(self, lengths: Tensor | None, causal: bool) -> BlockMask:
        """The flex_attention ``BlockMask`` of :meth:`mask_mod` (one for all heads); needs torch >= 2.5."""
        if not FLEX_AVAILABLE:
            raise RuntimeError(f"flex_attention needs torch >= 2.5 (installed: {torch.__version__})")
        bs, slen = self.shape()
        device = next(t for t in (self.segments, self.sides, self.dense) if t is not None).device
        return create_block_mask(self.mask_mod(lengths, causal), bs, None, slen, slen, device=device)


def use_flex(backend: str, x: Tensor, training: bool, attention_dropout: float, compiled: bool = False) -> bool:
    """Whether attention runs flex_attention for an :class:`AttentionMask`.

    ``backend``: ``sdpa`` never; ``flex`` always (raises ValueError when attention dropout is active:
    flex_attention has none; on CPU torch 2.13 has no backward for it, so forward passes only);
    ``auto`` (the default) on CUDA under ``torch.compile`` when attention dropout is inactive: there
    flex_attention is a fused kernel that skips the masked blocks, while eager flex_attention
    materializes the scores (slower than SDPA with a dense mask) and CPU has no backward. ``compiled``:
    the layers run compiled though the caller is not (regional compilation, :mod:`xlm.train.compile`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    dropout = training and attention_dropout > 0
    if backend == "flex":
        if not FLEX_AVAILABLE:
            raise RuntimeError(f"flex_attention needs torch >= 2.5 (installed: {torch.__version__})")
        if dropout:
            raise ValueError("flex_attention has no attention dropout: use model.attention_dropout 0, eval mode, "
                             "or the sdpa/auto backend")
        return True
    return (backend == "auto" and FLEX_AVAILABLE and not dropout and x.is_cuda
            and (compiled or torch.compiler.is_compiling()))
