"""Vocabulary with the original XLM special ids, read from fastBPE ``getvocab`` files.

Ids 0-13 are fixed: ``<s>`` 0, ``</s>`` 1, ``<pad>`` 2, ``<unk>`` 3, ``<special0..9>`` 4-13, and the
MLM mask is ``<special1>`` (5). A dictionary made by :meth:`Dictionary.xlmr` has XLM-R's layout
instead (fairseq's ``Dictionary`` plus the ``<mask>`` XLM-R appends): ``<s>`` 0, ``<pad>`` 1,
``</s>`` 2, ``<unk>`` 3, pieces from 4, ``<mask>`` last; its ``*_index`` attributes say so, and
code that handles such models reads the ids from the dictionary, not from the constants below.
Words from the vocabulary file follow from id 14 in file order,
which fastBPE writes by decreasing count, so truncating ids keeps the most frequent words. Lines
the original's reader skips are skipped here too (with a warning), so every file gets the ids the
original gives it; ``strict=True`` refuses them instead.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from xlm.errors import XLMError, warn
from xlm.io import atomic_open, strict_lines

BOS_WORD, EOS_WORD, PAD_WORD, UNK_WORD = "<s>", "</s>", "<pad>", "<unk>"
N_SPECIAL_WORDS = 10
SPECIAL_WORDS = [BOS_WORD, EOS_WORD, PAD_WORD, UNK_WORD] + [f"<special{i}>" for i in range(N_SPECIAL_WORDS)]
BOS_INDEX, EOS_INDEX, PAD_INDEX, UNK_INDEX, MASK_INDEX = 0, 1, 2, 3, 5
N_SPECIAL = len(SPECIAL_WORDS)  # 14: the first id of a real word
XLMR_SPECIAL_WORDS = [BOS_WORD, PAD_WORD, EOS_WORD, UNK_WORD]  # ids 0-3 (fairseq), then pieces, then <mask>
XLMR_MASK_WORD = "<mask>"


class Dictionary:
    """Maps tokens to ids and back; ``counts`` are corpus frequencies (0 for special tokens)."""

    bos_index = BOS_INDEX
    eos_index = EOS_INDEX
    pad_index = PAD_INDEX
    unk_index = UNK_INDEX
    mask_index = MASK_INDEX
    layout = "xlm"  # "xlmr": see Dictionary.xlmr
    n_special = N_SPECIAL  # the first id of a real word
    start_index = EOS_INDEX  # the id a sentence starts with: XLM frames </s> w1 .. wn </s>, XLM-R <s> .. </s>

    @classmethod
    def xlmr(cls, pieces: Sequence[str], counts: Sequence[int] | None = None) -> Dictionary:
        """XLM-R's layout: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``pieces`` from 4, ``<mask>`` last.

        Source: fairseq ``Dictionary`` (specials 0-3) and XLM-R's ``<mask>`` appended after the
        SentencePiece pieces (``XLMRobertaTokenizer``: ``mask_token`` id ``len(sp_model) + 1``).
        """
        d = cls.__new__(cls)
        d.id2word = XLMR_SPECIAL_WORDS + list(pieces) + [XLMR_MASK_WORD]
        d.counts = [0] * 4 + (list(counts) if counts is not None else [0] * len(pieces)) + [0]
        d.word2id = {w: i for i, w in enumerate(d.id2word)}
        if len(d.word2id) != len(d.id2word):
            dup = next(w for i, w in enumerate(d.id2word) if d.word2id[w] != i)
            raise XLMError(f"duplicate piece {dup!r} in the XLM-R vocabulary")
        d.layout = "xlmr"
        d.bos_index, d.pad_index, d.eos_index, d.unk_index = 0, 1, 2, 3
        d.start_index = 0
        d.mask_index = len(d.id2word) - 1
        d.n_special = 4
        return d

    def real_words(self) -> list[str]:
        """The words that are not special tokens, in id order."""
        end = len(self) - 1 if self.layout == "xlmr" else len(self)
        return self.id2word[self.n_special : end]

    def specials(self) -> dict[str, int]:
        """Role -> id of the special tokens (``bos``, ``eos``, ``pad``, ``unk``, ``mask``)."""
        return {"bos": self.bos_index, "eos": self.eos_index, "pad": self.pad_index, "unk": self.unk_index,
                "mask": self.mask_index}

    def __init__(self, words: Sequence[str], counts: Sequence[int] | None = None):
        """``words`` are the real words (ids from 14 on), without the special tokens."""
        if counts is not None and len(counts) != len(words):
            raise ValueError(f"{len(words)} words but {len(counts)} counts")
        self.id2word: list[str] = SPECIAL_WORDS + list(words)
        self.counts: list[int] = [0] * N_SPECIAL + (list(counts) if counts is not None else [0] * len(words))
        self.word2id: dict[str, int] = {w: i for i, w in enumerate(self.id2word)}
        if len(self.word2id) != len(self.id2word):
            dup = next(w for i, w in enumerate(self.id2word) if self.word2id[w] != i)
            raise XLMError(f"duplicate word {dup!r} in dictionary")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def read_vocab(
        cls, path: str | os.PathLike, max_vocab: int = -1, min_count: int = 0, *, strict: bool = False
    ) -> Dictionary:
        """Read a ``TOKEN COUNT`` file; the ids are the ones the original gives it.

        By default lines are read as the original's ``Dictionary.read_vocab`` (``xlm/data/dictionary.py``)
        reads them: in text mode (``\\r\\n`` and ``\\r`` end lines too), a line holding U+2028, a line
        that ``str.split()`` does not split into exactly two fields (a token with a tab or a
        non-breaking space, an empty line) and a token already seen (special words included) are
        skipped, and later words move up. One :class:`~xlm.errors.XLMWarning` counts the skipped
        lines by reason. What the original stops on (a count that is not a number, counts that
        increase) is an :class:`XLMError` naming the file and line.

        ``strict=True`` (``preprocess.py check``) refuses every line the default skips, naming it.
        ``max_vocab`` counts the 14 specials (as the original's ``--max_vocab``); ``min_count``
        drops rarer words.
        """
        words, counts = _read_strict(path) if strict else _read_as_original(path)
        if max_vocab > 0:
            keep = max(0, max_vocab - N_SPECIAL)
            words, counts = words[:keep], counts[:keep]
        if min_count > 0:
            n = sum(1 for c in counts if c >= min_count)
            if any(c < min_count for c in counts[:n]):  # only possible when the last count is out of order
                raise XLMError(f"{path}: min_count={min_count} would leave a gap in the ids (counts not sorted)")
            words, counts = words[:n], counts[:n]
        return cls(words, counts)

    @classmethod
    def from_id2word(cls, id2word: dict[int, str] | Sequence[str], counts: dict[str, int] | None = None) -> Dictionary:
        """Rebuild from an original checkpoint's ``dico_id2word`` (and ``dico_counts``)."""
        if isinstance(id2word, dict):
            n = len(id2word)
            if sorted(id2word) != list(range(n)):
                raise XLMError("dico_id2word: ids are not 0..n-1")
            words = [id2word[i] for i in range(n)]
        else:
            words = list(id2word)
        if words[:N_SPECIAL] != SPECIAL_WORDS:
            raise XLMError(
                f"dictionary: the first {N_SPECIAL} entries must be the special tokens "
                f"{SPECIAL_WORDS}, got {words[:N_SPECIAL]}"
            )
        real = words[N_SPECIAL:]
        return cls(real, [int((counts or {}).get(w, 0)) for w in real])

    # -- output ---------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike) -> None:
        """Write the real words as a ``TOKEN COUNT`` file (atomically)."""
        if self.layout != "xlm":
            raise XLMError(f"a TOKEN COUNT file holds XLM's layout only; this dictionary has the {self.layout} layout")
        with atomic_open(path, "w") as f:
            for w, c in zip(self.id2word[N_SPECIAL:], self.counts[N_SPECIAL:]):
                f.write(f"{w} {c}\n")

    # -- lookup ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.id2word)

    def __getitem__(self, i: int) -> str:
        return self.id2word[i]

    def __contains__(self, word: str) -> bool:
        return word in self.word2id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.id2word == other.id2word and self.layout == other.layout

    def __repr__(self) -> str:
        return f"Dictionary({len(self)} words)"

    def index(self, word: str) -> int:
        return self.word2id.get(word, self.unk_index)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        unk = self.unk_index
        return [self.word2id.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.id2word[int(i)] for i in ids]

    def fingerprint(self) -> str:
        """A short hash of the id->word mapping: data and models built on different vocabularies differ."""
        h = hashlib.sha1()
        for w in self.id2word:
            h.update(w.encode("utf-8") + b"\n")
        return h.hexdigest()[:16]


# -- reading vocabulary files ---------------------------------------------------------------------------
SKIP_REASONS = {
    "u2028": "holding U+2028",
    "fields": "not two whitespace-separated fields",
    "duplicate": "duplicate tokens",
    "special": "special words",
}


def _decode(path: str | os.PathLike) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise XLMError(f"{path}: cannot read vocabulary: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start) - 1
        raise XLMError(f"{path}:{lineno}: invalid UTF-8 at byte {column} of the line") from None


def _read_as_original(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """The original's rules, line for line; see :meth:`Dictionary.read_vocab`."""
    text = _decode(path)
    words: list[str] = []
    counts: list[int] = []
    seen = set(SPECIAL_WORDS)
    skipped: Counter[str] = Counter()
    # text mode with universal newlines, as the original's open(path, 'r'): \r\n, \r and \n end a line
    for lineno, line in enumerate(io.StringIO(text, newline=None), 1):
        if "\u2028" in line:
            skipped["u2028"] += 1
            continue
        fields = line.rstrip().split()
        if len(fields) != 2:
            skipped["fields"] += 1
            continue
        token, count = fields
        if not count.isdigit():
            raise XLMError(f"{path}:{lineno}: count {count[:40]!r} is not a number (the original asserts here)")
        if token in seen:
            skipped["special" if token in SPECIAL_WORDS else "duplicate"] += 1
            continue
        try:
            value = int(count)
        except ValueError:  # isdigit() but not a decimal number, e.g. '²': the original fails here too
            raise XLMError(f"{path}:{lineno}: count {count[:40]!r} is not a decimal number") from None
        seen.add(token)
        words.append(token)
        counts.append(value)
    # the original's check_valid: counts never increase, except that it never looks at the last word
    for i in range(1, len(counts) - 1):
        if counts[i] > counts[i - 1]:
            raise XLMError(f"{path}: counts must not increase ({words[i]!r} has {counts[i]} after "
                           f"{counts[i - 1]}); the original asserts on this file")
    if skipped:
        detail = ", ".join(f"{n} {SKIP_REASONS[r]}" for r, n in skipped.items())
        warn(f"{path}: skipped {sum(skipped.values())} lines as the original does ({detail}); "
             f"later words take the original's ids ('preprocess.py check' lists them)", stacklevel=3)
    return words, counts


def _read_strict(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """Every line ``TOKEN COUNT`` with one space, no duplicates, sorted counts, or an error naming it."""
    words: list[str] = []
    counts: list[int] = []
    seen: dict[str, int] = {}
    for lineno, (where, line) in enumerate(strict_lines(path, "vocabulary"), 1):
        token, sep, count = line.rpartition(" ")
        if not sep or not token or " " in token:
            raise XLMError(f"{where}: expected 'TOKEN COUNT', got {line[:80]!r}")
        if not count.isdigit() or not count.isascii():
            raise XLMError(f"{where}: count {count[:40]!r} is not a non-negative integer")
        if token in SPECIAL_WORDS:
            raise XLMError(f"{where}: special token {token!r} must not appear in a vocabulary file")
        if token in seen:
            raise XLMError(f"{where}: duplicate token {token!r} (first on line {seen[token]})")
        if "\u2028" in token or len(token.split()) != 1:
            raise XLMError(f"{where}: token {token[:40]!r} holds whitespace or U+2028; "
                           "the original skips this line, shifting every later id")
        c = int(count)
        if counts and c > counts[-1]:
            raise XLMError(
                f"{where}: counts must not increase ({c} after {counts[-1]}); "
                "the file must be sorted by decreasing count as fastBPE getvocab writes it"
            )
        seen[token] = lineno
        words.append(token)
        counts.append(c)
    return words, counts
