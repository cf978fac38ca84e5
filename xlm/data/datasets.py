"""Training and evaluation batches from memory-mapped corpora: streams (MLM/CLM) and pairs (TLM).

- :class:`StreamDataset`: one language's flat token array (sentences separated by ``</s>``) read
  as consecutive windows of ``bptt`` tokens, as the original's stream batches. The array is
  conceptually ``[</s>] + tokens`` left-padded with ``</s>`` to a multiple of ``bptt``, so every
  token is in exactly one window (the original drops the last token of each stream).
- :class:`ParallelDataset`: aligned sentence pairs laid out ``[</s> s1 </s>][</s> s2 </s>]`` with
  positions restarting at 0 for the second sentence and each half carrying its language id.
- :class:`SentenceDataset`: single sentences ``</s> s </s>`` of one language (boundaries from the
  ``.idx`` offsets), for objectives that work sentence by sentence (BTMLM).

Both only touch the pages of the ``.bin`` files they read; per-sentence lengths are the only
per-example arrays held in RAM. Samplers (:class:`StreamSampler`, :class:`ParallelSampler`) decide
the order: they shard the examples by rank, reshuffle every epoch from ``(seed, rank, name, epoch)``
and expose ``(epoch, position)`` as their state so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlm.data.dictionary import EOS_INDEX, PAD_INDEX, UNK_INDEX
from xlm.data.indexed import IndexedDataset, bin_path, idx_path
from xlm.data.sampling import TAG_SHUFFLE, name_key, rng
from xlm.errors import XLMError


@dataclass
class RawBatch:
    """Token ids and layout of one batch, as numpy arrays (``(batch, seq)``, right padding)."""

    x: np.ndarray  # int64 (bs, slen)
    lengths: np.ndarray  # int64 (bs,)
    langs: np.ndarray | int  # int64 (bs, slen), or one language id for every token
    positions: np.ndarray | None = None  # int64 (bs, slen); None = 0..slen-1
    lang2: int | None = None  # the language a sentence batch is to be translated into (BTMLM), else None

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def first_lang(self) -> int:
        """Language id of the first token: a sentence batch's language, a pair batch's first side's."""
        return self.langs if isinstance(self.langs, int) else int(np.asarray(self.langs).flat[0])


# -- files ----------------------------------------------------------------------------------------
def mono_prefix(data_path: str | os.PathLike, split: str, lang: str) -> Path:
    return Path(data_path) / f"{split}.{lang}"


def para_prefix(data_path: str | os.PathLike, split: str, l1: str, l2: str, lang: str) -> Path:
    a, b = sorted((l1, l2))
    return Path(data_path) / f"{split}.{a}-{b}.{lang}"


def open_corpus(prefix: Path, vocab_size: int, fingerprint: str) -> IndexedDataset:
    """Open ``prefix.bin/.idx`` and check it was binarized with this vocabulary."""
    if not idx_path(prefix).exists() or not bin_path(prefix).exists():
        raise XLMError(f"{idx_path(prefix)}: missing (expected {prefix.name}.bin and {prefix.name}.idx "
                       f"in {prefix.parent}; run preprocess first)")
    ds = IndexedDataset(prefix)
    if ds.vocab_size != vocab_size or (ds.vocab_fingerprint and fingerprint and ds.vocab_fingerprint != fingerprint):
        raise XLMError(f"{idx_path(prefix)}: binarized with another vocabulary ({ds.vocab_size} words, "
                       f"fingerprint {ds.vocab_fingerprint!r}) than {prefix.parent / 'vocab'} ({vocab_size} words, "
                       f"{fingerprint!r})")
    return ds


def _clip_vocab(x: np.ndarray, n_words: int, vocab_size: int) -> np.ndarray:
    """Ids beyond a trimmed vocabulary (``data.max_vocab``/``min_count``) become ``<unk>``."""
    if n_words < vocab_size:
        x[x >= n_words] = UNK_INDEX
    return x


