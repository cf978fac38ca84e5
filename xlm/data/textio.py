"""Streaming line-oriented text I/O: the one chunked, ordered, parallel loop every text step uses.

tokenize, spm-encode, learn-bpe, apply-bpe, get-vocab and binarize all read their input in large
byte chunks cut at line ends (so RAM does not grow with the corpus), keep track of line numbers
(so an error can name ``file:line``), optionally farm the chunks out to worker processes while
keeping their order (:func:`map_chunks`), and write their output atomically (:func:`transform_file`).
Lines are split on ``\\n`` only, as fastBPE does; a final line without ``\\n`` still counts.
Standard input (``-``) streams: nothing is spooled to disk, and output starts before input ends.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
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
    """Whole lines of a file: ``data`` ends with ``\\n``; its first line is number ``first_line`` (1-based).

    Only the last chunk of a file whose last line has no ``\\n`` can lack it, and only when read
    with ``complete_last_line=False`` (apply-bpe copies every byte through, a missing one too).
    """

    first_line: int
    data: bytes


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def check_errors(errors: str) -> None:
    """The UTF-8 policy must be one of :data:`ERROR_POLICIES` (an XLMError otherwise)."""
    if errors not in ERROR_POLICIES:
        raise XLMError(f"errors: expected one of {', '.join(ERROR_POLICIES)}, got {errors!r}")


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


def iter_chunks(f: IO[bytes], chunk_bytes: int = CHUNK_BYTES, complete_last_line: bool = True) -> Iterator[Chunk]:
    """Yield whole-line chunks of about ``chunk_bytes``; the last line gets a ``\\n`` if it lacks one
    (unless ``complete_last_line`` is false)."""
    line = 1
    pending: list[bytes] = []  # the start of a line that does not end in the blocks read so far
    while block := f.read(chunk_bytes):
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            pending.append(block)
            continue
        head = memoryview(block)[:cut]
        data = b"".join([*pending, head]) if pending else block if cut == len(block) else bytes(head)  # one copy
        pending = [block[cut:]] if cut < len(block) else []
        yield Chunk(line, data)
        line += data.count(b"\n")
    if rest := b"".join(pending):
        yield Chunk(line, rest + b"\n" if complete_last_line else rest)


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


def checked_bytes(chunk: Chunk, source: str, errors: Errors = "strict") -> bytes:
    """The chunk's bytes once they are known to be UTF-8: as they are, or with U+FFFD (``replace``)."""
    if errors == "strict":
        decode_chunk(chunk, source)
        return chunk.data
    return decode_chunk(chunk, source, errors).encode("utf-8")


def count_lines(path: str | os.PathLike) -> int:
    """Number of lines, counting a final line without ``\\n``."""
    n = 0
    with open_input(path) as f:
        for chunk in iter_chunks(f):
            n += chunk.data.count(b"\n")
    return n


def cores() -> int:
    """The number of cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """``None`` means one worker per core, at most 8 (beyond that the main process is the bottleneck)."""
    if workers is None:
        return min(8, cores())
    if workers < 1:
        raise XLMError(f"--workers must be >= 1, got {workers}")
    return workers


def auto_workers(
    workers: int | None, size: int | None, chunk_bytes: int, *, min_chunks: int = 3, most: int | None = 8
) -> int:
    """Explicit ``workers`` win; otherwise one process for inputs of fewer than ``min_chunks`` chunks,
    where starting workers costs more than it saves, and one per core (at most ``most``) above.

    Steps whose chunks take a second each (BPE) pass ``most=None``: the main process, which only
    moves bytes, keeps up with any number of workers.
    """
    if workers is not None:
        return resolve_workers(workers)
    if size is not None and size < min_chunks * chunk_bytes:
        return 1
    return cores() if most is None else min(most, cores())


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
    workers (``Pool.imap`` would read it all). With one worker everything runs in this process, and
    so it does inside a daemonic process (a ``multiprocessing.Pool`` worker may not start processes).
    """
    if workers <= 1 or multiprocessing.current_process().daemon:
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


def is_terminal() -> bool:
    """Whether stderr is a terminal: library calls asked for progress draw bars only there."""
    return sys.stderr.isatty()


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


@dataclass(frozen=True)
class Span:
    """Where a chunk lies in a regular file: workers read it themselves instead of receiving it."""

    first_line: int
    start: int
    size: int
    add_newline: bool  # the file's last line lacks a ``\\n`` and the chunk gets one

    def read(self, path: str | os.PathLike) -> Chunk:
        with open(path, "rb") as f:
            f.seek(self.start)
            data = f.read(self.size)
        return Chunk(self.first_line, data + b"\n" if self.add_newline else data)


