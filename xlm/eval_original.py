"""The original XLM's language-model evaluation, reproduced batch for batch and draw for draw.

Source: ``Evaluator.evaluate_mlm`` / ``evaluate_clm`` / ``get_iterator`` / ``mask_out`` of
facebookresearch/XLM's ``xlm/evaluation/evaluator.py``, with its ``StreamDataset``,
``ParallelDataset.get_iterator`` (``xlm/data/dataset.py``), ``load_para_data`` (``xlm/data/loader.py``)
and ``concat_batches`` (``xlm/utils.py``). For each split (``valid``, ``test``) and task:

- **Streams** (monolingual MLM/CLM). The split's tokens (each sentence followed by ``</s>``) form one
  stream of batch size 1: left-padded with ``</s>`` to a multiple of ``bptt``, one more ``</s>``
  prepended, cut into batches of ``bptt`` tokens, in order. The last token of the split is never read.
- **Pairs** (TLM, CLM on pairs). Empty pairs are dropped, ``max_len`` is *not* applied; the pairs are
  stable-sorted by ``len1 + len2 + 4`` and cut into ``ceil(n / batch_size)`` near-equal batches
  (``tokens_per_batch`` is ignored: the original sets it to -1 for valid/test), in that order. Rows
  are ``[</s> s1 </s>][</s> s2 </s>]``, positions restarting at the second ``</s> s2``, language ids
  by half; ``fr-en`` puts French first.
- **MLM targets**: one ``np.random.RandomState(0)`` per split and task, drawn over each padded
  time-major ``(slen, bs)`` batch: ``rand(slen, bs) <= word_pred``; never row 0 nor a position
  ``>= length - 1``; a column left without target gets one at ``randint(1, length - 1)`` (drawn in
  column order). ``</s>``, ``<unk>`` and any other token can be a target; all become ``<mask>``.
- **CLM targets**: every position ``t < length - 1`` predicts token ``t + 1`` (no ``context_size``).
- Scores: per batch the mean cross-entropy in float32 times its target count, summed in float64;
  ``ppl = exp(sum / n)`` (1e9 when nothing was predicted), ``acc = 100 * correct / n``; the averages
  ``valid_mlm_ppl`` ... are arithmetic means over monolingual tasks.
- With more than 5 languages in the run the original reads fewer batches (see :func:`subsampling`).

Each batch is one forward pass, exactly as the original's: batches are never packed or reordered.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xlm.config import Config
from xlm.data.datasets import StreamDataset
from xlm.data.dictionary import EOS_INDEX, MASK_INDEX, PAD_INDEX, UNK_INDEX
from xlm.data.indexed import IndexedDataset, idx_path
from xlm.distributed import all_reduce_sums
from xlm.errors import XLMError
from xlm.objectives import Task

SPLITS = ("valid", "test")
# The original's hard-coded list of languages evaluated more fully in runs of more than 30 languages.
EVAL_LGS_OVER_30 = frozenset(["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"])


@dataclass
class OriginalSettings:
    """What the original's evaluation depends on, named as its ``train.py`` options.

    ``tokens_per_batch`` and ``max_len`` are kept for the record: the original does not use them on
    valid/test. ``n_langs`` is the number of languages of the run (``--lgs``), which decides subsampling.
    """

    bptt: int = 256
    batch_size: int = 32
    max_batch_size: int = 0
    word_pred: float = 0.15
    n_langs: int = 1
    tokens_per_batch: int = -1
    max_len: int = 100

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


def subsampling(split: str, lang: str, n_langs: int) -> tuple[int, int]:
    """``(stream subsample, pair sentence cap)``: streams read their first ``n_batches // subsample``
    batches, pairs their first ``cap`` pairs (-1: all). The original's ``get_iterator`` hack."""
    if n_langs > 30:
        listed = split == "valid" and lang in EVAL_LGS_OVER_30
        return (5, 1500) if listed else (10, 600)
    if n_langs > 5:
        return (10, 300) if split == "test" else (5, 1500)
    return 1, -1


