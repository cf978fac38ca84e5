"""Plumbing shared by apply-bpe, learn-bpe and get-vocab: chunked input, UTF-8 checks, processes.

Text is handled as bytes, as fastBPE does, and cut into chunks that end on a newline so that no
word or UTF-8 sequence straddles two chunks. Chunks are independent tasks: with ``workers > 1``
they run in a process pool (worker state is handed over once, by the pool initializer), which is
how two cores beat fastBPE's C++ on apply. Standard input is spooled to a temporary file first so
that worker processes can read their chunks of any input themselves.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from tqdm import tqdm

from xlm.errors import XLMError
from xlm.io import atomic_open

CHUNK_BYTES = 4 << 20
ERRORS = ("strict", "replace")

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def opened_input(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(real_path, display_name)``; ``'-'`` spools standard input to a temporary file."""
    if str(path) != "-":
        if not Path(path).is_file():
            raise XLMError(f"{path}: no such file")
        yield str(path), str(path)
        return
    with tempfile.NamedTemporaryFile(prefix="xlm-stdin-", delete=False) as tmp:
        shutil.copyfileobj(sys.stdin.buffer, tmp, 1 << 20)
    try:
        yield tmp.name, "<stdin>"
    finally:
        os.unlink(tmp.name)


@contextlib.contextmanager
def opened_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary sink: standard output for ``'-'``, else a temp file renamed over ``path`` on success."""
    if str(path) == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with atomic_open(path, "wb") as f:
        yield f


def chunk_spans(path: str, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` covering the file, each ending just after a newline (or at EOF)."""
    size = os.path.getsize(path)
    spans: list[tuple[int, int]] = []
    start = 0
    with open(path, "rb") as f:
        while start < size:
            end = min(start + chunk_bytes, size)
            while end < size:
                f.seek(end)
                block = f.read(1 << 16)
                nl = block.find(b"\n")
                if nl >= 0:
                    end += nl + 1
                    break
                end += len(block)
            spans.append((start, end))
            start = end
    return spans


def line_number(path: str, offset: int) -> int:
    """1-based number of the line holding byte ``offset`` (only computed when reporting an error)."""
    count = 0
    with open(path, "rb") as f:
        remaining = offset
        while remaining > 0:
            block = f.read(min(remaining, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count + 1


def check_errors_policy(errors: str) -> None:
    if errors not in ERRORS:
        raise XLMError(f"errors: expected one of {', '.join(ERRORS)}, got {errors!r}")


def read_chunk(path: str, name: str, span: tuple[int, int], errors: str) -> bytes:
    """Read one chunk and enforce the UTF-8 policy: ``strict`` raises, ``replace`` writes U+FFFD."""
    start, end = span
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors == "replace":
            return data.decode("utf-8", "replace").encode("utf-8")
        line = line_number(path, start) + data.count(b"\n", 0, e.start)
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise XLMError(
            f"{name}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x} at byte column {column}); "
            "use errors='replace' to substitute U+FFFD"
        ) from None
    return data


_OTHER_ASCII_SPACE = (b"\t", b"\r", b"\x0b", b"\x0c")


def split_words(data: bytes) -> list[bytes]:
    """fastBPE's words: the non-empty runs between ``' '`` and ``'\\n'`` (tabs and the like stay inside words)."""
    if any(c in data for c in _OTHER_ASCII_SPACE):
        words = data.replace(b"\n", b" ").split(b" ")
        return [w for w in words if w]
    return data.split()  # same result when ' ' and '\n' are the only ASCII whitespace, and faster


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_STATE: tuple[Callable[..., Any], Any] | None = None


def _init_worker(func: Callable[..., Any], state: Any) -> None:
    global _STATE
    _STATE = (func, state)


def _run(item: Any) -> Any:
    assert _STATE is not None
    func, state = _STATE
    return func(state, item)


def imap_tasks(func: Callable[[Any, T], R], state: Any, items: Sequence[T], workers: int) -> Iterator[R]:
    """``func(state, item)`` for each item, results in order; a process pool when it can help.

    ``func`` must be a module-level function; ``state`` reaches each worker once (inherited on
    fork, pickled once otherwise), never once per task.
    """
    workers = min(workers, len(items))
    if workers <= 1 or multiprocessing.current_process().daemon:  # a pool worker cannot start its own pool
        for item in items:
            yield func(state, item)
        return
    with multiprocessing.get_context().Pool(workers, initializer=_init_worker, initargs=(func, state)) as pool:
        yield from pool.imap(_run, items)


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "B") -> tqdm:
    """A tqdm bar on stderr, shown only when asked for and stderr is a terminal."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        unit_divisor=1024 if unit == "B" else 1000,
        disable=not (enabled and sys.stderr.isatty()),
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
