"""Strict readers for fastBPE's two side files: the merge codes and the applybpe vocabulary.

fastBPE aborts on an ``assert`` (or silently misreads) when these files are malformed; here every
problem is an ``XLMError`` naming ``file:line``, because a bad codes file otherwise surfaces much
later as a mysteriously different BPE segmentation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from xlm.errors import XLMError
from xlm.io import strict_lines

Code = tuple[str, str, int]

_COUNT = re.compile(r"-?[0-9]+\Z")


def _fields(where: str, line: str, n: int, form: str) -> list[str]:
    fields = line.split(" ")
    if len(fields) != n or not all(fields):
        raise XLMError(f"{where}: expected {form!r} separated by single spaces, got {line[:80]!r}")
    count = fields[-1]
    if not _COUNT.match(count):
        raise XLMError(f"{where}: count {count[:40]!r} is not an integer")
    return fields


def _first(where: str) -> str:
    """``line N`` for a ``file:N`` location (the file is already named), else the location itself."""
    location, _, line = where.rpartition(":")
    return f"line {line}" if location and line.isdigit() else where


def check_codes(codes: Iterable[tuple[str, str, int]], wheres: Iterable[str] | None = None) -> list[Code]:
    """Validate merges as fastBPE does (no duplicate pair, no duplicate concatenation), more strictly.

    ``wheres`` names each code for error messages (``file:line``); by default ``codes[i]``.
    """
    out: list[Code] = []
    pairs: dict[tuple[str, str], str] = {}
    concats: dict[str, str] = {}
    where_iter = iter(wheres) if wheres is not None else None
    for i, code in enumerate(codes):
        where = next(where_iter) if where_iter is not None else f"codes[{i}]"
        try:
            left, right, count = code
        except (TypeError, ValueError):
            raise XLMError(f"{where}: a merge is (left, right, count), got {code!r}") from None
        if not (isinstance(left, str) and isinstance(right, str) and left and right):
            raise XLMError(f"{where}: merge sides must be non-empty strings, got {code!r}")
        for bad in (" ", "\n"):
            if bad in left or bad in right:
                raise XLMError(f"{where}: merge sides cannot contain {bad!r}: {code!r}")
        first = pairs.get((left, right))
        if first is not None:
            raise XLMError(f"{where}: duplicate merge {left!r} {right!r} (first at {_first(first)})")
        concat = left + right
        first = concats.get(concat)
        if first is not None:
            raise XLMError(
                f"{where}: merge {left!r} {right!r} repeats the concatenation {concat!r} (first at {_first(first)})"
            )
        pairs[(left, right)] = where
        concats[concat] = where
        out.append((left, right, int(count)))
    return out


def read_codes(path: str | os.PathLike) -> list[Code]:
    """Read a fastBPE codes file: ``LEFT RIGHT COUNT`` per line; rank = line order (0-based)."""
    wheres: list[str] = []
    raw: list[Code] = []
    for where, line in strict_lines(path, "codes"):
        left, right, count = _fields(where, line, 3, "LEFT RIGHT COUNT")
        wheres.append(where)
        raw.append((left, right, int(count)))
    return check_codes(raw, wheres)


def read_bpe_vocab(path: str | os.PathLike) -> dict[str, int]:
    """Read the vocabulary that restricts ``applybpe``: ``TOKEN COUNT`` per line, tokens unique."""
    vocab: dict[str, int] = {}
    first: dict[str, str] = {}
    for where, line in strict_lines(path, "vocabulary"):
        token, count = _fields(where, line, 2, "TOKEN COUNT")
        if token in vocab:
            raise XLMError(f"{where}: duplicate token {token!r} (first at {_first(first[token])})")
        vocab[token] = int(count)
        first[token] = where
    return vocab
