"""Counting fastBPE's words (``getvocab``, and the first half of ``learnbpe``).

Words are the non-empty runs of bytes between ``' '`` and ``'\\n'``, counted as bytes over all
inputs. Chunks of each input are counted on worker processes (:func:`xlm.data.textio.map_chunks`)
and the counts merged in input order, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence

from xlm.data import textio, whitespace
from xlm.errors import XLMError

log = logging.getLogger(__name__)

COUNT_CHUNK_BYTES = 4 << 20
_BYTES_SPLIT_CUTS = b"\t\r\x0b\x0c"  # bytes.split() cuts at these too, fastBPE does not


def split_words(data: bytes) -> list[bytes]:
    """fastBPE's words: the non-empty runs between ``' '`` and ``'\\n'`` (tabs and the like stay inside)."""
    if any(c in data for c in _BYTES_SPLIT_CUTS):
        return [w for w in data.replace(b"\n", b" ").split(b" ") if w]
    return data.split()  # same result when ' ' and '\n' are the only ASCII whitespace, and faster


_worker: tuple[str, textio.Errors, bool] | None = None


def _init_count(source: str, errors: textio.Errors, census: bool) -> None:
    """``census``: count such whitespace chunk by chunk (for inputs that cannot be read again)."""
    global _worker
    _worker = (source, errors, census)


def _count_chunk(chunk: textio.Chunk) -> tuple[Counter[bytes], whitespace.Census | None]:
    assert _worker is not None
    source, errors, census = _worker
    data = textio.checked_bytes(chunk, source, errors)
    return Counter(split_words(data)), whitespace.census(data, chunk.first_line) if census else None


def _file_census(source: str | os.PathLike, words: Counter[bytes], errors: textio.Errors) -> whitespace.Census:
    """The census of a file whose distinct words are ``words``: such characters sit inside words, so
    the words (a few percent of the text) tell whether there are any; only then is the file read
    again, to count them and find the first line."""
    marks = whitespace.Census()
    if whitespace.census(b"\n".join(words)):
        name = textio.display_name(source)
        with textio.open_input(source) as f:
            for chunk in textio.iter_chunks(f):
                marks.add(whitespace.census(textio.checked_bytes(chunk, name, errors), chunk.first_line))
    return marks


def warn_whitespace(step: str, source: str, marks: whitespace.Census) -> None:
    """One stderr line: which characters fastBPE kept inside words here that binarize will split on."""
    if marks:
        log.warning(
            f"warning: {step}: {source}: {marks.describe()} (first at line {marks.first_line}): fastBPE keeps "
            "these inside words, and so does this output, byte for byte; binarize and the original "
            "preprocess.py split on them (see 'Whitespace' in docs/preprocessing.md)"
        )


def count_words(
    inputs: Sequence[str | os.PathLike],
    *,
    progress: bool = True,
    workers: int | None = None,
    errors: textio.Errors = "strict",
    chunk_bytes: int = COUNT_CHUNK_BYTES,
    step: str = "count words",
) -> dict[bytes, int]:
    """Word counts over all inputs (fastBPE ``readText``), in order of first appearance.

    Words are the non-empty runs between ``' '`` and ``'\\n'``; ``'-'`` reads standard input.
    A last word with no delimiter after it is counted (fastBPE drops it when reading a file).
    Warns (``step`` names the command) when an input holds whitespace that binarize splits on.
    """
    textio.check_errors(errors)
    if not inputs:
        raise XLMError("no input files given")
    total: Counter[bytes] = Counter()
    for source in inputs:
        name = textio.display_name(source)
        size = textio.input_size(source)
        once = size is None  # stdin or a pipe cannot be read twice: each chunk gets its census at once
        n_workers = textio.auto_workers(workers, size, chunk_bytes, min_chunks=2, most=None)
        results = textio.map_chunks(
            source, _count_chunk, initializer=_init_count, initargs=(name, errors, once), workers=n_workers,
            progress=progress and textio.is_terminal(), desc=f"{step} in", chunk_bytes=chunk_bytes,
        )  # fmt: skip
        words: Counter[bytes] = Counter()
        marks = whitespace.Census()
        for counts, chunk_marks in results:
            marks.add(chunk_marks)
            if words:
                for word, count in counts.items():
                    words[word] += count
            else:
                words = counts
        if not once:
            marks = _file_census(source, words, errors)
        warn_whitespace(step, name, marks)
        if total:
            for word, count in words.items():
                total[word] += count
        else:
            total = words
    return dict(total)


def get_vocab(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    progress: bool = True,
    workers: int | None = None,
    errors: textio.Errors = "strict",
    chunk_bytes: int = COUNT_CHUNK_BYTES,
) -> None:
    """``fast getvocab``: ``WORD COUNT`` lines, count descending, ties by word bytes ascending."""
    counts = count_words(
        inputs, progress=progress, workers=workers, errors=errors, chunk_bytes=chunk_bytes, step="get-vocab"
    )
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    with textio.open_output(output) as sink:
        sink.write(b"".join(b"%s %d\n" % item for item in ordered))
