"""Streaming line-oriented text I/O shared by the preprocessing steps.

Every step reads its input in large byte chunks cut at line ends (so RAM does not grow with the
corpus), keeps track of line numbers (so an error can name ``file:line``), optionally farms the
chunks out to worker processes while keeping their order, and writes its output atomically.
Lines are split on ``\\n`` only, as fastBPE does; a final line without ``\\n`` still counts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from tqdm import tqdm

from xlm.errors import XLMError
from xlm.io import atomic_open

STDIO = "-"
CHUNK_BYTES = 1 << 22  # 4 MiB per chunk: large enough to amortize per-chunk costs, small enough for RAM
Errors = Literal["strict", "replace"]
ERROR_POLICIES = ("strict", "replace")


@dataclass(frozen=True)
class Chunk:
    """Whole lines of a file: ``data`` ends with ``\\n``; its first line is number ``first_line`` (1-based)."""

    first_line: int
    data: bytes


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


@contextlib.contextmanager
def open_input(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Open a file (or stdin for ``-``) for binary reading; a missing file is an XLMError."""
    if str(path) == STDIO:
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise XLMError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        yield f


@contextlib.contextmanager
def open_output(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Binary output to stdout for ``-``, else to a temporary file renamed over ``path`` on success."""
    if str(path) == STDIO:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    check_writable(path)
    with atomic_open(path, "wb") as f:
        yield f


def check_writable(path: str | os.PathLike) -> None:
    """Fail early, with a one-line message, when ``path``'s folder cannot hold a new file."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise XLMError(f"{path}: cannot create folder {parent}: {e.strerror}") from None
    if Path(path).is_dir():
        raise XLMError(f"{path}: is a folder, expected a file path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise XLMError(f"{path}: cannot write: folder {parent} is not writable")


def input_size(path: str | os.PathLike) -> int | None:
    """Size in bytes for a progress bar's total; None for stdin or pipes."""
    if str(path) == STDIO:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if os.path.isfile(path) else None


def iter_chunks(f: IO[bytes], chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Yield whole-line chunks of about ``chunk_bytes``; the last line gets a ``\\n`` if it lacks one."""
    line = 1
    pending: list[bytes] = []  # the start of a line that does not end in the blocks read so far
    while block := f.read(chunk_bytes):
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            pending.append(block)
            continue
        data = b"".join([*pending, block[:cut]])
        pending = [block[cut:]]
        yield Chunk(line, data)
        line += data.count(b"\n")
    if rest := b"".join(pending):
        yield Chunk(line, rest + b"\n")


def decode_chunk(chunk: Chunk, source: str, errors: Errors = "strict") -> str:
    """UTF-8 decode; with ``errors="strict"`` a bad byte is an XLMError naming ``source:line``."""
    try:
        return chunk.data.decode("utf-8", errors="strict" if errors == "strict" else "replace")
    except UnicodeDecodeError as e:
        line_start = chunk.data.rfind(b"\n", 0, e.start) + 1
        lineno = chunk.first_line + chunk.data.count(b"\n", 0, e.start)
        raise XLMError(
            f"{source}:{lineno}: invalid UTF-8 (byte 0x{chunk.data[e.start]:02x} at byte "
            f"{e.start - line_start + 1} of the line); fix the file or use --errors replace"
        ) from None


def count_lines(path: str | os.PathLike) -> int:
    """Number of lines, counting a final line without ``\\n``."""
    n = 0
    with open_input(path) as f:
        for chunk in iter_chunks(f):
            n += chunk.data.count(b"\n")
    return n


def resolve_workers(workers: int | None) -> int:
    """``None`` means one worker per core, at most 8 (beyond that the main process is the bottleneck)."""
    if workers is None:
        return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    if workers < 1:
        raise XLMError(f"--workers must be >= 1, got {workers}")
    return workers


def auto_workers(workers: int | None, size: int | None, chunk_bytes: int) -> int:
    """Explicit ``workers`` win; otherwise one process for inputs of fewer than 3 chunks, where
    starting workers costs more than it saves, and one per core (:func:`resolve_workers`) above."""
    if workers is not None:
        return resolve_workers(workers)
    if size is not None and size < 3 * chunk_bytes:
        return 1
    return resolve_workers(None)


def _init_worker(initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    # Ctrl-C goes to the whole process group; the main process alone handles it, so that workers
    # do not each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def make_pool(workers: int, initializer: Callable[..., Any] | None = None, initargs: tuple = ()) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(initializer, initargs))


def ordered_map(
    fn: Callable[..., Any],
    items: Iterable[tuple],
    *,
    workers: int = 1,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
) -> Iterator[Any]:
    """``fn(*item)`` for each item, in order, on ``workers`` processes with a bounded backlog.

    At most ``2 * workers`` items are in flight, so reading a huge input never runs ahead of the
    workers (``Pool.imap`` would read it all). With one worker everything runs in this process.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            yield fn(*item)
        return
    pool = make_pool(workers, initializer, initargs)
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, *item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def progress_bar(enabled: bool, total: int | None, desc: str, unit: str = "B") -> tqdm:
    """A tqdm bar on stderr (disabled bars cost nothing); byte units scale to KB/MB."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",
        unit_divisor=1024 if unit == "B" else 1000,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )


def transform_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    encode: Callable[[Chunk], tuple[bytes, int]],
    *,
    initializer: Callable[..., Any],
    initargs: tuple,
    workers: int | None,
    progress: bool,
    desc: str,
    chunk_bytes: int = CHUNK_BYTES,
) -> int:
    """Rewrite ``input`` into ``output`` chunk by chunk, on worker processes, keeping the order.

    ``encode(chunk) -> (output bytes, input bytes consumed)`` runs in processes set up by
    ``initializer(*initargs)``. The output appears only when complete. Returns the lines written.
    """
    size = input_size(input)
    n_workers = auto_workers(workers, size, chunk_bytes)
    n_lines = 0
    with (
        open_input(input) as fin,
        open_output(output) as fout,
        progress_bar(progress, size, f"{desc} {display_name(input)}") as bar,
    ):
        chunks = ((c,) for c in iter_chunks(fin, chunk_bytes))
        with contextlib.closing(
            ordered_map(encode, chunks, workers=n_workers, initializer=initializer, initargs=initargs)
        ) as results:
            for data, n_bytes in results:
                fout.write(data)
                n_lines += data.count(b"\n")
                bar.update(n_bytes)
    return n_lines
