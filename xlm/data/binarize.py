"""BPE'd text -> ``.bin``/``.idx`` (the original ``preprocess.py``, streaming and vectorized).

Rules, those of the original's ``Dictionary.index_data`` on any text:

- lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (the original reads with Python's universal
  newlines); a line is a sentence and its tokens are ``line.split()``: Python's whitespace, so a
  TAB, NBSP, U+2028... separates tokens, although fastBPE keeps them inside words. Text holding
  such characters gets one warning with their counts (``xlm.data.whitespace``);
- a vocabulary word holding such a character can never be matched. When the text holds that word
  as fastBPE counted it (``chien\\r`` from a CRLF file, say), binarizing would turn the very words
  the vocabulary was counted from into other tokens or ``<unk>``: this is refused, naming the text
  line and the vocabulary line, unless ``allow_split_vocab_words`` (``--allow-split-vocab-words``)
  asks for the original's result;
- a token missing from the vocabulary becomes ``<unk>`` (3) and is counted;
- a token spelled like a special word other than ``<unk>`` (``<s>``, ``</s>``, ``<pad>``,
  ``<special0>``...) is dropped and counted, the sentence is kept;
- an empty line is kept as a zero-length sentence (so parallel files stay aligned).

Speed comes from working on multi-megabyte chunks of bytes: one ``split`` on ``' '`` per chunk,
``map(dict.get)`` for the lookups, numpy for everything else, chunks spread over worker processes.
A chunk holding other whitespace is found among its unknown words (no vocabulary word in the
lookup holds any) and only then rewritten the slow, exact way. Memory is bounded by the chunk size
and the number of chunks in flight, not by the corpus.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from xlm.data import textio, whitespace
from xlm.data.dictionary import EOS_INDEX, N_SPECIAL, UNK_INDEX, Dictionary
from xlm.data.indexed import IndexedWriter, dtype_for_vocab
from xlm.errors import XLMError

log = logging.getLogger(__name__)

_NEWLINE, _EMPTY = -1, -2  # sentinel ids for the line break and for empty pieces
CHUNK_BYTES = 1 << 21  # ~350k words: per-chunk costs vanish, worker memory stays ~50 MB
VOCAB_NAME = "vocab"


@dataclass
class BinarizeStats:
    """What binarizing a file found; ``unk_words`` and ``dropped`` count occurrences per token.

    ``whitespace``: characters other than ``' '`` and ``'\\n'`` that split tokens (see the module
    docstring); ``split_vocab_words``: occurrences of vocabulary words that held some (only with
    ``allow_split_vocab_words``, else they are refused).
    """

    source: str = ""
    n_sentences: int = 0
    n_words: int = 0
    n_empty: int = 0
    unk_words: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    whitespace: whitespace.Census = field(default_factory=whitespace.Census)
    split_vocab_words: Counter = field(default_factory=Counter)

    @property
    def n_unk(self) -> int:
        return sum(self.unk_words.values())

    def summary(self, name: str | None = None) -> str:
        unk = self.n_unk
        pct = 100 * unk / max(self.n_words, 1)
        text = f"{name or self.source}: {self.n_sentences} sentences, {self.n_words} words, {unk} unknown ({pct:.2f}%)"
        if self.unk_words:
            text += " e.g. " + ", ".join(f"{w!r}x{c}" for w, c in self.unk_words.most_common(5))
        if self.n_empty:
            text += f"; {self.n_empty} empty lines kept as empty sentences"
        if self.dropped:
            text += f"; dropped {sum(self.dropped.values())} special tokens: " + ", ".join(
                f"{w!r}x{c}" for w, c in self.dropped.most_common(5)
            )
        return text


# -- vocabulary words that binarize can never match -----------------------------------------------------
def unmatchable_words(vocab: str | os.PathLike | Dictionary) -> dict[bytes, str]:
    """Vocabulary words holding whitespace that ``str.split`` cuts at -> where they are (``file:line``).

    A vocabulary file is read as fastBPE wrote it (the word is what precedes the last space of a
    ``\\n``-terminated line), whatever the dictionary reader keeps of such lines.
    """
    if isinstance(vocab, Dictionary):
        return {w.encode("utf-8"): "the dictionary" for w in vocab.id2word if whitespace.contains(w)}
    try:
        data = Path(vocab).read_bytes()
    except OSError:
        return {}  # the dictionary reader reports it
    if not whitespace.census(data.decode("utf-8", "replace").encode("utf-8")):
        return {}
    found: dict[bytes, str] = {}
    for lineno, line in enumerate(data.split(b"\n"), 1):
        word = line.rpartition(b" ")[0] if b" " in line else line
        if word and word not in found and whitespace.contains(word.decode("utf-8", "replace")):
            found[word] = f"{vocab}:{lineno}"
    return found


def _refusal(source: str, lineno: int, word: bytes, where: str) -> XLMError:
    text = word.decode("utf-8", "replace")
    crlf = " Text with CRLF line ends?" if text.endswith("\r") else ""
    return XLMError(
        f"{source}:{lineno}: {text!r} is a vocabulary word ({where}) holding {whitespace.classes_in(text)}, "
        "at which binarize, like the original preprocess.py, splits words: its occurrences here would not get "
        f"its id.{crlf} Give learn-bpe, apply-bpe and get-vocab text whose only whitespace is ' ' and '\\n' "
        "(what tokenize writes), or pass --allow-split-vocab-words for the original's result"
    )


# -- per chunk (runs in worker processes) -----------------------------------------------------------
@dataclass
class _Worker:
    lookup: dict[bytes, int]
    dtype: np.dtype
    source: str
    errors: textio.Errors
    unmatchable: dict[bytes, str]
    allow_split: bool


_worker: _Worker | None = None


def _init_worker(
    word2id: dict[str, int],
    source: str,
    errors: textio.Errors,
    unmatchable: dict[bytes, str] | None = None,
    allow_split: bool = False,
) -> None:
    global _worker
    # bytes keys: splitting and hashing bytes is faster than str, and UTF-8 is checked separately
    lookup = {w.encode("utf-8"): i for w, i in word2id.items()}
    if whitespace.census(b"\n".join(lookup)):  # words the original's split never yields: never looked up
        lookup = {w: i for w, i in lookup.items() if not whitespace.contains(w.decode("utf-8"))}
    lookup[b"\n"], lookup[b""] = _NEWLINE, _EMPTY
    _worker = _Worker(lookup, dtype_for_vocab(len(word2id)), source, errors, unmatchable or {}, allow_split)


def _lookup(data: bytes, lookup: dict[bytes, int]) -> tuple[list[bytes], np.ndarray]:
    words = data.replace(b"\n", b" \n ").split(b" ")
    return words, np.fromiter(map(lookup.get, words, repeat(UNK_INDEX)), dtype=np.int32, count=len(words))


def _split_as_python(data: bytes) -> bytes:
    """Universal newlines, then every other ``str.split`` separator becomes ``' '``."""
    text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    return whitespace.PYTHON_ONLY_RE.sub(" ", text).encode("utf-8")


def _vocab_words_split(chunk: textio.Chunk, data: bytes, w: _Worker) -> Counter:
    """Occurrences of fastBPE words of ``data`` that are unmatchable vocabulary words; refused unless allowed."""
    if not w.unmatchable:
        return Counter()
    words = Counter(data.replace(b"\n", b" ").split(b" "))
    found = Counter({word: words[word] for word in words.keys() & w.unmatchable.keys()})
    if found and not w.allow_split:
        for i, line in enumerate(data.split(b"\n")):
            hits = [word for word in line.split(b" ") if word in found]
            if hits:
                raise _refusal(w.source, chunk.first_line + i, hits[0], w.unmatchable[hits[0]])
    return Counter({word.decode("utf-8"): n for word, n in found.items()})


def encode_chunk(
    chunk: textio.Chunk,
) -> tuple[np.ndarray, np.ndarray, Counter, Counter, int, whitespace.Census | None, Counter]:
    """Whole lines -> (ids in ``.bin`` layout, sentence ends, unknown words, dropped specials, bytes read,
    census of the whitespace that ``' '`` splitting would have missed, vocabulary words split)."""
    assert _worker is not None, "call _init_worker first"
    w = _worker
    data = textio.checked_bytes(chunk, w.source, w.errors)
    words, ids = _lookup(data, w.lookup)
    unknown = np.flatnonzero(ids == UNK_INDEX).tolist()
    marks, split = None, Counter()
    if unknown and whitespace.census(b"\n".join([words[i] for i in unknown])):
        marks = whitespace.census(data, chunk.first_line)
        split = _vocab_words_split(chunk, data, w)
        words, ids = _lookup(_split_as_python(data), w.lookup)
        unknown = np.flatnonzero(ids == UNK_INDEX).tolist()
    unk = Counter(words[i].decode("utf-8") for i in unknown)
    keep = (ids >= N_SPECIAL) | (ids == UNK_INDEX) | (ids == _NEWLINE)
    dropped = Counter(words[i].decode("utf-8") for i in np.flatnonzero((ids >= 0) & ~keep).tolist())
    ids = ids[keep]
    newline = ids == _NEWLINE
    ids[newline] = EOS_INDEX
    return ids.astype(w.dtype), np.flatnonzero(newline) + 1, unk, dropped, len(chunk.data), marks, split


# -- files ---------------------------------------------------------------------------------------------
def load_vocab(vocab: str | os.PathLike | Dictionary) -> Dictionary:
    return vocab if isinstance(vocab, Dictionary) else Dictionary.read_vocab(vocab)


def check_vocab_slot(dico: Dictionary, folder: str | os.PathLike, source: str = "") -> bool:
    """True when ``folder/vocab`` is absent (to be written); error when it holds a different vocabulary.

    Data in one folder must share one vocabulary, because the trainer reads ``DATA/vocab`` for all
    of it. Vocabularies are compared by their words in id order (counts may differ).
    """
    target = Path(folder) / VOCAB_NAME
    if not target.exists():
        return True
    existing = Dictionary.read_vocab(target)
    if existing != dico:
        raise XLMError(
            f"{target}: holds a different vocabulary ({len(existing)} words, fingerprint "
            f"{existing.fingerprint()}) than {source or 'the one given'} ({len(dico)} words, fingerprint "
            f"{dico.fingerprint()}); write into another folder or remove it"
        )
    return False


def install_vocab(dico: Dictionary, folder: str | os.PathLike, source: str = "") -> Path:
    """Write ``folder/vocab`` (atomically) unless the same vocabulary is already there."""
    if check_vocab_slot(dico, folder, source):
        dico.write(Path(folder) / VOCAB_NAME)
    return Path(folder) / VOCAB_NAME


def binarize_file(
    vocab: str | os.PathLike | Dictionary,
    input: str | os.PathLike,
    output_prefix: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = False,
    errors: textio.Errors = "strict",
    copy_vocab: bool = True,
    meta: dict | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    allow_split_vocab_words: bool = False,
) -> BinarizeStats:
    """Binarize ``input`` (``-`` = stdin) to ``OUTPUT_PREFIX.bin/.idx`` and install the vocabulary beside it.

    Outputs appear only when complete: on any error, existing files at ``output_prefix`` are left
    as they were. Chunks of ``chunk_bytes`` are encoded on ``workers`` processes (``None``: one per
    core when the input spans several chunks). ``meta`` is merged into the index header (e.g. the
    name of the raw source file). Raises ``XLMError`` when the text holds a vocabulary word that
    the split would cut, unless ``allow_split_vocab_words`` (see the module docstring).
    """
    textio.check_errors(errors)
    dico = load_vocab(vocab)
    vocab_source = str(vocab) if not isinstance(vocab, Dictionary) else ""
    folder = Path(output_prefix).parent
    needs_vocab = copy_vocab and check_vocab_slot(dico, folder, vocab_source)
    source = textio.display_name(input)
    stats = BinarizeStats(source=source)
    textio.check_writable(f"{output_prefix}.bin")
    initargs = (dico.word2id, source, errors, unmatchable_words(vocab), allow_split_vocab_words)
    with IndexedWriter(output_prefix, len(dico), dico.fingerprint()) as writer:
        results = textio.map_chunks(
            input, encode_chunk, initializer=_init_worker, initargs=initargs, workers=workers, progress=progress,
            desc="binarize", chunk_bytes=chunk_bytes,
        )  # fmt: skip
        with closing(results):
            for ids, ends, unk, dropped, _, marks, split in results:
                writer.add_flat(ids, ends)
                stats.n_sentences += len(ends)
                stats.n_words += len(ids) - len(ends)
                stats.n_empty += int(np.count_nonzero(np.diff(ends, prepend=0) == 1))
                stats.unk_words.update(unk)
                stats.dropped.update(dropped)
                stats.whitespace.add(marks)
                stats.split_vocab_words.update(split)
        writer.meta = {
            "source": source,
            "n_unk": stats.n_unk,
            "n_empty": stats.n_empty,
            "n_dropped_special": sum(stats.dropped.values()),
            "top_unk": stats.unk_words.most_common(20),
            **(meta or {}),
        }
    if needs_vocab:
        install_vocab(dico, folder, vocab_source)
    _warn_whitespace(stats)
    return stats


def _warn_whitespace(stats: BinarizeStats) -> None:
    marks = stats.whitespace
    if not marks:
        return
    lone = marks.lone_cr
    text = (
        f"warning: binarize: {stats.source}: {marks.describe()} (first at line {marks.first_line}): split on, as "
        "the original preprocess.py splits (universal newlines, str.split), though fastBPE keeps them inside words"
    )
    if lone:
        text += f"; the {lone} lone CRs end lines, so there are {lone} more sentences than the file has lines"
    if stats.split_vocab_words:
        (word, _), = stats.split_vocab_words.most_common(1)
        text += (
            f"; {sum(stats.split_vocab_words.values())} occurrences of {len(stats.split_vocab_words)} vocabulary "
            f"words holding them (e.g. {word!r}) were split as asked"
        )
    log.warning(text + " (see 'Whitespace' in docs/preprocessing.md)")