def iter_spans(f: IO[bytes], chunk_bytes: int = CHUNK_BYTES, complete_last_line: bool = True) -> Iterator[Span]:
    """The chunks :func:`iter_chunks` would give, as places in the file (read once, to count lines)."""
    line, start, pos = 1, 0, 0
    while block := f.read(chunk_bytes):
        cut = block.rfind(b"\n") + 1
        if cut:  # the blocks read since `start` before this one hold no newline
            yield Span(line, start, pos + cut - start, False)
            line += block.count(b"\n", 0, cut)
            start = pos + cut
        pos += len(block)
    if start < pos:
        yield Span(line, start, pos - start, complete_last_line)


def _run_on_span(fn: Callable[[Chunk], Any], path: str, span: Span) -> Any:
    return fn(span.read(path))


def map_chunks(
    input: str | os.PathLike,
    fn: Callable[[Chunk], Any],
    *,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    workers: int | None = None,
    progress: bool = False,
    desc: str = "",
    chunk_bytes: int = CHUNK_BYTES,
    complete_last_line: bool = True,
    warm_up: bool = False,
) -> Iterator[Any]:
    """``fn(chunk)`` for every chunk of ``input`` (``-`` = stdin), in order, on worker processes.

    ``fn`` runs in processes set up by ``initializer(*initargs)`` (``workers``: see
    :func:`auto_workers`). Workers read their chunks of a regular file themselves (this process
    only finds the line ends); chunks of a stream are sent to them. With ``warm_up`` the first
    chunk is done in this process before any worker starts, so that state the initializer hands
    over (e.g. apply-bpe's table of segmented words) already holds what the first chunk taught
    it: forked workers then skip that work.
    """
    size = input_size(input)
    n_workers = auto_workers(workers, size, chunk_bytes)
    by_place = size is not None and n_workers > 1
    with (
        open_input(input) as fin,
        progress_bar(progress, size, f"{desc} {display_name(input)}".strip()) as bar,
    ):
        if by_place:
            spans = iter_spans(fin, chunk_bytes, complete_last_line)
            tasks: Iterator[tuple] = ((fn, str(input), span) for span in spans)
            task, task_size = _run_on_span, lambda item: item[2].size
        else:
            tasks = ((chunk,) for chunk in iter_chunks(fin, chunk_bytes, complete_last_line))
            task, task_size = fn, lambda item: len(item[0].data)
        if warm_up and n_workers > 1:
            first = next(tasks, None)
            if first is None:
                return
            if initializer is not None:
                initializer(*initargs)
            yield task(*first)
            bar.update(task_size(first))
        sizes: deque[int] = deque()

        def items() -> Iterator[tuple]:
            for item in tasks:
                sizes.append(task_size(item))
                yield item

        with contextlib.closing(
            ordered_map(task, items(), workers=n_workers, initializer=initializer, initargs=initargs)
        ) as results:
            for result in results:
                yield result
                bar.update(sizes.popleft())


def transform_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    encode: Callable[[Chunk], tuple[Any, ...]],
    *,
    initializer: Callable[..., Any],
    initargs: tuple,
    workers: int | None,
    progress: bool,
    desc: str,
    chunk_bytes: int = CHUNK_BYTES,
    collect: Callable[[Any], None] | None = None,
    complete_last_line: bool = True,
    warm_up: bool = False,
) -> int:
    """Rewrite ``input`` into ``output`` chunk by chunk, on worker processes, keeping the order.

    ``encode(chunk) -> (output bytes, input bytes consumed)`` runs in processes set up by
    ``initializer(*initargs)``; with ``collect``, ``encode`` returns a third item that is passed to
    ``collect`` in this process, in input order. ``complete_last_line`` and ``warm_up``: see
    :func:`iter_chunks` and :func:`map_chunks`. The output appears only when complete. Returns the
    lines written.
    """
    if str(output) != STDIO:
        check_writable(output)
    n_lines = 0
    results = map_chunks(
        input, encode, initializer=initializer, initargs=initargs, workers=workers, progress=progress,
        desc=desc, chunk_bytes=chunk_bytes, complete_last_line=complete_last_line, warm_up=warm_up,
    )  # fmt: skip
    with contextlib.closing(results):
        first = next(results, None)  # opens the input: a missing one fails before any output exists
        with open_output(output) as fout:
            for data, _, *extra in itertools.chain([first] if first is not None else [], results):
                fout.write(data)
                n_lines += data.count(b"\n")
                if collect is not None:
                    collect(*extra)
    return n_lines
