"""Extractive question answering on SQuAD v1.1 JSON (SQuAD, MLQA, XQuAD): windows, spans, EM/F1.

The context is cut into words at whitespace, every CJK ideograph being a word of its own (as the
ideographs were tokens in pretraining); each word goes through the model's whole text pipeline
(Moses, lowercasing, BPE), so every piece knows its word and the word its characters. The input
is the original's pair layout ``</s> question </s> context-window </s>`` (positions continuing;
the question carries the question's language id, the context the context's, which differ in
MLQA's cross-language settings). Contexts longer than the window are read in windows of
``max_len - len(question) - 3`` pieces every ``doc_stride`` pieces (BERT's SQuAD recipe); a piece
is read in the window where it has the most context on both sides. Training targets are the first
and last piece of the answer's words, or the first ``</s>`` when the answer is not inside the
window. Decoding takes the ``n_best`` best starts and ends, keeps spans of at most
``max_answer_len`` pieces inside the context, and answers the characters from the start word's
first to the end word's last character. So answers have word granularity: punctuation attached
to a word is part of the span, which the metrics' normalization then removes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xlm.data.dictionary import EOS_INDEX
from xlm.errors import XLMError
from xlm.tasks.config import SPLITS, QAConfig, fill
from xlm.tasks.formats.squad import QAExample, read_squad
from xlm.tasks.inputs import Feature
from xlm.tasks.metrics import qa_scores
from xlm.tasks.runner import FinetuneTask
from xlm.tasks.text import TextEncoder

FORMAT_FILES = {"train": "train.{lang}.json", "valid": "dev.{lang}.json", "test": "test.{lang}.json"}
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def context_words(context: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the context's words (whitespace-separated; ideographs alone)."""
    return [m.span() for m in _WORD.finditer(context)]


@dataclass
class Window:
    example: int
    ctx_offset: int            # index of the first context piece in the feature
    start: int                 # first context piece of the window (in the context's pieces)
    max_context: np.ndarray    # bool per window piece: this window gives the piece its widest context


