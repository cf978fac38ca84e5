"""Applying fastBPE codes: per word (``BPE``) and to whole files, byte for byte like ``fast applybpe``.

The per-word algorithm is fastBPE's: repeatedly take the adjacent pair with the lowest rank and
merge all its non-overlapping occurrences left to right. Here the ranks of adjacent pairs are kept
in a list that is patched around each merge instead of recomputed, which makes a merge cost a
couple of C-level list scans. Files give what ``fast applybpe`` gives: the input is rewritten
with only its words replaced, so every space and newline survives as it was; each distinct word
is segmented once per process, the first time it is met, and then looked up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat

from xlm.data import textio, whitespace
from xlm.data.bpe.codes import Code, check_codes, read_bpe_vocab, read_codes
from xlm.data.bpe.fast import make_merger
from xlm.data.bpe.vocab import warn_whitespace

END = "</w>"
DELIM = "@@"
_NEVER = sys.maxsize
_CACHE_LIMIT = 1 << 20
CHUNK_BYTES = 4 << 20


def word_units(word: str) -> list[str]:
    """fastBPE's initial units of a word: its characters, ``</w>`` appended to the last one.

    fastBPE scans a word as a C string, so a NUL ends the scan: everything from the last character
    before the NUL to the end of the word stays one unit (the whole word if it starts with NUL).
    """
    nul = word.find("\0")
    if nul < 0:
        units = list(word)
    elif nul == 0:
        return [word + END]
    else:
        units = list(word[:nul])
        units[-1] += word[nul:]
    units[-1] += END
    return units


def _strip_end(unit: str) -> str:
    """The final unit without ``</w>`` (fastBPE's ``substr(0, size - 4)``, whole string if shorter)."""
    return unit[:-4] if len(unit) >= 4 else unit


class _Memo(dict):
    """A dict that fills itself: ``memo[key]`` computes ``make(key)`` once."""

    def __init__(self, make: Callable[[str], list[str]]):
        super().__init__()
        self.make = make

    def __missing__(self, key: str) -> list[str]:
        value = self[key] = self.make(key)
        return value


class BPE:
    """fastBPE codes ready to apply, optionally restricted to a vocabulary (``applybpe ... vocab``).

    With a vocabulary, a unit whose piece (``unit@@``, or the final unit without ``</w>``) is not
    in it is split back along its merges, recursively, until the pieces are in the vocabulary or
    are single characters. An empty vocabulary means no restriction, as in fastBPE.

    ``accelerate``: segment words with ``tokenizers`` when it is installed and provably gives the
    same units (``xlm.data.bpe.fast``); ``False`` forces the pure-Python reference path.
    """

    def __init__(
        self,
        codes: str | os.PathLike | Sequence[tuple[str, str, int]],
        vocab: str | os.PathLike | dict[str, int] | None = None,
        *,
        accelerate: bool = True,
    ):
        self.codes: list[Code] = read_codes(codes) if isinstance(codes, (str, os.PathLike)) else check_codes(codes)
        if vocab is None:
            self.vocab: dict[str, int] = {}
        elif isinstance(vocab, (str, os.PathLike)):
            self.vocab = read_bpe_vocab(vocab)
        else:
            self.vocab = dict(vocab)
        self._ranks = {(left, right): rank for rank, (left, right, _) in enumerate(self.codes)}
        self._splits = {left + right: (left, right) for left, right, _ in self.codes}
        self._inner_ok = {token[:-2] for token in self.vocab if token.endswith(DELIM)}  # unit@@ in vocab
        self._inner_pieces = _Memo(lambda unit: self._split_back(unit, False))  # unit -> its pieces
        self._final_pieces = _Memo(lambda unit: self._split_back(unit, True))
        self.accelerate = accelerate
        self._fast: Callable[[str], list[str] | None] | None = None
        self._fast_checked = False
        self._cache: dict[str, str] = {}
        self._table = _Table(self)  # word bytes -> file output, kept across apply_bpe_file calls

    def __getstate__(self) -> dict:
        return {"codes": self.codes, "vocab": self.vocab, "accelerate": self.accelerate}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["codes"], state["vocab"], accelerate=state["accelerate"])

    def units(self, word: str) -> list[str]:
        """The final units of ``word``, the last one still carrying ``</w>``."""
        if not word:
            return []
        fast = self._accelerator()
        units = fast(word) if fast is not None else None
        if units is None:
            units = self._merge(word_units(word))
        if self.vocab:
            units = self._limit(units)
        return units

    def _accelerator(self) -> Callable[[str], list[str] | None] | None:
        if not self._fast_checked:
            self._fast = make_merger(self.codes) if self.accelerate else None
            self._fast_checked = True
        return self._fast

    @property
    def accelerated(self) -> bool:
        """Whether words go through ``tokenizers`` (see ``xlm.data.bpe.fast``) rather than pure Python."""
        return self._accelerator() is not None

    def _merge(self, units: list[str]) -> list[str]:
        rank = self._ranks.get
        ranks = list(map(rank, zip(units, units[1:]), repeat(_NEVER)))
        while ranks:
            best = min(ranks)
            if best == _NEVER:
                break
            i = ranks.index(best)
            merged = units[i] + units[i + 1]
            while True:  # every occurrence of this pair, left to right, none overlapping
                units[i] = merged
                del units[i + 1], ranks[i]
                if i:
                    ranks[i - 1] = rank((units[i - 1], merged), _NEVER)
                if i < len(ranks):
                    ranks[i] = rank((merged, units[i + 1]), _NEVER)
                # The patched neighbours can never hold `best` again (they contain `merged`), so
                # the next occurrence, if any, lies to the right of the merged unit.
                if best not in ranks:
                    break
                i = ranks.index(best, i + 1)
        return units

    def _limit(self, units: list[str]) -> list[str]:
        pieces = list(chain.from_iterable(map(self._inner_pieces.__getitem__, units[:-1])))
        pieces += self._final_pieces[units[-1]]
        return pieces

    def _split_back(self, unit: str, final: bool) -> list[str]:
        """fastBPE's ``decompose``: undo merges, depth first, until the pieces are in the vocabulary."""
        vocab, inner_ok, splits = self.vocab, self._inner_ok, self._splits
        out: list[str] = []
        stack = [(unit, final)]
        while stack:
            piece, final = stack.pop()
            if (_strip_end(piece) in vocab) if final else (piece in inner_ok):
                out.append(piece)
                continue
            pair = splits.get(piece)
            if pair is None:  # a single character: kept even if out of vocabulary
                out.append(piece)
                continue
            stack.append((pair[1], final))
            stack.append((pair[0], False))
        return out

    def apply_word(self, word: str) -> list[str]:
        """Pieces as fastBPE writes them: ``Roasted`` -> ``['Ro@@', 'asted']``; ``''`` -> ``[]``."""
        units = self.units(word)
        if not units:
            return []
        return [unit + DELIM for unit in units[:-1]] + [_strip_end(units[-1])]

    def encode_word(self, word: str) -> str:
        """One word as fastBPE writes it in a file: ``'Ro@@ asted'`` (cached)."""
        out = self._cache.get(word)
        if out is None:
            out = "@@ ".join(self.units(word))[:-4] if word else ""
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = out
        return out

    def apply(self, lines: Iterable[str]) -> list[str]:
        """Like fastBPE's Python ``apply``: words split on ``' '``, runs of spaces collapse."""
        encode = self.encode_word
        return [" ".join([encode(w) for w in line.split(" ") if w]) for line in lines]


