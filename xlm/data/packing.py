"""Packing pair examples (TLM) into fixed-length rows, with the segment ids of a block-diagonal mask.

A sampler's batch of pairs ``[</s> s1 </s>][</s> s2 </s>]`` of different lengths is padded to its
longest pair; packed, the pairs are laid end to end in rows of ``row_len`` tokens (first-fit
decreasing), each keeping its own positions (restarting for ``s2``, as unpacked) and language ids.
``segments`` numbers the examples of a row (1, 2, ...; 0 on padding): a token attends only to the
tokens of its own segment (:func:`segment_attention_mask`), so every example is computed exactly
as alone in its row (tested against the unpacked computation). The number of rows is rounded up to
a multiple of ``rows_multiple`` so that a task's batches take few shapes.

Training only: evaluation never packs. CLM is not packed (its targets would cross examples).
"""

from __future__ import annotations

import numpy as np
import torch

from xlm.data.datasets import RawBatch
from xlm.data.dictionary import PAD_INDEX
from xlm.errors import XLMError


def pack_pairs(raw: RawBatch, row_len: int, rows_multiple: int = 8) -> tuple[RawBatch, np.ndarray]:
    """``(packed batch (rows, row_len), segments (rows, row_len) int64)``; raises XLMError when an
    example is longer than a row."""
    lengths = np.asarray(raw.lengths)
    if len(lengths) and int(lengths.max()) > row_len:
        raise XLMError(f"data.pack: a pair of {int(lengths.max())} tokens does not fit rows of data.bptt="
                       f"{row_len} tokens (raise data.bptt or lower data.max_len)")
    order = np.argsort(-lengths, kind="stable")
    fill: list[int] = []  # tokens used per row
    place = np.empty(len(lengths), dtype=np.int64)  # row of each example
    start = np.empty(len(lengths), dtype=np.int64)  # its first column
    for i in order:  # first-fit decreasing
        n = int(lengths[i])
        r = next((k for k, used in enumerate(fill) if used + n <= row_len), len(fill))
        if r == len(fill):
            fill.append(0)
        place[i], start[i] = r, fill[r]
        fill[r] += n
    rows = max(1, -(-len(fill) // rows_multiple) * rows_multiple)
    x = np.full((rows, row_len), PAD_INDEX, dtype=np.int64)
    langs = np.zeros((rows, row_len), dtype=np.int64)
    positions = np.zeros((rows, row_len), dtype=np.int64)
    segments = np.zeros((rows, row_len), dtype=np.int64)
    src_langs = raw.langs if not isinstance(raw.langs, int) else np.full(raw.x.shape, raw.langs, dtype=np.int64)
    src_pos = raw.positions if raw.positions is not None else np.broadcast_to(np.arange(raw.x.shape[1]), raw.x.shape)
    seg_count = np.zeros(rows, dtype=np.int64)
    for i in range(len(lengths)):  # in the batch's order: segments numbered left to right below
        r, s, n = place[i], start[i], int(lengths[i])
        x[r, s:s + n] = raw.x[i, :n]
        langs[r, s:s + n] = src_langs[i, :n]
        positions[r, s:s + n] = src_pos[i, :n]
    for i in np.lexsort((start, place)):
        seg_count[place[i]] += 1
        segments[place[i], start[i]:start[i] + lengths[i]] = seg_count[place[i]]
    row_lengths = np.zeros(rows, dtype=np.int64)
    row_lengths[:len(fill)] = fill
    return RawBatch(x, row_lengths, langs, positions), segments


def segment_attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """``(batch, seq)`` segment ids -> bool ``(batch, seq, seq)``: True where query and key share a
    segment (the ``attn_mask`` of :meth:`xlm.model.TransformerModel.forward`)."""
    return segments.unsqueeze(2) == segments.unsqueeze(1)
