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


_worker: tuple[str, textio.Errors] | None = None


def _init_count(source: str, errors: textio.Errors) -> None:
    global _worker
    _worker = (source, errors)


def _count_chunk(chunk: textio.Chunk) -> tuple[Counter[bytes], whitespace.Census | None]:
    assert _worker is not None
    source, errors = _worker
    data = textio.checked_bytes(chunk, source, errors)
    counts = Counter(split_words(data))
    # Every such character is inside some word: looking at each distinct word once is cheaper
    # than looking at the whole chunk, which is only done (to count) when one is there.
    marks = whitespace.census(data, chunk.first_line) if whitespace.census(b"\n".join(counts)) else None
    return counts, marks


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
        marks = whitespace.Census()
        n_workers = textio.auto_workers(workers, textio.input_size(source), chunk_bytes, min_chunks=2, most=None)
        results = textio.map_chunks(
            source, _count_chunk, initializer=_init_count, initargs=(name, errors), workers=n_workers,
            progress=progress and textio.is_terminal(), desc=f"{step} in", chunk_bytes=chunk_bytes,
        )  # fmt: skip
        for counts, chunk_marks in results:
            marks.add(chunk_marks)
            if total:
                for word, count in counts.items():
                    total[word] += count
            else:
                total = counts
        warn_whitespace(step, name, marks)
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
