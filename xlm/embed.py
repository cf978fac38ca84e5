"""Sentence and token embeddings from any pretrained model, raw text in.

The model's own pipeline is applied (:mod:`xlm.text`: its tokenizer settings, BPE codes and
dictionary, and the original framing ``</s> w1 ... wn </s>``). Sentences are batched by length and
run without gradients on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from xlm import text
from xlm.errors import XLMError
from xlm.text import TextPipeline

if TYPE_CHECKING:
    from xlm.pretrained import Pretrained

Pooling = Literal["first", "mean"]


@dataclass
class TokenStates:
    """Per-token output for one sentence: its BPE pieces and their hidden states ``(n_pieces, emb_dim)``."""

    pieces: list[str]
    states: Tensor


def _pipeline(p: Pretrained) -> TextPipeline:
    """The model's raw-text pipeline (see :func:`xlm.text.pipeline`; kept for callers of this name)."""
    return text.pipeline(p)


@torch.no_grad()
def encode(
    p: Pretrained,
    sentences: Sequence[str],
    lang: str,
    *,
    pooling: Pooling = "first",
    batch_size: int = 32,
    tokenized: bool = False,
    per_token: bool = False,
    layer: int | None = None,
) -> Tensor | list[TokenStates]:
    """Embed ``sentences`` of language ``lang``.

    Returns ``(n, emb_dim)`` sentence embeddings: ``pooling="first"`` takes the state of the first
    ``</s>`` (the original's sentence embedding), ``"mean"`` averages the states of the BPE pieces
    (framing tokens and padding excluded). With ``per_token=True``, returns each sentence's pieces
    and their states instead. ``tokenized=True`` skips Moses tokenization (BPE is still applied).
    ``layer=k`` reads the states of layer ``k`` instead of the last one, for probing: 0 is the
    embedding output, ``n_layers`` the last layer, negative values count from the end (-1: last).
    """
    if pooling not in ("first", "mean"):
        raise XLMError(f"pooling: expected 'first' or 'mean', got {pooling!r}")
    model = p.model
    if layer is not None and not -(model.n_layers + 1) <= layer <= model.n_layers:
        raise XLMError(f"layer: {layer} is out of range for a model of {model.n_layers} layers "
                       f"(0..{model.n_layers}, or negative from the end)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pieces, ids = text.prepare(p, sentences, lang, tokenized)
    lang_id = text.check_lang(p, lang)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pooled: list[Tensor | None] = [None] * len(ids)
    tokens: list[TokenStates | None] = [None] * len(ids)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, lengths, langs = text.pad([ids[i] for i in idx], lang_id, device, p.model.pad_index)
            h = model(x, lengths=lengths, langs=langs, causal=p.causal, return_all=layer is not None)
            h = (h if layer is None else h[layer]).float()
            for row, i in enumerate(idx):
                n = len(ids[i])
                if per_token:
                    tokens[i] = TokenStates(pieces[i], h[row, 1 : n - 1].cpu())
                elif pooling == "first":
                    pooled[i] = h[row, 0]
                else:
                    inner = h[row, 1 : n - 1]
                    pooled[i] = inner.mean(0) if n > 2 else h[row, 0]
    finally:
        model.train(was_training)
    if per_token:
        return tokens  # type: ignore[return-value]
    if not ids:
        return torch.zeros(0, model.dim)
    return torch.stack(pooled).cpu()  # type: ignore[arg-type]
