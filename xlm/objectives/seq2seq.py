"""The batch layout the translation objectives share (AE, MT, BT): a source for the encoder, a target
for the decoder, as the original trainer's ``mt_step`` / ``bt_step`` (facebookresearch/XLM ``xlm/trainer.py``).

Both sides are framed ``</s> w1 .. wn </s>`` and right-padded. The decoder reads the target causally
and position ``t < len - 1`` predicts ``target[t + 1]`` (the original's ``pred_mask = alen < len2 - 1``,
``y = x2[1:]``), so the loss is the mean cross-entropy over every target token after the first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from xlm.data.datasets import RawBatch
from xlm.data.dictionary import PAD_INDEX
from xlm.objectives.batch import Batch, Source
from xlm.objectives.camlm import second_side

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


def split_pairs(raw: RawBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """A pair batch ``[</s> s1 </s>][</s> s2 </s>]`` -> ``(src, src_len, tgt, tgt_len, lang1, lang2)``,
    each side ``(bs, longest)`` right-padded (:class:`xlm.data.datasets.ParallelDataset` layout)."""
    if raw.positions is None or isinstance(raw.langs, int):
        raise ValueError("translation pairs need a pair batch (positions restarting at the second sentence)")
    n1 = (~second_side(raw.positions)).sum(axis=1).astype(np.int64)
    n2 = (raw.lengths - n1).astype(np.int64)
    src = np.where(np.arange(int(n1.max()))[None, :] < n1[:, None], raw.x[:, : int(n1.max())], PAD_INDEX)
    col = np.arange(int(n2.max()))[None, :]
    valid = col < n2[:, None]
    tgt = np.take_along_axis(raw.x, np.minimum(n1[:, None] + col, raw.x.shape[1] - 1), axis=1)
    tgt = np.where(valid, tgt, PAD_INDEX)
    return src, n1, tgt, n2, raw.first_lang, int(np.asarray(raw.langs)[0, n1[0]])


def next_token_targets(tgt: Tensor | np.ndarray, tgt_len: Tensor | np.ndarray) -> tuple[Any, Any]:
    """Teacher forcing on ``tgt`` ``(bs, T)``: ``(pred_mask (bs, T) bool, targets (n_pred,))``, position
    ``t < len - 1`` predicting ``tgt[t + 1]`` (the original's ``pred_mask = alen < len2 - 1``,
    ``y = x2[1:]``); the targets in row-major order of the mask. Tensors in, tensors out (on their
    device); numpy in, numpy out (batch building stays on the host, no torch boolean indexing)."""
    n = tgt.shape[1]
    col = torch.arange(n, device=tgt.device) if isinstance(tgt, Tensor) else np.arange(n)
    pred_mask = col[None] < (tgt_len - 1)[:, None]
    return pred_mask, tgt[:, 1:][pred_mask[:, :-1]]


def seq2seq_batch(task: Task, src: np.ndarray | None, src_len: np.ndarray | None, src_lang: int,
                  tgt: np.ndarray, tgt_len: np.ndarray, tgt_lang: int, pending: Any = None) -> Batch:
    """The :class:`Batch` of a translation step: ``x`` the target, ``source`` the encoder input (None
    when a ``pending`` step produces it: back-translation)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    pred_mask, targets = next_token_targets(tgt, tgt_len)
    source = None
    if src is not None and src_len is not None:
        source = Source(t(src), t(src_len), src_lang, bool((src_len < src.shape[1]).any()))
    return Batch(task, t(tgt), t(tgt_len), tgt_lang, None, torch.from_numpy(pred_mask), t(targets), True,
                 pending=pending, source=source)
