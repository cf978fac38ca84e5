"""Packing pair examples (TLM) into a fixed number of rows of ``data.bptt`` tokens: one shape per task.

A sampler's batch of pairs ``[</s> s1 </s>][</s> s2 </s>]`` of different lengths is padded to its
longest pair; packed, the pairs are laid end to end in rows of ``row_len`` tokens (first fit, in the
batch's order), each keeping its own positions (restarting for ``s2``, as unpacked) and language ids.
``segments`` numbers the examples of a row (1, 2, ...; 0 on padding): a token attends only to the
tokens of its own segment (:class:`xlm.model.attention_mask.AttentionMask`), so every example is
computed exactly as alone in its row (tested against the unpacked computation).

**One shape.** With ``data.pack`` the pair batches of a packed task are cut by
:class:`PackedPairSampler` so that each fills at most :func:`pack_rows` rows (first fit, the same
rule :func:`pack_pairs` applies; every packed task gets the same rows, :func:`set_pack_rows`), and
every batch is laid out in exactly that many rows: all packed batches of a run have the shape
``(rows, row_len)``. A batch that needs more rows (one not cut by that
sampler: never in training) is not truncated: it takes more rows (a multiple of 8, a new shape) and
the caller warns.

Training only: evaluation never packs. CLM is not packed (its targets would cross examples).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from xlm.config import DataConfig
from xlm.data.datasets import ParallelSampler, RawBatch
from xlm.data.dictionary import PAD_INDEX
from xlm.errors import XLMError

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


def pack_rows(data: DataConfig, mean_length: float) -> int:
    """Rows of a packed TLM batch, so that a packed batch holds about the pairs of an unpacked one:
    ``ceil(data.tokens_per_batch / data.bptt)`` when batches are counted in tokens, else
    ``ceil(data.batch_size * mean_length / data.bptt)`` (``mean_length``: the task's mean pair length,
    in tokens; the fill of the rows, about 95%, makes it slightly fewer pairs)."""
    per_batch = data.tokens_per_batch if data.tokens_per_batch > 0 else data.batch_size * mean_length
    return max(1, math.ceil(per_batch / data.bptt))


def set_pack_rows(samplers: list[PackedPairSampler], data: DataConfig) -> None:
    """Give every packed task the same rows, :func:`pack_rows` of the mean length of all their pairs
    (the same on every rank): all packed TLM batches of a run have one shape, one compiled graph (a
    task of longer pairs than the mean gets fewer pairs per batch)."""
    if samplers:
        lengths = np.concatenate([s.lengths for s in samplers])
        rows = pack_rows(data, float(lengths.mean()))
        for s in samplers:
            s.rows = rows


def packed(task: Task) -> bool:
    """Whether ``data.pack`` packs this task's batches: MLM on pairs (TLM) only."""
    return bool(task.is_pair and task.objective == "mlm")


def _too_long(longest: int, row_len: int) -> XLMError:
    return XLMError(f"data.pack: a pair of {longest} tokens does not fit rows of data.bptt={row_len} "
                    "tokens (raise data.bptt or lower data.max_len)")


