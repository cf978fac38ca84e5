"""Token classification (CoNLL NER, UD POS): one label per word, read on the word's first sub-word.

The benchmark's words are kept as they are (no Moses); each goes through the model's lowercasing
and BPE on its own (:meth:`xlm.tasks.text.TextEncoder.words`). The input is ``</s> pieces </s>``
with the sentence's language id; the head scores every piece, and only a word's first piece is
trained and read (the others are ignored, index -100), as BERT-style taggers do. A sentence longer
than ``data.max_len`` pieces is split between words into several inputs and put back together for
scoring, so that every word gets a prediction. Scores: seqeval entity F1 (``data.metric: seqeval``)
or word accuracy (``accuracy``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xlm.errors import XLMError
from xlm.tasks.config import SPLITS, TokensConfig, fill
from xlm.tasks.formats.tokens import UPOS_TAGS, TaggedSentence, read_tagged
from xlm.tasks.inputs import Feature, frame
from xlm.tasks.metrics import entity_scores, tag_accuracy
from xlm.tasks.runner import FinetuneTask
from xlm.tasks.text import TextEncoder

IGNORE = -100
FORMAT_FILES = {
    "conll": {"train": "train.{lang}.conll", "valid": "valid.{lang}.conll", "test": "test.{lang}.conll"},
    "conllu": {"train": "train.{lang}.conllu", "valid": "valid.{lang}.conllu", "test": "test.{lang}.conllu"},
}


def chunk_words(pieces: list[list[int]], max_pieces: int) -> list[tuple[int, int]]:
    """``[start, end)`` word ranges whose pieces fit ``max_pieces`` (a longer single word stands alone)."""
    out, start, n = [], 0, 0
    for i, ps in enumerate(pieces):
        if n and n + len(ps) > max_pieces:
            out.append((start, i))
            start, n = i, 0
        n += len(ps)
    out.append((start, len(pieces)))
    return out


class TokensTask(FinetuneTask):
    name = "tokens"
    kind = "token"

    def __init__(self, cfg: TokensConfig):
        super().__init__(cfg)
        self.main_metric = "f1" if cfg.data.metric == "seqeval" else "acc"
        self.table_rows = [[self.main_metric]]
        self.sentences: dict[tuple[str, str], list[TaggedSentence]] = {}
        self.word_labels: dict[tuple[str, str], list[np.ndarray]] = {}  # per feature: the label id of each piece
        self.spans: dict[tuple[str, str], list[tuple[int, int, int]]] = {}  # per feature: sentence, first word, end

    def load(self, p, log) -> None:
        d = self.cfg.data
        for split in SPLITS:
            for lang in d.train_langs if split == "train" else d.langs:
                pattern = d.file_for(split, lang, FORMAT_FILES[d.format])
                if pattern is None:
                    continue
                path = Path(d.path) / fill(pattern, f"data.files.{split}", lang=lang, split=split)
                sents = read_tagged(d.format, path, d.column)
                if split == "train" and d.max_train_examples > 0:
                    sents = sents[: d.max_train_examples]
                if not sents:
                    raise XLMError(f"{path}: no sentences")
                self.sentences[(split, lang)] = sents
        if d.labels:
            self.labels = list(d.labels)
        elif d.format == "conllu" and d.column == "upos":
            self.labels = list(UPOS_TAGS)
        else:
            self.labels = sorted({lab for sents in self.sentences.values() for s in sents for lab in s.labels})
        label_id = {lab: i for i, lab in enumerate(self.labels)}
        enc = TextEncoder(p, tokenized=True)
        max_pieces = min(d.max_len, p.model.position_embeddings.num_embeddings) - 2
        n_split = 0
        for key, sents in self.sentences.items():
            lid = p.lang2id.get(key[1], 0)
            feats, labels, spans = [], [], []
            for si, s in enumerate(sents):
                for lab in s.labels:
                    if lab not in label_id:
                        raise XLMError(f"{s.where}: label {lab!r} is not one of data.labels {self.labels}")
                pieces = [ps[:max_pieces] for ps in enc.words(s.words, key[1])]
                chunks = chunk_words(pieces, max_pieces)
                n_split += len(chunks) - 1
                for a, b in chunks:
                    ids = [i for ps in pieces[a:b] for i in ps]
                    lab = np.full(len(ids) + 2, IGNORE, dtype=np.int64)
                    pos = 1
                    for w in range(a, b):
                        lab[pos] = label_id[s.labels[w]]
                        pos += len(pieces[w])
                    feats.append(Feature(frame(ids), len(ids) + 2, lid, lid))
                    labels.append(lab)
                    spans.append((si, a, b))
            self.features[key], self.word_labels[key], self.spans[key] = feats, labels, spans
        if n_split:
            log.info(f"{n_split} sentences longer than {max_pieces} pieces were split between words")
        if enc.unk_rate() > 0.01:
            log.warning(f"{100 * enc.unk_rate():.1f}% of the pieces are <unk>: check the model's BPE codes and "
                        f"lowercasing (model.lowercase)")

    def targets(self, lang: str, idx: list[int]) -> Tensor:
        labs = [self.word_labels[("train", lang)][i] for i in idx]
        out = np.full((len(labs), max(len(x) for x in labs)), IGNORE, dtype=np.int64)
        for row, x in enumerate(labs):
            out[row, : len(x)] = x
        return torch.from_numpy(out)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.to(logits.device).reshape(-1),
                               ignore_index=IGNORE, reduction="sum")

    def weight(self, items: list[tuple[str, int]]) -> float:
        return float(sum(int((self.word_labels[("train", lg)][i] != IGNORE).sum()) for lg, i in items))

    def predicted_tags(self, split: str, lang: str, logits: list[np.ndarray]) -> list[list[str]]:
        sents = self.sentences[(split, lang)]
        pred: list[list[str]] = [["O"] * len(s.words) for s in sents]
        for lab, (si, a, _), out in zip(self.word_labels[(split, lang)], self.spans[(split, lang)], logits):
            first = np.flatnonzero(lab != IGNORE)  # the first piece of each word, in order
            for w, j in zip(range(a, a + len(first)), first):
                pred[si][w] = self.labels[int(out[j].argmax())]
        return pred

    def score(self, split: str, lang: str, logits: list[np.ndarray]) -> dict[str, float]:
        pred = self.predicted_tags(split, lang, logits)
        gold = [s.labels for s in self.sentences[(split, lang)]]
        return entity_scores(gold, pred) if self.cfg.data.metric == "seqeval" else tag_accuracy(gold, pred)