# -- streams --------------------------------------------------------------------------------------
class StreamDataset:
    """Windows of ``bptt`` consecutive tokens over ``[</s>] + tokens[:n]``, front-padded with ``</s>``."""

    def __init__(self, data: IndexedDataset, bptt: int, n_words: int, lang_id: int, max_sentences: int = -1):
        self.data = data
        self.bptt = bptt
        self.n_words = n_words
        self.lang_id = lang_id
        n_sent = len(data) if max_sentences < 0 else min(max_sentences, len(data))
        self.n_sentences = n_sent
        self.n_stream_tokens = int(data.offsets[n_sent]) + 1  # + the leading </s>
        self.pad = -self.n_stream_tokens % bptt
        self.n_windows = (self.n_stream_tokens + self.pad) // bptt

    def __len__(self) -> int:
        return self.n_windows

    def windows(self, idx: np.ndarray) -> RawBatch:
        """Batch of the windows ``idx`` (each ``bptt`` tokens, no padding)."""
        virt = np.asarray(idx, dtype=np.int64)[:, None] * self.bptt + np.arange(self.bptt)
        real = virt - (self.pad + 1)  # index into data.tokens; negative = leading </s> padding
        x = self.data.tokens[np.maximum(real, 0)].astype(np.int64)
        x[real < 0] = EOS_INDEX
        x = _clip_vocab(x, self.n_words, self.data.vocab_size)
        return RawBatch(x, np.full(len(x), self.bptt, dtype=np.int64), self.lang_id)

    def eval_batches(self, batch_size: int) -> Iterator[RawBatch]:
        for s in range(0, self.n_windows, batch_size):
            yield self.windows(np.arange(s, min(s + batch_size, self.n_windows)))


# -- pairs ----------------------------------------------------------------------------------------
class ParallelDataset:
    """Aligned sentences of two languages; ``l1`` is always the first segment of a batch row."""

    def __init__(self, d1: IndexedDataset, d2: IndexedDataset, n_words: int, lang1_id: int, lang2_id: int,
                 max_len: int = 0, max_sentences: int = -1):
        if len(d1) != len(d2):
            raise XLMError(f"{idx_path(d1.prefix)} has {len(d1)} sentences but {idx_path(d2.prefix)} has {len(d2)}")
        self.d1, self.d2 = d1, d2
        self.n_words = n_words
        self.lang1_id, self.lang2_id = lang1_id, lang2_id
        self.max_len = max_len
        n = len(d1) if max_sentences < 0 else min(max_sentences, len(d1))
        s1, s2 = d1.sizes[:n], d2.sizes[:n]
        keep = (s1 > 0) & (s2 > 0)
        if max_len > 0:
            keep &= (s1 <= max_len) & (s2 <= max_len)
        self.indices = np.flatnonzero(keep).astype(np.int64)  # usable pair ids
        self.n_dropped = n - len(self.indices)
        self.lengths = (s1[self.indices] + s2[self.indices] + 4).astype(np.int64)  # tokens per row

    def __len__(self) -> int:
        return len(self.indices)

    def pairs(self, rows: np.ndarray) -> RawBatch:
        """Batch of usable pairs ``rows`` (positions into :attr:`indices`)."""
        ids = self.indices[np.asarray(rows, dtype=np.int64)]
        o1, o2 = self.d1.offsets[ids], self.d2.offsets[ids]
        n1 = (self.d1.offsets[ids + 1] - o1 + 1).astype(np.int64)  # </s> s1 </s>
        n2 = (self.d2.offsets[ids + 1] - o2 + 1).astype(np.int64)
        lengths = n1 + n2
        col = np.arange(int(lengths.max()))[None, :]
        first = col < n1[:, None]
        # Sentence i starts right after sentence i-1's </s>: reading from offset-1 yields the leading
        # </s> for free (offset 0 has none: it is filled in below).
        src1 = o1[:, None] - 1 + col
        src2 = o2[:, None] - 1 + (col - n1[:, None])
        valid = col < lengths[:, None]
        t1 = self.d1.tokens[np.clip(np.where(first & valid, src1, 0), 0, None)]
        t2 = self.d2.tokens[np.clip(np.where(~first & valid, src2, 0), 0, None)]
        x = np.where(first, t1, t2).astype(np.int64)
        x[(first & (src1 < 0)) | (~first & valid & (src2 < 0))] = EOS_INDEX
        x[~valid] = PAD_INDEX
        x = _clip_vocab(x, self.n_words, self.d1.vocab_size)
        positions = np.where(first, col, col - n1[:, None])
        positions[~valid] = 0
        langs = np.where(first, self.lang1_id, self.lang2_id).astype(np.int64)
        return RawBatch(x, lengths, langs, positions.astype(np.int64))

    def eval_batches(self, batch_size: int) -> Iterator[RawBatch]:
        """In length order (less padding); batch composition does not depend on anything random."""
        order = np.argsort(self.lengths, kind="stable")
        for s in range(0, len(order), batch_size):
            yield self.pairs(order[s : s + batch_size])


