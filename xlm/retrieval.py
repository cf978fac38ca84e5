"""Cross-lingual sentence retrieval (Tatoeba-style): precision@1 in both directions.

Line ``i`` of the source file is the translation of line ``i`` of the target file. Each source
sentence retrieves its nearest target by cosine similarity, or by the ratio margin of Artetxe &
Schwenk (2019), which discounts "hub" sentences close to everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from xlm.errors import XLMError


@dataclass
class RetrievalResult:
    src_to_tgt: float  # precision@1, in percent
    tgt_to_src: float
    n: int

    def as_dict(self, src: str, tgt: str) -> dict[str, float]:
        return {f"{src}_{tgt}_p@1": self.src_to_tgt, f"{tgt}_{src}_p@1": self.tgt_to_src, "n": self.n}


def similarity(src: Tensor, tgt: Tensor, margin: bool = False, k: int = 4) -> Tensor:
    """``(n_src, n_tgt)`` scores: cosine, or the ratio margin over ``k`` nearest neighbours."""
    sim = F.normalize(src.float(), dim=-1) @ F.normalize(tgt.float(), dim=-1).T
    if not margin:
        return sim
    k_src, k_tgt = min(k, sim.shape[1]), min(k, sim.shape[0])
    src_knn = sim.topk(k_src, dim=1).values.mean(1)  # each source's mean similarity to its neighbours
    tgt_knn = sim.topk(k_tgt, dim=0).values.mean(0)
    return sim / ((src_knn[:, None] + tgt_knn[None, :]) / 2)


def precision_at_1(src: Tensor, tgt: Tensor, margin: bool = False) -> RetrievalResult:
    if src.shape[0] != tgt.shape[0] or src.shape[0] == 0:
        raise XLMError(f"retrieval: need the same non-zero number of source and target sentences, "
                       f"got {src.shape[0]} and {tgt.shape[0]}")
    scores = similarity(src, tgt, margin)
    gold = torch.arange(src.shape[0])
    s2t = (scores.argmax(1) == gold).float().mean().item() * 100
    t2s = (scores.argmax(0) == gold).float().mean().item() * 100
    return RetrievalResult(s2t, t2s, src.shape[0])


def read_lines(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f]
    except OSError as e:
        raise XLMError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise XLMError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    return lines[:limit] if limit else lines


def retrieval(model, src_lines: list[str], tgt_lines: list[str], src_lang: str, tgt_lang: str, *,
              pooling: str = "mean", margin: bool = False, batch_size: int = 64) -> RetrievalResult:
    """Embed both sides with ``model`` (a :class:`xlm.Pretrained`) and score precision@1."""
    src = model.encode(src_lines, src_lang, pooling=pooling, batch_size=batch_size)
    tgt = model.encode(tgt_lines, tgt_lang, pooling=pooling, batch_size=batch_size)
    return precision_at_1(src, tgt, margin)
