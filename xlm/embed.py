"""Sentence and token embeddings from any pretrained model, raw text in.

The model's own pipeline is applied: Moses tokenization (lowercase + accent removal when the model
was trained that way), its BPE codes, and the original framing ``</s> w1 ... wn </s>``. Sentences
are batched by length and run without gradients on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from xlm.data.dictionary import EOS_INDEX, PAD_INDEX
from xlm.errors import XLMError

if TYPE_CHECKING:
    from xlm.pretrained import Pretrained

Pooling = Literal["first", "mean"]


@dataclass
class TokenStates:
    """Per-token output for one sentence: its BPE pieces and their hidden states ``(n_pieces, emb_dim)``."""

    pieces: list[str]
    states: Tensor


def codes_from_text(text: str) -> list[tuple[str, str, int]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].isdigit():
            raise XLMError(f"bpe codes (in checkpoint), line {lineno}: expected 'LEFT RIGHT COUNT'")
        out.append((parts[0], parts[1], int(parts[2])))
    return out


class TextPipeline:
    """Raw sentence -> BPE pieces, exactly as the model's training data was prepared."""

    def __init__(self, bpe_codes: str | None, lowercase: bool):
        from xlm.data.bpe import BPE

        self.bpe = BPE(codes_from_text(bpe_codes)) if bpe_codes else None
        self.lowercase = lowercase
        self._tokenizers: dict = {}

    def __call__(self, sentence: str, lang: str, tokenized: bool = False) -> list[str]:
        if not tokenized:
            tok = self._tokenizers.get(lang)
            if tok is None:
                from xlm.data.tokenize import Tokenizer

                tok = self._tokenizers[lang] = Tokenizer(lang, lower_remove_accent=self.lowercase)
            sentence = tok(sentence)
        if self.bpe is not None:
            sentence = self.bpe.apply([sentence])[0]
        return sentence.split()


def _pipeline(p: Pretrained) -> TextPipeline:
    pipe = getattr(p, "_pipeline", None)
    if pipe is None:
        pipe = TextPipeline(p.bpe_codes, p.lowercase)
        object.__setattr__(p, "_pipeline", pipe)
    return pipe


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
    if lang not in p.lang2id and len(p.lang2id) > 1:
        raise XLMError(f"lang: {lang!r} is not a language of this model ({', '.join(sorted(p.lang2id))})")
    model = p.model
    if layer is not None and not -(model.n_layers + 1) <= layer <= model.n_layers:
        raise XLMError(f"layer: {layer} is out of range for a model of {model.n_layers} layers "
                       f"(0..{model.n_layers}, or negative from the end)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pipe = _pipeline(p)
    max_pieces = model.position_embeddings.num_embeddings - 2
    pieces = [pipe(s, lang, tokenized)[:max_pieces] for s in sentences]
    ids = [[EOS_INDEX, *p.dictionary.encode(ps), EOS_INDEX] for ps in pieces]
    lang_id = p.lang2id.get(lang, 0)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pooled: list[Tensor | None] = [None] * len(ids)
    tokens: list[TokenStates | None] = [None] * len(ids)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            lengths = torch.tensor([len(ids[i]) for i in idx])
            x = torch.full((len(idx), int(lengths.max())), PAD_INDEX, dtype=torch.long)
            for row, i in enumerate(idx):
                x[row, : len(ids[i])] = torch.tensor(ids[i])
            x, lengths = x.to(device), lengths.to(device)
            h = model(x, lengths=lengths, langs=lang_id if model.use_lang_emb else None, causal=p.causal,
                      return_all=layer is not None)
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