# -- files ---------------------------------------------------------------------------------------


class _Table(dict):
    """Word bytes -> output bytes; a missing word is segmented on first lookup and remembered.

    Lookups of known words stay C-level dict hits inside ``map``; ``learned`` collects the words a
    worker process added, so the parent can keep them for the next file.
    """

    def __init__(self, bpe: BPE):
        super().__init__({b"": b"", b"\n": b"\n"})
        self.bpe = bpe
        self.learned: dict[bytes, bytes] = {}
        self.marked = False  # whether a word holding whitespace that binarize splits on was seen

    def __missing__(self, word: bytes) -> bytes:
        text = word.decode("utf-8")
        out = "@@ ".join(self.bpe.units(text))[:-4].encode("utf-8")
        self[word] = self.learned[word] = out
        if not self.marked and whitespace.contains(text):
            self.marked = True
        return out


_worker: tuple[_Table, str, textio.Errors] | None = None  # per process, set by _init_apply


def _init_apply(table: _Table, source: str, errors: textio.Errors) -> None:
    global _worker
    _worker = (table, source, errors)


def _apply_chunk(chunk: textio.Chunk) -> tuple[bytes, int, tuple[dict[bytes, bytes], whitespace.Census | None]]:
    # Newlines become ' \n ' tokens so that one split on b' ' keeps every byte between the words;
    # BPE output never holds a newline, so the final replace only undoes that padding.
    assert _worker is not None
    table, source, errors = _worker
    table.learned = {}
    data = textio.checked_bytes(chunk, source, errors)
    parts = data.replace(b"\n", b" \n ").split(b" ")
    out = b" ".join(map(table.__getitem__, parts)).replace(b" \n ", b"\n")
    # Such characters are inside words, and every word went through the table once: only once
    # one was seen does each chunk get counted.
    marks = whitespace.census(data, chunk.first_line) if table.marked else None
    return out, len(chunk.data), (table.learned, marks)


