"""The corpora a training run reads: open them, refuse the ones that would train on nothing, build samplers.

Degenerate data is found here, before the first step, never as a traceback or a loss of 0 later:

- a vocabulary with no real word left (``data.max_vocab`` / ``data.min_count`` too small);
- an empty training corpus (0 sentences) or a pair corpus whose pairs are all empty or over
  ``data.max_len``;
- a training corpus with nothing to predict: for MLM/TLM no token is a real word (every token is a
  special, ``<unk>``, or beyond the trimmed vocabulary); for CLM, ``objectives.context_size`` leaves
  no position to predict;
- a valid/test corpus that is empty or has nothing to predict: the run can go on, so it is skipped
  with a warning naming the file and the metrics that will not be reported -- unless
  ``train.validation_metric`` needs it, which is an error.

Each refusal is one :class:`XLMError` line naming the file or the config key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlm.config import Config
from xlm.data import provenance
from xlm.data.datasets import (
    ParallelDataset,
    ParallelSampler,
    RawBatch,
    SentenceDataset,
    StreamDataset,
    StreamSampler,
    mono_prefix,
    open_corpus,
    para_prefix,
)
from xlm.data.dictionary import N_SPECIAL, Dictionary
from xlm.data.indexed import IndexedDataset, bin_path
from xlm.data.packing import PackedPairSampler, packed, set_pack_rows
from xlm.distributed import DistInfo
from xlm.errors import XLMError
from xlm.objectives import Task, eval_tasks

Dataset = StreamDataset | ParallelDataset | SentenceDataset
_SCAN_CHUNK = 1 << 22  # tokens read at a time when looking for a predictable token (stops at the first)


class TaskSource:
    """Training batches of one task: a dataset read in the order of its sampler."""

    def __init__(self, dataset: Dataset, sampler: StreamSampler | ParallelSampler):
        self.dataset, self.sampler = dataset, sampler

    def next(self) -> RawBatch:
        idx = next(self.sampler)
        if isinstance(self.dataset, StreamDataset):
            return self.dataset.windows(idx)
        if isinstance(self.dataset, SentenceDataset):
            return self.dataset.sentences(idx)
        return self.dataset.pairs(idx)


@dataclass
class TrainingData:
    dictionary: Dictionary
    lang2id: dict[str, int]
    bpe_codes: str | None
    sources: dict[Task, TaskSource]
    sizes: dict[Task, int]
    eval_sets: dict[tuple[str, Task], Dataset] = field(default_factory=dict)
    skipped_evals: dict[tuple[str, Task], str] = field(default_factory=dict)  # (split, task) -> why
    fingerprint: str = ""  # vocabulary + the size of every corpus read: "same data" for run-folder checks
    text_settings: dict[str, Any] | None = None  # how raw text was prepared (xlm.data.provenance); None: unknown


def has_predictable_token(corpus: IndexedDataset, n_words: int, n_sentences: int | None = None) -> bool:
    """Whether the first ``n_sentences`` (all: None) hold a real word (id in ``[14, n_words)``) to predict.

    Reads chunk by chunk and stops at the first hit, so a normal corpus costs one chunk.
    """
    end = len(corpus.tokens) if n_sentences is None else int(corpus.offsets[min(n_sentences, len(corpus))])
    for start in range(0, end, _SCAN_CHUNK):
        t = np.asarray(corpus.tokens[start : min(start + _SCAN_CHUNK, end)])
        if ((t >= N_SPECIAL) & (t < n_words)).any():
            return True
    return False


def _fingerprint(vocab: str, corpora: dict[Path, IndexedDataset]) -> str:
    h = hashlib.sha1(vocab.encode())
    for prefix in sorted(corpora):
        c = corpora[prefix]
        h.update(json.dumps([prefix.name, len(c), c.n_tokens]).encode())
    return h.hexdigest()[:16]


def load_data(cfg: Config, tasks: list[Task], dist: DistInfo, warn: Callable[[str], None] = print) -> TrainingData:
    """Open every corpus the tasks need (memory-mapped), check it can be trained on, build samplers for this rank."""
    d = cfg.data
    root = Path(d.path)
    if not d.path or not root.is_dir():
        raise XLMError(f"data.path: {d.path!r} is not a folder (run preprocess first)")
    vocab = root / "vocab"
    full = Dictionary.read_vocab(vocab)
    dico = Dictionary.read_vocab(vocab, d.max_vocab, d.min_count) if d.max_vocab > 0 or d.min_count > 0 else full
    if len(dico) <= N_SPECIAL:
        raise XLMError(f"data.max_vocab/data.min_count: no word of {vocab} is left ({d.max_vocab=}, {d.min_count=}): "
                       "nothing could be predicted")
    codes = root / "codes"
    bpe_codes = codes.read_text(encoding="utf-8") if codes.is_file() else None
    text_settings, problems = provenance.for_training(root, d.preprocess, any(w.endswith("@@") for w in full.id2word))
    for problem in problems:
        warn(problem)
    lang2id = {lang: i for i, lang in enumerate(d.langs)}
    n_words = len(dico)
    opened: dict[Path, IndexedDataset] = {}

    def corpus(prefix: Path) -> IndexedDataset:
        if prefix not in opened:
            opened[prefix] = open_corpus(prefix, len(full), full.fingerprint())
        return opened[prefix]

    def dataset(split: str, task: Task, max_sentences: int, max_len: int) -> Dataset:
        kind = task.data  # declared by the task's objective (xlm.objectives.registry)
        if kind == "stream":
            return StreamDataset(corpus(mono_prefix(root, split, task.lang1)), d.bptt, n_words,
                                 lang2id[task.lang1], max_sentences)
        if kind == "sentences":
            return SentenceDataset(corpus(mono_prefix(root, split, task.lang1)), n_words, lang2id[task.lang1],
                                   lang2id[task.lang2] if task.lang2 else None, max_len, max_sentences)
        c1 = corpus(para_prefix(root, split, task.lang1, task.lang2, task.lang1))
        c2 = corpus(para_prefix(root, split, task.lang1, task.lang2, task.lang2))
        return ParallelDataset(c1, c2, n_words, lang2id[task.lang1], lang2id[task.lang2], max_len, max_sentences)

    # each half of a pair is </s> s </s> with positions from 0 (from position_offset in the table)
    longest = cfg.model.max_positions - cfg.model.position_offset - 2
    train_max_len = min(d.max_len, longest) if d.max_len > 0 else longest
    sources, sizes, eval_sets, skipped = {}, {}, {}, {}
    for task in tasks:
        ds = dataset("train", task, -1, train_max_len)
        problem = _unusable(ds, task, cfg, n_words)
        if problem:
            raise XLMError(f"{problem}: task {task.name} has nothing to train on")
        if isinstance(ds, StreamDataset):
            sampler = StreamSampler(len(ds), d.batch_size, cfg.run.seed, dist.rank, dist.world_size, task.name)
            sizes[task] = len(ds.data)
        elif d.pack and packed(task):  # batches cut to fill rows of bptt tokens; rows: set_pack_rows below
            sampler = PackedPairSampler(ds.lengths, d.bptt, 0, d.max_batch_size, d.group_by_size,
                                        cfg.run.seed, dist.rank, dist.world_size, task.name)
            sizes[task] = len(ds)
        else:
            sampler = ParallelSampler(ds.lengths, d.batch_size, d.tokens_per_batch, d.max_batch_size, d.group_by_size,
                                      cfg.run.seed, dist.rank, dist.world_size, task.name)
            sizes[task] = len(ds)
        sources[task] = TaskSource(ds, sampler)
    for task in eval_tasks(tasks):  # BT en-fr-en is evaluated as MT fr-en on pairs; AE is not evaluated
        for split in ("valid", "test"):
            eds = dataset(split, task, cfg.train.eval_max_sentences, longest)
            problem = _unusable(eds, task, cfg, n_words)
            if problem:
                skipped[(split, task)] = problem
            else:
                eval_sets[(split, task)] = eds
    set_pack_rows([s.sampler for s in sources.values() if isinstance(s.sampler, PackedPairSampler)], d)
    _report_skipped(skipped, cfg, warn)
    return TrainingData(dico, lang2id, bpe_codes, sources, sizes, eval_sets, skipped,
                        _fingerprint(full.fingerprint(), opened), text_settings)


def _unusable(ds: Dataset, task: Task, cfg: Config, n_words: int) -> str:
    """Why ``ds`` gives nothing to predict for ``task`` (``"FILE: reason"``), or ``""`` when it is usable."""
    if isinstance(ds, SentenceDataset):
        where = bin_path(ds.data.prefix)
        if len(ds) == 0:
            return f"{where}: no usable sentence" + (f" ({ds.n_dropped} empty or over data.max_len {ds.max_len})"
                                                     if ds.n_dropped else " (0 sentences)")
        if not has_predictable_token(ds.data, n_words, int(ds.indices[-1]) + 1):
            return f"{where}: no token to predict (every token is special, <unk>, or beyond data.max_vocab)"
        return ""
    if isinstance(ds, StreamDataset):
        where = bin_path(ds.data.prefix)
        if ds.n_sentences == 0:
            return f"{where}: empty (0 sentences)"
        if task.objective == "clm":
            if cfg.objectives.context_size >= ds.bptt - 1:
                return (f"objectives.context_size: {cfg.objectives.context_size} leaves no position of a "
                        f"{ds.bptt}-token stream window (data.bptt) to predict")
            return ""
        if not has_predictable_token(ds.data, n_words, ds.n_sentences):
            return f"{where}: no token to predict (every token is special, <unk>, or beyond data.max_vocab)"
        return ""
    where = f"{bin_path(ds.d1.prefix)} + {bin_path(ds.d2.prefix).name}"
    if len(ds) == 0:
        if ds.n_dropped == 0:
            return f"{where}: empty (0 pairs)"
        return (f"{where}: no usable pair (each of the {ds.n_dropped} has an empty side"
                + (f" or a side over {ds.max_len} tokens, data.max_len)" if ds.max_len > 0 else ")"))
    if task.objective == "clm":
        if int(ds.lengths.max()) <= cfg.objectives.context_size + 1:
            return (f"objectives.context_size: {cfg.objectives.context_size} leaves no position of any pair "
                    f"(at most {int(ds.lengths.max())} tokens) to predict")
        return ""
    n = int(ds.indices[-1]) + 1  # the pairs in use are among the first n
    if not (has_predictable_token(ds.d1, n_words, n) or has_predictable_token(ds.d2, n_words, n)):
        return f"{where}: no token to predict (every token is special, <unk>, or beyond data.max_vocab)"
    return ""


def _report_skipped(skipped: dict[tuple[str, Task], str], cfg: Config, warn: Callable[[str], None]) -> None:
    """Warn about each skipped evaluation set; refuse when the validation metric needs one of them."""
    vm = cfg.train.validation_metric.lstrip("_")
    for (split, task), why in skipped.items():
        names = [task.metric(split, "ppl"), task.metric(split, "acc")]
        average = [f"{split}_{task.objective}_ppl", f"{split}_{task.objective}_acc"] if not task.is_pair else []
        if vm and vm in names + average:
            raise XLMError(f"{why}: train.validation_metric {cfg.train.validation_metric!r} needs it")
        warn(f"{why}: {'/'.join(names)} will not be reported"
             + (f" (and {average[0]} averages the other languages only)" if average else ""))