# -- sentences ------------------------------------------------------------------------------------
class SentenceDataset:
    """Single sentences of one language, each row ``</s> s </s>`` (right padding), language ``lang_id``.

    ``lang2_id`` is carried into every batch (``RawBatch.lang2``): the language BTMLM generates into.
    Empty sentences and (``max_len > 0``) sentences over ``max_len`` tokens are not used.
    """

    def __init__(self, data: IndexedDataset, n_words: int, lang_id: int, lang2_id: int | None = None,
                 max_len: int = 0, max_sentences: int = -1):
        self.data, self.n_words = data, n_words
        self.lang_id, self.lang2_id = lang_id, lang2_id
        self.max_len = max_len
        n = len(data) if max_sentences < 0 else min(max_sentences, len(data))
        sizes = data.sizes[:n]
        keep = sizes > 0
        if max_len > 0:
            keep &= sizes <= max_len
        self.indices = np.flatnonzero(keep).astype(np.int64)
        self.n_dropped = n - len(self.indices)
        self.lengths = (sizes[self.indices] + 2).astype(np.int64)  # tokens per row

    def __len__(self) -> int:
        return len(self.indices)

    def sentences(self, rows: np.ndarray) -> RawBatch:
        """Batch of usable sentences ``rows`` (positions into :attr:`indices`)."""
        ids = self.indices[np.asarray(rows, dtype=np.int64)]
        start = self.data.offsets[ids]
        lengths = (self.data.offsets[ids + 1] - start + 1).astype(np.int64)  # </s> s </s>
        col = np.arange(int(lengths.max()))[None, :]
        valid = col < lengths[:, None]
        src = start[:, None] - 1 + col  # offset-1 is the previous sentence's </s> (none before sentence 0)
        x = self.data.tokens[np.clip(np.where(valid, src, 0), 0, None)].astype(np.int64)
        x[valid & (src < 0)] = EOS_INDEX
        x[~valid] = PAD_INDEX
        x = _clip_vocab(x, self.n_words, self.data.vocab_size)
        return RawBatch(x, lengths, self.lang_id, None, self.lang2_id)

    def eval_batches(self, batch_size: int) -> Iterator[RawBatch]:
        """In length order (less padding); batch composition does not depend on anything random."""
        order = np.argsort(self.lengths, kind="stable")
        for s in range(0, len(order), batch_size):
            yield self.sentences(order[s : s + batch_size])


