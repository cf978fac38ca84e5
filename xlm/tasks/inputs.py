"""Model inputs in the original's layout: framing, truncation, sentence pairs, batches.

Rules (the original's ``xlm/utils.py`` and ``xlm/data/dataset.py``, used by its ``glue-xnli.py``):

- a sentence is framed ``</s> w1 ... wn </s>`` (``Dataset.batch_sentences``);
- ``truncate`` cuts a framed sentence longer than ``max_len`` to ``max_len`` tokens and makes the
  last one ``</s>`` (``utils.truncate``); the original applies it to each sentence of a training
  pair separately, and not at evaluation;
- a pair is ``concat_batches(s1, lang1, s2, lang2, reset_positions)``: with ``reset_positions=False``
  (XNLI and GLUE) the two framed sentences share their middle ``</s>``, giving ``</s> a </s> b </s>``
  (three ``</s>``, length ``len1 + len2 - 1``) with positions ``0..n-1`` continuing; the shared
  ``</s>`` and everything after it carry ``lang2``. With ``reset_positions=True`` (TLM) the framed
  sentences are simply concatenated (four ``</s>``) and positions restart at 0 on the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from xlm.data.dictionary import EOS_INDEX, PAD_INDEX


@dataclass
class Feature:
    """One model input: ``ids`` (framed), language ``lang_a`` before ``split`` and ``lang_b`` from it on."""

    ids: np.ndarray
    split: int
    lang_a: int
    lang_b: int
    restart: bool = False  # positions restart at 0 at ``split``

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self) -> np.ndarray:
        pos = np.arange(len(self.ids))
        if self.restart:
            pos[self.split :] -= self.split
        return pos


def frame(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """``</s> ids </s>``."""
    out = np.empty(len(ids) + 2, dtype=np.int64)
    out[0] = out[-1] = EOS_INDEX
    out[1:-1] = ids
    return out


def truncate(framed: np.ndarray, max_len: int) -> np.ndarray:
    """The original's ``truncate``: keep ``max_len`` tokens, the last one ``</s>``."""
    if len(framed) <= max_len:
        return framed
    out = framed[:max_len].copy()
    out[-1] = EOS_INDEX
    return out


def single(framed: np.ndarray, lang: int) -> Feature:
    return Feature(framed, len(framed), lang, lang)


def pair(a: np.ndarray, lang_a: int, b: np.ndarray, lang_b: int, reset_positions: bool = False) -> Feature:
    """Two framed sentences as ``concat_batches`` joins them (see the module docstring)."""
    if reset_positions:
        return Feature(np.concatenate([a, b]), len(a), lang_a, lang_b, restart=True)
    return Feature(np.concatenate([a[:-1], b]), len(a) - 1, lang_a, lang_b)


def collate(features: Sequence[Feature], use_langs: bool = True) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Right-padded ``x`` ``(bs, slen)``, ``lengths`` ``(bs,)``, ``langs`` (None when unused), ``positions``."""
    lengths = torch.tensor([len(f) for f in features], dtype=torch.long)
    slen = int(lengths.max())
    x = np.full((len(features), slen), PAD_INDEX, dtype=np.int64)
    pos = np.zeros((len(features), slen), dtype=np.int64)
    langs = np.zeros((len(features), slen), dtype=np.int64)
    for row, f in enumerate(features):
        n = len(f)
        x[row, :n] = f.ids
        pos[row, :n] = f.positions()
        langs[row, : f.split] = f.lang_a
        langs[row, f.split :] = f.lang_b
    return torch.from_numpy(x), lengths, torch.from_numpy(langs) if use_langs else None, torch.from_numpy(pos)


def fit_pair(a: np.ndarray, b: np.ndarray, max_total: int,
             reset_positions: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Truncate two framed sentences, the longer first, so that their pair has at most ``max_total`` tokens."""
    budget = max_total + (0 if reset_positions else 1)  # the shared </s> is counted twice in len(a) + len(b)
    la, lb = len(a), len(b)
    while la + lb > budget:
        if la >= lb:
            la -= 1
        else:
            lb -= 1
    return truncate(a, la), truncate(b, lb)