def first_fit(lengths: np.ndarray, row_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Place examples in rows, each in the first row with room, in the given order:
    ``(row of each example, its first column, rows used)``."""
    fill: list[int] = []  # tokens used per row
    place = np.empty(len(lengths), dtype=np.int64)
    start = np.empty(len(lengths), dtype=np.int64)
    for i, n in enumerate(lengths.tolist()):
        r = next((k for k, used in enumerate(fill) if used + n <= row_len), len(fill))
        if r == len(fill):
            fill.append(0)
        place[i], start[i] = r, fill[r]
        fill[r] += n
    return place, start, len(fill)


def pack_pairs(raw: RawBatch, row_len: int, rows: int = 0) -> tuple[RawBatch, np.ndarray]:
    """``(packed batch (rows, row_len), segments (rows, row_len) int64)``, examples placed by
    :func:`first_fit`. ``rows``: the batch's number of rows; a batch needing more takes the next multiple
    of 8 (``rows == 0``: as many as needed, a multiple of 8). Raises XLMError when an example is
    longer than a row."""
    lengths = np.asarray(raw.lengths)
    if len(lengths) and int(lengths.max()) > row_len:
        raise _too_long(int(lengths.max()), row_len)
    place, start, used = first_fit(lengths, row_len)
    if used > rows:
        rows = max(8, -(-used // 8) * 8)
    x = np.full((rows, row_len), PAD_INDEX, dtype=np.int64)
    langs = np.zeros((rows, row_len), dtype=np.int64)
    positions = np.zeros((rows, row_len), dtype=np.int64)
    segments = np.zeros((rows, row_len), dtype=np.int64)
    src_langs = raw.langs if not isinstance(raw.langs, int) else np.full(raw.x.shape, raw.langs, dtype=np.int64)
    src_pos = raw.positions if raw.positions is not None else np.broadcast_to(np.arange(raw.x.shape[1]), raw.x.shape)
    row_lengths = np.zeros(rows, dtype=np.int64)
    seg_count = np.zeros(rows, dtype=np.int64)
    for i in range(len(lengths)):  # examples enter rows left to right: segments 1, 2, ... in column order
        r, s, n = place[i], start[i], int(lengths[i])
        x[r, s:s + n] = raw.x[i, :n]
        langs[r, s:s + n] = src_langs[i, :n]
        positions[r, s:s + n] = src_pos[i, :n]
        seg_count[r] += 1
        segments[r, s:s + n] = seg_count[r]
        row_lengths[r] += n
    return RawBatch(x, row_lengths, langs, positions), segments


DEFER = 16  # pairs set aside before a packed batch is closed (fuller rows; see PackedPairSampler)


class PackedPairSampler(ParallelSampler):
    """:class:`ParallelSampler` whose batches are cut to fill ``rows`` rows of ``row_len`` tokens.

    Shuffle, then walk that order placing each pair by :func:`first_fit`; a pair that fits no row (or
    comes after ``max_batch_size`` pairs) is set aside and opens the next batch; the batch is closed
    once ``DEFER`` pairs are set aside; the batches are shuffled. So a batch holds as many pairs as
    fill its rows (``batch_size`` and ``tokens_per_batch`` only size the rows, :func:`pack_rows`), every
    pair of the shard comes once per epoch, and :func:`pack_pairs` of a batch never needs more than
    ``rows``. ``group_by_size`` is not used: pairs of similar lengths fill rows worse (on random lengths
    of 10-32 tokens in rows of 48: 71% of the tokens real when sorted by length, 92% shuffled).
    Cutting an epoch costs about 4 us per pair (numpy; in the prefetch thread). Raises XLMError when
    some pair is longer than a row.
    """

    def __init__(self, lengths: np.ndarray, row_len: int, rows: int, max_batch_size: int = 0,
                 group_by_size: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, name: str = ""):
        super().__init__(lengths, rows, -1, max_batch_size, group_by_size, seed, rank, world_size, name)
        if len(self.lengths) and int(self.lengths.max()) > row_len:
            raise _too_long(int(self.lengths.max()), row_len)
        self.row_len, self.rows = row_len, rows

    def make_epoch(self, gen: np.random.Generator) -> list[np.ndarray]:
        order = gen.permutation(self.shard)
        cap = self.max_batch_size if self.max_batch_size > 0 else len(order)
        batches: list[list[int]] = []
        batch: list[int] = []
        fill = np.zeros(self.rows, dtype=np.int64)
        deferred: list[int] = []  # pairs that fitted no row: they open the next batch

        def add(i: int) -> bool:
            room = fill + self.lengths[i] <= self.row_len
            r = int(room.argmax())
            if not room[r] or len(batch) == cap:
                return False
            fill[r] += self.lengths[i]
            batch.append(i)
            return True

        for i in order.tolist():
            if not add(i):
                deferred.append(i)
            while len(deferred) >= DEFER or (i == order[-1] and deferred):  # close the batch
                batches.append(batch)
                batch, fill[:], pending, deferred = [], 0, deferred, []
                deferred = [j for j in pending if not add(j)]
        if batch:
            batches.append(batch)
        return [np.array(batches[i], dtype=np.int64) for i in gen.permutation(len(batches))]