class QATask(FinetuneTask):
    name = "qa"
    kind = "span"
    main_metric = "f1"
    table_rows = [["f1", "em"]]

    def __init__(self, cfg: QAConfig):
        super().__init__(cfg)
        self.labels = ["start", "end"]
        self.examples: dict[tuple[str, str], list[QAExample]] = {}
        self.windows: dict[tuple[str, str], list[Window]] = {}
        self.piece_word: dict[tuple[str, str], list[np.ndarray]] = {}  # per example: word index of each piece
        self.words: dict[tuple[str, str], list[list[tuple[int, int]]]] = {}
        self.train_targets: dict[str, np.ndarray] = {}
        self._predictions: dict[tuple[str, str], dict[str, str]] = {}

    def n_outputs(self) -> int:
        return 2

    def load(self, p, log) -> None:
        d = self.cfg.data
        enc = TextEncoder(p)
        max_len = min(d.max_len, p.model.position_embeddings.num_embeddings)
        unanswerable = 0
        for split in SPLITS:
            for lang in d.train_langs if split == "train" else d.langs:
                qlang = d.question_langs.get(lang, lang)
                pattern = d.file_for(split, lang, FORMAT_FILES)
                if pattern is None:
                    continue
                path = Path(d.path) / fill(pattern, f"data.files.{split}", lang=lang, qlang=qlang, split=split)
                exs = read_squad(path)
                if split == "train" and d.max_train_examples > 0:
                    exs = exs[: d.max_train_examples]
                if not exs:
                    raise XLMError(f"{path}: no questions")
                key = (split, lang)
                self.examples[key] = exs
                feats, wins, targets, piece_word, words = [], [], [], [], []
                for e, ex in enumerate(exs):
                    spans = context_words(ex.context)
                    word_pieces = [enc.sentence(ex.context[a:b], lang) for a, b in spans]
                    pw = np.repeat(np.arange(len(spans)), [len(x) for x in word_pieces]).astype(np.int64)
                    ctx = np.concatenate(word_pieces) if word_pieces else np.zeros(0, dtype=np.int32)
                    q = enc.sentence(ex.question, qlang)[: d.max_query_len]
                    answer = self._answer_pieces(ex, spans, pw) if split == "train" else None
                    if split == "train" and answer is None:
                        unanswerable += 1
                        continue
                    for w, f in self._windows(e, ctx, q, p.lang2id.get(qlang, 0), p.lang2id.get(lang, 0), max_len):
                        feats.append(f)
                        wins.append(w)
                        if answer is not None:
                            s, t = answer[0] - w.start, answer[1] - w.start
                            inside = s >= 0 and t < len(f) - 1 - w.ctx_offset
                            targets.append((s + w.ctx_offset, t + w.ctx_offset) if inside else (0, 0))
                    piece_word.append(pw)
                    words.append(spans)
                self.features[key], self.windows[key] = feats, wins
                self.piece_word[key], self.words[key] = piece_word, words
                if split == "train":
                    self.train_targets[lang] = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
        if unanswerable:
            log.warning(f"{unanswerable} training questions skipped: answer_start does not point at the answer text")
        if enc.unk_rate() > 0.01:
            log.warning(f"{100 * enc.unk_rate():.1f}% of the pieces are <unk>: check the model's BPE codes and "
                        f"lowercasing (model.lowercase)")

    @staticmethod
    def _answer_pieces(ex: QAExample, spans: list[tuple[int, int]], pw: np.ndarray) -> tuple[int, int] | None:
        """First and last piece of the words the first answer covers; None when it cannot be located."""
        if not ex.answer_found(0):
            return None
        text, start = ex.answers[0]
        end = start + len(text)
        covered = [i for i, (a, b) in enumerate(spans) if a < end and b > start]
        if not covered:
            return None
        first = np.flatnonzero(pw == covered[0])
        last = np.flatnonzero(pw == covered[-1])
        if not len(first) or not len(last):
            return None
        return int(first[0]), int(last[-1])

    def _windows(self, e: int, ctx: np.ndarray, q: np.ndarray, qlang: int, clang: int, max_len: int):
        d = self.cfg.data
        room = max_len - len(q) - 3
        n = len(ctx)
        starts = [0]
        while starts[-1] + room < n:
            starts.append(starts[-1] + min(room, d.doc_stride))
        spans = [(s, min(room, n - s)) for s in starts]
        for s, length in spans:
            ids = np.concatenate([[EOS_INDEX], q, [EOS_INDEX], ctx[s : s + length], [EOS_INDEX]]).astype(np.int64)
            best = np.ones(length, dtype=bool)
            for j in range(length):  # BERT's "max context": min(left, right) + 0.01 * window length
                pos = s + j
                mine = min(j, length - 1 - j) + 0.01 * length
                for s2, l2 in spans:
                    if s2 != s and s2 <= pos < s2 + l2 and min(pos - s2, s2 + l2 - 1 - pos) + 0.01 * l2 > mine:
                        best[j] = False
                        break
            yield Window(e, len(q) + 2, s, best), Feature(ids, len(q) + 1, qlang, clang)

    def targets(self, lang: str, idx: list[int]) -> Tensor:
        lengths = [len(self.features[("train", lang)][i]) for i in idx]
        return torch.cat([torch.as_tensor(self.train_targets[lang][idx]), torch.tensor(lengths)[:, None]], 1)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        targets = targets.to(logits.device)
        pad = torch.arange(logits.shape[1], device=logits.device)[None, :] >= targets[:, 2:3]
        logits = logits.masked_fill(pad[:, :, None], -1e4)
        return (F.cross_entropy(logits[..., 0], targets[:, 0], reduction="sum")
                + F.cross_entropy(logits[..., 1], targets[:, 1], reduction="sum")) / 2

    def _decode(self, split: str, lang: str, logits: list[np.ndarray]) -> dict[str, str]:
        d, key = self.cfg.data, (split, lang)
        best: dict[int, tuple[float, int, int]] = {}
        for w, out in zip(self.windows[key], logits):
            n = len(w.max_context)
            start_l, end_l = out[w.ctx_offset : w.ctx_offset + n, 0], out[w.ctx_offset : w.ctx_offset + n, 1]
            starts = [j for j in np.argsort(-start_l)[: d.n_best] if w.max_context[j]]
            ends = np.argsort(-end_l)[: d.n_best]
            for i in starts:
                for j in ends:
                    if j < i or j - i + 1 > d.max_answer_len:
                        continue
                    score = float(start_l[i] + end_l[j])
                    if w.example not in best or score > best[w.example][0]:
                        best[w.example] = (score, w.start + int(i), w.start + int(j))
        preds = {}
        for e, ex in enumerate(self.examples[key]):
            if e not in best:
                preds[ex.id] = ""
                continue
            _, i, j = best[e]
            pw, spans = self.piece_word[key][e], self.words[key][e]
            preds[ex.id] = ex.context[spans[pw[i]][0] : spans[pw[j]][1]]
        return preds

    def score(self, split: str, lang: str, logits: list[np.ndarray]) -> dict[str, float]:
        preds = self._predictions[(split, lang)] = self._decode(split, lang, logits)
        answers = {ex.id: [t for t, _ in ex.answers] for ex in self.examples[(split, lang)]}
        return qa_scores(answers, preds, self.cfg.data.normalization, lang)

    def predictions(self, split: str, lang: str) -> dict[str, str] | None:
        return self._predictions.get((split, lang))
