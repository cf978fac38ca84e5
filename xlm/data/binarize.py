"""BPE'd text -> ``.bin``/``.idx`` (the original ``preprocess.py``, streaming and vectorized).

Rules, matching the original except where noted:

- a line is a sentence; tokens are split on ``' '`` only, as fastBPE does (tabs and non-breaking
  spaces stay inside tokens, as in fastBPE's vocabularies), and empty pieces from repeated spaces
  are dropped. The original split on any whitespace, which disagrees with fastBPE's vocabulary.
  ``\\r\\n`` line endings are read as ``\\n``;
- a token missing from the vocabulary becomes ``<unk>`` (3) and is counted;
- a token spelled like a special word other than ``<unk>`` (``<s>``, ``</s>``, ``<pad>``,
  ``<special0>``...) is dropped and counted, the sentence is kept;
- an empty line is kept as a zero-length sentence (so parallel files stay aligned).

Speed comes from working on multi-megabyte chunks of bytes: one ``split`` per chunk,
``map(dict.get)`` for the lookups, numpy for everything else, chunks spread over worker processes.
Memory is bounded by the chunk size and the number of chunks in flight, not by the corpus.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from xlm.data import textio
from xlm.data.dictionary import EOS_INDEX, N_SPECIAL, UNK_INDEX, Dictionary
from xlm.data.indexed import IndexedWriter, dtype_for_vocab
from xlm.errors import XLMError

_NEWLINE, _EMPTY = -1, -2  # sentinel ids for the line break and for empty pieces
CHUNK_BYTES = 1 << 21  # ~350k words: per-chunk costs vanish, worker memory stays ~50 MB
VOCAB_NAME = "vocab"


@dataclass
class BinarizeStats:
    """What binarizing a file found; ``unk_words`` and ``dropped`` count occurrences per token."""

    source: str = ""
    n_sentences: int = 0
    n_words: int = 0
    n_empty: int = 0
    unk_words: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)

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


# -- per chunk (runs in worker processes) -----------------------------------------------------------
_worker: tuple[dict[bytes, int], np.dtype, str, textio.Errors] | None = None


def _init_worker(word2id: dict[str, int], source: str, errors: textio.Errors) -> None:
    global _worker
    # bytes keys: splitting and hashing bytes is faster than str, and UTF-8 is checked separately
    lookup = {w.encode("utf-8"): i for w, i in word2id.items()}
    lookup[b"\n"], lookup[b""] = _NEWLINE, _EMPTY
    _worker = (lookup, dtype_for_vocab(len(word2id)), source, errors)


def encode_chunk(chunk: textio.Chunk) -> tuple[np.ndarray, np.ndarray, Counter, Counter, int]:
    """Whole lines -> (ids in ``.bin`` layout, sentence ends, unknown words, dropped specials, bytes read)."""
    assert _worker is not None, "call _init_worker first"
    lookup, dtype, source, errors = _worker
    if errors == "strict":
        textio.decode_chunk(chunk, source)  # only validates the UTF-8: the bytes are looked up as they are
        data = chunk.data
    else:
        data = textio.decode_chunk(chunk, source, errors).encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    words = data.replace(b"\n", b" \n ").split(b" ")
    ids = np.fromiter(map(lookup.get, words, repeat(UNK_INDEX)), dtype=np.int32, count=len(words))
    unk = Counter(words[i].decode("utf-8") for i in np.flatnonzero(ids == UNK_INDEX).tolist())
    keep = (ids >= N_SPECIAL) | (ids == UNK_INDEX) | (ids == _NEWLINE)
    dropped = Counter(words[i].decode("utf-8") for i in np.flatnonzero((ids >= 0) & ~keep).tolist())
    ids = ids[keep]
    newline = ids == _NEWLINE
    ids[newline] = EOS_INDEX
    return ids.astype(dtype), np.flatnonzero(newline) + 1, unk, dropped, len(chunk.data)


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
) -> BinarizeStats:
    """Binarize ``input`` (``-`` = stdin) to ``OUTPUT_PREFIX.bin/.idx`` and install the vocabulary beside it.

    Outputs appear only when complete: on any error, existing files at ``output_prefix`` are left
    as they were. Chunks of ``chunk_bytes`` are encoded on ``workers`` processes (``None``: one per
    core when the input spans several chunks). ``meta`` is merged into the index header (e.g. the
    name of the raw source file).
    """
    dico = load_vocab(vocab)
    vocab_source = str(vocab) if not isinstance(vocab, Dictionary) else ""
    folder = Path(output_prefix).parent
    needs_vocab = copy_vocab and check_vocab_slot(dico, folder, vocab_source)
    source = textio.display_name(input)
    size = textio.input_size(input)
    n_workers = textio.auto_workers(workers, size, chunk_bytes)
    stats = BinarizeStats(source=source)
    textio.check_writable(f"{output_prefix}.bin")
    with (
        textio.open_input(input) as fin,
        IndexedWriter(output_prefix, len(dico), dico.fingerprint()) as writer,
        textio.progress_bar(progress, size, f"binarize {source}") as bar,
    ):
        chunks = ((c,) for c in textio.iter_chunks(fin, chunk_bytes))
        with closing(
            textio.ordered_map(
                encode_chunk,
                chunks,
                workers=n_workers,
                initializer=_init_worker,
                initargs=(dico.word2id, source, errors),
            )
        ) as results:
            for ids, ends, unk, dropped, n_bytes in results:
                writer.add_flat(ids, ends)
                stats.n_sentences += len(ends)
                stats.n_words += len(ids) - len(ends)
                stats.n_empty += int(np.count_nonzero(np.diff(ends, prepend=0) == 1))
                stats.unk_words.update(unk)
                stats.dropped.update(dropped)
                bar.update(n_bytes)
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
    return stats