def apply_bpe_file(
    codes: str | os.PathLike | Sequence[tuple[str, str, int]] | BPE,
    input: str | os.PathLike,
    output: str | os.PathLike,
    vocab: str | os.PathLike | dict[str, int] | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    errors: textio.Errors = "strict",
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """``fast applybpe output input codes [vocab]``, byte for byte; ``'-'`` means stdin / stdout.

    Words are the runs between ``' '`` and ``'\\n'``; every delimiter is copied through. The one
    deliberate difference: fastBPE drops a last word that no space or newline follows; it is kept.
    Invalid UTF-8 is an ``XLMError`` naming file and line, or U+FFFD with ``errors='replace'``.
    Chunks go to ``workers`` processes (default: one per core for inputs of 3 chunks or more); pass a
    ``BPE`` to reuse its segmentations across files. Warns when the input holds whitespace that
    binarize splits on (see :mod:`xlm.data.whitespace`).
    """
    textio.check_errors(errors)
    if isinstance(codes, BPE) and vocab is not None:
        raise ValueError("pass the vocabulary to BPE(codes, vocab), not with a BPE object")
    bpe = codes if isinstance(codes, BPE) else BPE(codes, vocab)
    table = bpe._table
    if len(table) > _CACHE_LIMIT:
        table = bpe._table = _Table(bpe)
    source = textio.display_name(input)
    marks = whitespace.Census()

    def collect(result: tuple[dict[bytes, bytes], whitespace.Census | None]) -> None:
        learned, chunk_marks = result
        table.update(learned)
        if chunk_marks:
            table.marked = True  # the words learned from workers include such a word
            marks.add(chunk_marks)

    # warm_up: the first chunk is done here, before any worker starts: workers then begin with its
    # words (the frequent ones) already segmented instead of each segmenting them again.
    n_workers = textio.auto_workers(workers, textio.input_size(input), chunk_bytes, most=None)
    textio.transform_file(
        input, output, _apply_chunk, initializer=_init_apply, initargs=(table, source, errors), workers=n_workers,
        progress=progress and textio.is_terminal(), desc="apply-bpe", chunk_bytes=chunk_bytes, collect=collect,
        complete_last_line=False, warm_up=True,
    )  # fmt: skip
    warn_whitespace("apply-bpe", source, marks)
