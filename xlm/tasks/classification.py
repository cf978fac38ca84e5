"""Sentence and sentence-pair classification and regression (XNLI, PAWS-X, GLUE), as the original's glue-xnli.py.

Inputs follow :mod:`xlm.tasks.inputs`: a pair is ``</s> a </s> b </s>`` with positions continuing
(``data.positions: restart`` gives the TLM layout), a single sentence ``</s> a </s>``; each side
carries its example's language id (``data.lang_ids: false`` adds none, as the original's GLUE runs).
Training sentences longer than ``data.max_len`` (framing included) are cut one by one, as the
original cuts them; evaluation sentences are not cut (the original did not), unless a pair is
longer than the model's positions: then it is cut to fit, longer side first, and counted in a
warning. The head reads the first ``</s>``. Labels: ``data.labels``, else the format's (XNLI:
``contradiction, neutral, entailment`` in the original's order; PAWS-X ``0, 1``), else the sorted
labels of the training files (as the original's ``glue.py``). ``train.weighted`` weighs each class
by ``1 / count`` normalized to sum 1 (the original's ``--weighted_training``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xlm.errors import XLMError
from xlm.tasks.config import SPLITS, SentenceConfig, fill
from xlm.tasks.formats.sentence import (
    FORMAT_FILES,
    FORMAT_FILES_BY_LANG,
    PAWSX_LABELS,
    XNLI_LABELS,
    ReadStats,
    read_examples,
)
from xlm.tasks.inputs import fit_pair, frame, pair, single, truncate
from xlm.tasks.metrics import classification_scores, regression_scores
from xlm.tasks.runner import FinetuneTask
from xlm.tasks.text import TextEncoder


class SentenceTask(FinetuneTask):
    name = "sentence"
    kind = "sequence"

    def __init__(self, cfg: SentenceConfig):
        super().__init__(cfg)
        self.regression = cfg.data.regression
        self.main_metric = "prs" if self.regression else "acc"
        self.use_langs = cfg.data.lang_ids
        self.y: dict[tuple[str, str], np.ndarray] = {}
        self.class_weights: Tensor | None = None

    def n_outputs(self) -> int:
        return 1 if self.regression else len(self.labels)

    def _labels(self, rows: dict[tuple[str, str], list]) -> list[str]:
        d = self.cfg.data
        if self.regression:
            return []
        if d.labels:
            return list(d.labels)
        if d.format == "xnli":
            return list(XNLI_LABELS)
        if d.format == "pawsx":
            return list(PAWSX_LABELS)
        return sorted({ex.label for lg in d.train_langs for ex in rows[("train", lg)]})

    def load(self, p, log) -> None:
        d = self.cfg.data
        rows, stats = {}, ReadStats()
        for split in SPLITS:
            for lang in d.train_langs if split == "train" else d.langs:
                pattern = d.file_for(split, lang, FORMAT_FILES[d.format], FORMAT_FILES_BY_LANG.get(d.format))
                if pattern is None:
                    continue
                path = Path(d.path) / fill(pattern, f"data.files.{split}", lang=lang, split=split)
                got = read_examples(d.format, path, lang, columns=d.columns or None, header=d.header,
                                    skip_malformed=d.skip_malformed, stats=stats)
                if split == "train" and d.max_train_examples > 0:
                    got = got[: d.max_train_examples]
                if not got:
                    raise XLMError(f"{path}: no examples{f' for language {lang!r}' if d.format == 'xnli' else ''}")
                rows[(split, lang)] = got
        if stats.malformed:
            log.warning(f"skipped {stats.malformed} malformed lines (data.skip_malformed)")
        if stats.empty:
            log.warning(f"dropped {stats.empty} examples with an empty sentence (as the original)")
        self.labels = self._labels(rows)
        self.table_rows = ([["prs"], ["spr"]] if self.regression else
                           [["acc"]] if len(self.labels) > 2 else [["acc"], ["f1"], ["mc"]])
        label_id = {lab: i for i, lab in enumerate(self.labels)}
        enc = TextEncoder(p, d.tokenized)
        max_pos = p.model.position_embeddings.num_embeddings
        reset = d.positions == "restart"
        cut = 0
        for (split, lang), exs in rows.items():
            lid = p.lang2id.get(lang, 0)
            feats = []
            for ex in exs:
                a = frame(enc.sentence(ex.text_a, lang))
                b = None if ex.text_b is None else frame(enc.sentence(ex.text_b, lang))
                if split == "train":
                    a, b = truncate(a, d.max_len), None if b is None else truncate(b, d.max_len)
                total = len(a) + (0 if b is None else len(b) - (0 if reset else 1))
                if total > max_pos:
                    cut += 1
                    a, b = (truncate(a, max_pos), None) if b is None else fit_pair(a, b, max_pos, reset)
                feats.append(single(a, lid) if b is None else pair(a, lid, b, lid, reset))
            self.features[(split, lang)] = feats
            self.y[(split, lang)] = self._targets(exs, label_id)
        if cut:
            log.warning(f"{cut} examples longer than the model's {max_pos} positions were cut to fit")
        if enc.unk_rate() > 0.01:
            log.warning(f"{100 * enc.unk_rate():.1f}% of the pieces are <unk>: check the model's BPE codes and "
                        f"lowercasing (model.lowercase)")
        if self.cfg.train.weighted:
            y = np.concatenate([self.y[("train", lg)] for lg in d.train_langs])
            counts = np.bincount(y, minlength=len(self.labels))
            if (counts == 0).any():
                raise XLMError(f"train.weighted: label {self.labels[int(np.argmin(counts))]!r} has no training example")
            w = 1.0 / counts
            self.class_weights = torch.tensor(w / w.sum(), dtype=torch.float32)

    def _targets(self, exs: list, label_id: dict[str, int]) -> np.ndarray:
        if self.regression:
            out = []
            for ex in exs:
                try:
                    out.append(float(ex.label))
                except ValueError:
                    raise XLMError(f"{ex.where}: regression target {ex.label!r} is not a number") from None
            return np.asarray(out, dtype=np.float32)
        for ex in exs:
            if ex.label not in label_id:
                raise XLMError(f"{ex.where}: label {ex.label!r} is not one of {self.labels}")
        return np.asarray([label_id[ex.label] for ex in exs], dtype=np.int64)

    def targets(self, lang: str, idx: list[int]) -> Tensor:
        return torch.as_tensor(self.y[("train", lang)][np.asarray(idx)])

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        targets = targets.to(logits.device)
        if self.regression:
            return F.mse_loss(logits.squeeze(1), targets, reduction="sum")
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits, targets, weight=weight, reduction="sum")

    def weight(self, items: list[tuple[str, int]]) -> float:
        if self.class_weights is None:
            return float(len(items))
        return float(sum(self.class_weights[int(self.y[("train", lg)][i])] for lg, i in items))

    def score(self, split: str, lang: str, logits: list[np.ndarray]) -> dict[str, float]:
        out = np.stack(logits)
        gold = self.y[(split, lang)]
        if self.regression:
            return regression_scores(gold, out[:, 0])
        return classification_scores(gold, out.argmax(1), len(self.labels))