# -- batches (time-major, as the original) ---------------------------------------------------------
@dataclass
class OriginalBatch:
    x: np.ndarray  # int64 (slen, bs)
    lengths: np.ndarray  # int64 (bs,)
    positions: np.ndarray | None  # int64 (slen, bs); None: 0..slen-1
    langs: np.ndarray | None  # int64 (slen, bs); None: no language embedding


def _clip(x: np.ndarray, n_words: int) -> np.ndarray:
    """Ids of a trimmed vocabulary (``--max_vocab``/``--min_count``) read as ``<unk>``, as the original's loader."""
    x[x >= n_words] = UNK_INDEX
    return x


def stream_batches(data: IndexedDataset, bptt: int, n_words: int, lang_id: int | None,
                   subsample: int = 1) -> Iterator[OriginalBatch]:
    """The original's ``StreamDataset`` with batch size 1, read in order: ``(bptt, 1)`` batches."""
    n_tokens = data.n_tokens
    n_batches = math.ceil(n_tokens / bptt)
    lead = n_batches * bptt - n_tokens + 1  # </s> before the first token: the padding plus the extra row
    lengths = np.array([bptt], dtype=np.int64)
    for i in range(n_batches // subsample):
        idx = np.arange(i * bptt, (i + 1) * bptt) - lead
        x = np.asarray(data.tokens[np.maximum(idx, 0)], dtype=np.int64)
        x[idx < 0] = EOS_INDEX
        x = _clip(x, n_words)[:, None]
        langs = None if lang_id is None else np.full_like(x, lang_id)
        yield OriginalBatch(x, lengths, None, langs)


def _sentences(data: IndexedDataset, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``batch_sentences``: ``(max_len + 2, bs)`` with ``</s> w1 .. wn </s>`` per column, PAD after."""
    lengths = (data.offsets[ids + 1] - data.offsets[ids] + 1).astype(np.int64)  # n + 2
    x = np.full((int(lengths.max()), len(ids)), PAD_INDEX, dtype=np.int64)
    x[0] = EOS_INDEX
    for j, i in enumerate(ids):
        x[1 : lengths[j], j] = data.tokens[data.offsets[i] : data.offsets[i + 1]]  # the sentence and its </s>
    return x, lengths


def pair_order(d1: IndexedDataset, d2: IndexedDataset, batch_size: int, n_sentences: int = -1) -> list[np.ndarray]:
    """Batches of pair ids of an evaluation split, in the original's order."""
    if len(d1) != len(d2):
        raise XLMError(f"{idx_path(d1.prefix)} has {len(d1)} sentences but {idx_path(d2.prefix)} has {len(d2)}")
    kept = np.flatnonzero((d1.sizes > 0) & (d2.sizes > 0))  # ParallelDataset.remove_empty_sentences
    if n_sentences > len(kept):
        warnings.warn(f"{idx_path(d1.prefix)}: the original caps this evaluation at {n_sentences} pairs but "
                      f"there are only {len(kept)} (the original fails an assertion here); using all", stacklevel=2)
    if 0 <= n_sentences < len(kept):
        kept = kept[:n_sentences]
    if len(kept) == 0:
        return []
    lengths = d1.sizes[kept] + d2.sizes[kept] + 4
    kept = kept[np.argsort(lengths, kind="mergesort")]
    return np.array_split(kept, math.ceil(len(kept) / batch_size))


def pair_batch(d1: IndexedDataset, d2: IndexedDataset, ids: np.ndarray, n_words: int, lang1_id: int,
               lang2_id: int) -> OriginalBatch:
    """``concat_batches(..., reset_positions=True)`` of the pairs ``ids`` (``d1`` first)."""
    x1, len1 = _sentences(d1, ids)
    x2, len2 = _sentences(d2, ids)
    lengths = len1 + len2
    slen, bs = int(lengths.max()), len(ids)
    x = np.full((slen, bs), PAD_INDEX, dtype=np.int64)
    x[: x1.shape[0]] = x1
    positions = np.repeat(np.arange(slen, dtype=np.int64)[:, None], bs, axis=1)
    langs = np.full((slen, bs), lang1_id, dtype=np.int64)
    for i in range(bs):
        a = len1[i]
        x[a : a + len2[i], i] = x2[: len2[i], i]
        positions[a:, i] -= a
        langs[a:, i] = lang2_id
    # Padding is never attended to nor scored, so its positions do not matter; the original's (which can
    # exceed the position table when rows differ much in length) are set to 0.
    positions[np.arange(slen)[:, None] >= lengths[None, :]] = 0
    return OriginalBatch(_clip(x, n_words), lengths, positions, langs)


def mask_out(x: np.ndarray, lengths: np.ndarray, word_pred: float,
             rs: np.random.RandomState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The evaluator's ``mask_out``: ``(masked x, targets, pred_mask)``, all time-major.

    Raises XLMError for a row of fewer than 3 tokens (the original's ``randint`` fails there).
    """
    slen, bs = x.shape
    pred = rs.rand(slen, bs) <= word_pred
    pred[0] = False
    for i in range(bs):
        n = int(lengths[i])
        pred[n - 1 :, i] = False
        if not pred[: n - 1, i].any():
            if n < 3:
                raise XLMError(f"a row of {n} tokens has no position to predict (the original fails here too)")
            pred[rs.randint(1, n - 1), i] = True
    targets = x[pred]
    x = x.copy()
    x[pred] = MASK_INDEX
    return x, targets, pred


def clm_targets(x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, pred_mask)``: position ``t < length - 1`` predicts ``x[t + 1]`` (time-major)."""
    pred = np.arange(x.shape[0])[:, None] < lengths[None, :] - 1
    return x[1:][pred[:-1]], pred


# -- scoring ----------------------------------------------------------------------------------------
def score_batch(model: nn.Module, batch: OriginalBatch, pred: np.ndarray, targets: np.ndarray, causal: bool,
                device: torch.device) -> tuple[float, int, int]:
    """``(mean float32 xent * n, n, correct)`` of one batch; targets gathered in time-major order."""
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a.T)).to(device)
    h = model(t(batch.x), lengths=torch.from_numpy(batch.lengths).to(device), langs=t(batch.langs),
              positions=t(batch.positions), causal=causal)
    h = h.transpose(0, 1)[torch.from_numpy(pred).to(device)]  # (n, dim), the original's masked_select order
    scores = getattr(model, "module", model).predict(h).float()
    y = torch.from_numpy(targets).to(device)
    loss = F.cross_entropy(scores, y, reduction="mean")
    return float(loss) * len(targets), len(targets), int((scores.argmax(1) == y).sum())


Source = IndexedDataset | tuple[IndexedDataset, IndexedDataset]  # a stream, or the (lang1, lang2) sides of pairs


@dataclass
class OriginalEvaluator:
    """Same interface as :class:`xlm.evaluation.Evaluator`; reproduces the original's figures exactly."""

    tasks: list[Task]
    sources: dict[tuple[str, Task], Source]  # (split, task) -> corpus
    settings: OriginalSettings
    lang2id: dict[str, int]
    n_words: int
    max_positions: int = 512
    rank: int = 0
    world_size: int = 1
    protocol = "original"

    def __post_init__(self) -> None:
        s = self.settings
        if s.bptt > self.max_positions:
            raise XLMError(f"bptt {s.bptt} exceeds the model's {self.max_positions} positions")
        if s.batch_size <= 0 or s.bptt <= 0:
            raise XLMError(f"bptt and batch_size must be positive (got {s.bptt}, {s.batch_size})")
        if 0 < s.max_batch_size < s.batch_size:
            warnings.warn(f"max_batch_size {s.max_batch_size} < batch_size {s.batch_size}: the original drops "
                          "random pairs of larger evaluation batches (unseeded global RNG, not reproducible); "
                          "here the first max_batch_size pairs of each batch (in length order) are kept",
                          stacklevel=2)
        for src in self.sources.values():
            if isinstance(src, tuple):
                longest = max(int(d.sizes.max(initial=0)) for d in src) + 2
                if longest > self.max_positions:
                    raise XLMError(f"{idx_path(src[0].prefix)}: a pair side of {longest} tokens exceeds the model's "
                                   f"{self.max_positions} positions (the original fails on it too)")

    def batches(self, split: str, task: Task) -> Iterator[OriginalBatch]:
        s, src = self.settings, self.sources[(split, task)]
        subsample, cap = subsampling(split, task.lang1, s.n_langs)
        if not isinstance(src, tuple):
            lang_id = self.lang2id[task.lang1] if len(self.lang2id) > 1 else None
            yield from stream_batches(src, s.bptt, self.n_words, lang_id, subsample)
            return
        l1, l2 = self.lang2id[task.lang1], self.lang2id[task.lang2]
        for ids in pair_order(src[0], src[1], s.batch_size, cap):
            if 0 < s.max_batch_size < len(ids):
                ids = ids[: s.max_batch_size]
            yield pair_batch(src[0], src[1], ids, self.n_words, l1, l2)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 ) -> dict[str, float]:
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        try:
            for (split, task) in self.sources:
                rs = np.random.RandomState(0)  # a fresh one per split and task, as evaluate_mlm
                xent = n = correct = 0.0
                for i, batch in enumerate(self.batches(split, task)):
                    if task.objective == "mlm":  # drawn on every rank: the stream of draws is sequential
                        x, targets, pred = mask_out(batch.x, batch.lengths, self.settings.word_pred, rs)
                        batch = OriginalBatch(x, batch.lengths, batch.positions, batch.langs)
                    else:
                        targets, pred = clm_targets(batch.x, batch.lengths)
                    if i % self.world_size != self.rank or len(targets) == 0:
                        continue
                    with autocast():
                        s, k, c = score_batch(model, batch, pred, targets, task.objective == "clm", device)
                    xent, n, correct = xent + s, n + k, correct + c
                key = f"{split}|{task.name}"
                sums.update({f"{key}|xent": xent, f"{key}|n": n, f"{key}|correct": correct})
        finally:
            model.train(was_training)
        return self.metrics(all_reduce_sums(sums, device))

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for split in SPLITS:
            mono: dict[str, list[tuple[float, float]]] = {"clm": [], "mlm": []}
            for task in self.tasks:
                key = f"{split}|{task.name}"
                if f"{key}|n" not in sums:
                    continue
                n = sums[f"{key}|n"]
                ppl = float(np.exp(sums[f"{key}|xent"] / n)) if n else 1e9
                acc = 100.0 * sums[f"{key}|correct"] / n if n else 0.0
                out[task.metric(split, "ppl")], out[task.metric(split, "acc")] = ppl, acc
                if not task.is_pair:
                    mono[task.objective].append((ppl, acc))
            for objective, values in mono.items():
                if values:
                    out[f"{split}_{objective}_ppl"] = float(np.mean([v[0] for v in values]))
                    out[f"{split}_{objective}_acc"] = float(np.mean([v[1] for v in values]))
        return out


def original_evaluator(cfg: Config, tasks: list[Task], eval_sets: dict, lang2id: dict[str, int], n_words: int,
                       rank: int = 0, world_size: int = 1) -> OriginalEvaluator:
    """The trainer's evaluator under ``train.eval_protocol: original``: settings from the run's config,
    the whole valid/test corpora of its evaluation datasets (no ``max_len`` filter, as the original)."""
    settings = OriginalSettings(bptt=cfg.data.bptt, batch_size=cfg.data.batch_size,
                                max_batch_size=cfg.data.max_batch_size, word_pred=cfg.objectives.word_pred,
                                n_langs=len(cfg.data.langs), tokens_per_batch=cfg.data.tokens_per_batch,
                                max_len=cfg.data.max_len)
    sources: dict[tuple[str, Task], Source] = {}
    for key, ds in eval_sets.items():
        sources[key] = ds.data if isinstance(ds, StreamDataset) else (ds.d1, ds.d2)
    return OriginalEvaluator(tasks, sources, settings, lang2id, n_words, cfg.model.max_positions, rank, world_size)
