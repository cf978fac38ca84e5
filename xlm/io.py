"""Atomic file output: a failure never leaves a half-written file where a good one was."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xlm.errors import XLMError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic on POSIX.
    Data is flushed and fsynced before the rename: after a crash either the old or the new file
    is there, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, default_file_mode())  # mkstemp makes 0600; outputs should be shareable like any file
    if "b" in mode:
        encoding = None
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def default_file_mode() -> int:
    """``0666`` minus the process umask: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def strict_lines(path: str | os.PathLike, what: str) -> Iterator[tuple[str, str]]:
    """Yield ``(where, line)`` for each line of a UTF-8 text file, ``where`` being ``file:line``.

    Lines split on ``\\n`` only (a token may hold other separators); invalid UTF-8 and CRLF endings
    are errors naming the line. ``what`` names the kind of file in messages ("codes", "vocabulary").
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise XLMError(f"{path}: cannot read {what}: {e.strerror}") from None
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for lineno, raw in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise XLMError(f"{where}: invalid UTF-8 at byte {e.start} of the line") from None
        if line.endswith("\r"):
            raise XLMError(f"{where}: CRLF line ending; {what} files use '\\n' only")
        yield where, line
