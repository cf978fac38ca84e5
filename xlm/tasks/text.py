"""Text to the model's token ids, as its pretraining data was prepared.

Two entry points: :meth:`TextEncoder.sentence` for raw sentences (the model's Moses tokenization,
lowercasing + accent removal when it was trained so, its BPE codes, its dictionary) and
:meth:`TextEncoder.words` for text that the benchmark already split into words (CoNLL, UD, and
the whitespace words of a SQuAD context): no Moses, only the model's lowercasing and BPE, word by
word, so that every piece knows its word. zh/ja words are cut into single ideographs first when
the model's pretraining text was cut so (the ``cjk-chars`` segmenter, or text settings older than
the exact Moses tokenizer); a word segmenter's words (jieba, fugashi) are kept whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xlm.data.dictionary import UNK_INDEX
from xlm.data.text.normalize import lowercase_and_remove_accent
from xlm.data.text.segment import CJK_CHARS, split_cjk_ideographs

if TYPE_CHECKING:
    from xlm.pretrained import Pretrained


class TextEncoder:
    """Sentences and pre-split words -> ids of ``p``'s dictionary (framing tokens not included)."""

    def __init__(self, p: Pretrained, tokenized: bool = False):
        from xlm.text import pipeline

        self.p = p
        self.tokenized = tokenized
        self.pipe = pipeline(p, tokenized)
        self._word_cache: dict[tuple[str, bool], list[int]] = {}
        self._short_cache: dict[tuple[str, str], np.ndarray] = {}  # short strings (context words) repeat
        self.n_pieces = 0
        self.n_unk = 0

    def _count(self, ids: list[int]) -> list[int]:
        self.n_pieces += len(ids)
        self.n_unk += sum(1 for i in ids if i == UNK_INDEX)
        return ids

    def sentence(self, text: str, lang: str) -> np.ndarray:
        """One sentence's ids, ``(n_pieces,)`` int32 (empty for an empty sentence)."""
        if not text.strip():
            return np.zeros(0, dtype=np.int32)
        short = len(text) <= 32
        if short and (text, lang) in self._short_cache:
            out = self._short_cache[(text, lang)]
            self._count(out.tolist())
            return out
        raw = text
        if self.tokenized and self.p.lowercase:  # the pipeline lowercases inside its tokenizer only
            text = lowercase_and_remove_accent(text)
        pieces = self.pipe(text, lang, self.tokenized)
        out = np.asarray(self._count(self.p.dictionary.encode(pieces)), dtype=np.int32)
        if short:
            self._short_cache[(raw, lang)] = out
        return out

    def words(self, words: list[str], lang: str) -> list[list[int]]:
        """The ids of each word's pieces; a word that normalizes to nothing becomes one ``<unk>``."""
        cjk = splits_ideographs(self.pipe.settings, lang)
        out = []
        for word in words:
            key = (word, cjk)
            ids = self._word_cache.get(key)
            if ids is None:
                text = lowercase_and_remove_accent(word) if self.p.lowercase else word
                if cjk:
                    text = split_cjk_ideographs(text)
                units = text.split()
                pieces = self.pipe.bpe.apply([" ".join(units)])[0].split() if self.pipe.bpe and units else units
                ids = self.p.dictionary.encode(pieces) or [UNK_INDEX]
                self._word_cache[key] = ids
            out.append(self._count(ids))
        return out

    def unk_rate(self) -> float:
        return self.n_unk / max(self.n_pieces, 1)


def splits_ideographs(settings: dict, lang: str) -> bool:
    """Whether the model's pretraining text of ``lang`` had one token per CJK ideograph."""
    name = settings.get("segmenters", {}).get(lang, {}).get("name")
    if name is not None:
        return name == CJK_CHARS
    return "tokenizer" not in settings and lang in ("zh", "ja")  # the tokenizer before the exact Moses one