# -- samplers -------------------------------------------------------------------------------------
class EpochBatchSampler:
    """Endless sequence of batches (arrays of example ids); reshuffled per epoch; state ``(epoch, position)``."""

    def __init__(self, n_examples: int, seed: int, rank: int, world_size: int, name: str):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.shard = np.arange(rank, n_examples, world_size, dtype=np.int64)  # this rank's examples
        if len(self.shard) == 0:
            raise XLMError(f"{name}: {n_examples} examples cannot be shared by {world_size} processes "
                           "(a process would get none)")
        self.seed, self.rank, self.name = seed, rank, name
        self.epoch, self.position = 0, 0
        self._batches: list[np.ndarray] | None = None

    def make_epoch(self, gen: np.random.Generator) -> list[np.ndarray]:
        raise NotImplementedError

    def _epoch_batches(self) -> list[np.ndarray]:
        if self._batches is None:
            self._batches = self.make_epoch(rng(self.seed, TAG_SHUFFLE, self.rank, name_key(self.name), self.epoch))
        return self._batches

    def __iter__(self) -> EpochBatchSampler:
        return self

    def __next__(self) -> np.ndarray:
        batches = self._epoch_batches()
        if self.position >= len(batches):
            self.epoch, self.position, self._batches = self.epoch + 1, 0, None
            batches = self._epoch_batches()
        batch = batches[self.position]
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = None


class StreamSampler(EpochBatchSampler):
    """Random ``batch_size`` windows at a time for this rank (the last batch of an epoch may be short).

    With several processes the epoch order is *global*: one permutation of all windows, drawn from
    ``(seed, name, epoch)`` whatever the rank, cut into global batches of ``batch_size * world_size``
    windows, and rank ``r`` takes the ``r``-th of the ``world_size`` equal parts of each. The ranks'
    batches of a step are disjoint and their union is exactly the batch one process with
    ``batch_size * world_size`` would read at that step, so a run's data does not depend on how it
    is split across processes. (One process: the order is the one it always was.)
    """

    def __init__(self, n_windows: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, name: str = ""):
        super().__init__(n_windows, seed, rank, world_size, name)
        self.batch_size, self.world_size, self.n_windows = batch_size, world_size, n_windows

    def _epoch_batches(self) -> list[np.ndarray]:
        if self._batches is None:  # rank-independent generator (rank key 0): the order is global
            self._batches = self.make_epoch(rng(self.seed, TAG_SHUFFLE, 0, name_key(self.name), self.epoch))
        return self._batches

    def make_epoch(self, gen: np.random.Generator) -> list[np.ndarray]:
        order = gen.permutation(self.n_windows).astype(np.int64)
        w, step = self.world_size, self.batch_size * self.world_size
        out = []
        for s in range(0, len(order), step):
            chunk = order[s : s + step]
            if len(chunk) < w:  # a short last global batch that cannot give every rank a window
                break
            out.append(np.array_split(chunk, w)[self.rank])
        return out


class ParallelSampler(EpochBatchSampler):
    """Pairs grouped by length into batches of ``batch_size`` sentences or ``tokens_per_batch`` tokens.

    As the original: shuffle, stable-sort by length (``group_by_size``), cut into batches, shuffle
    the batches. Batches over ``max_batch_size`` sentences are split (the original truncated them).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, tokens_per_batch: int = -1, max_batch_size: int = 0,
                 group_by_size: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1, name: str = ""):
        super().__init__(len(lengths), seed, rank, world_size, name)
        self.lengths = np.asarray(lengths)
        self.batch_size, self.tokens_per_batch = batch_size, tokens_per_batch
        self.max_batch_size, self.group_by_size = max_batch_size, group_by_size

    def make_epoch(self, gen: np.random.Generator) -> list[np.ndarray]:
        order = gen.permutation(self.shard)
        if self.group_by_size:
            order = order[np.argsort(self.lengths[order], kind="stable")]
        if self.tokens_per_batch > 0:
            ids = np.cumsum(self.lengths[order]) // self.tokens_per_batch
            batches = np.split(order, np.flatnonzero(np.diff(ids)) + 1)
        else:
            batches = np.array_split(order, -(-len(order) // self.batch_size))
        if self.max_batch_size > 0:
            batches = [b[s : s + self.max_batch_size] for b in batches for s in range(0, len(b), self.max_batch_size)]
        return [batches[i] for i in gen.permutation(len(batches))]
