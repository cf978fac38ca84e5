"""The data behind the exact Moses rules: perl's character classes and the nonbreaking prefixes.

Both come from ``moses_tables.json`` beside this file, written by ``scripts/make_moses_tables.py``
from mosesdecoder at commit 187a75cb5 (2019-03-01, the scripts XLM's ``tools/tokenize.sh`` ran)
and perl 5.36.0 (Unicode 14.0). Perl's classes differ from Python's: ``\\p{IsAlpha}`` is Unicode's
Alphabetic property (letters, letter numbers and many combining vowel signs), ``\\s`` has no
``\\x1c``-``\\x1f``, so they are read from the table rather than from ``unicodedata``.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

TABLES = Path(__file__).with_name("moses_tables.json")
MOSES_COMMIT = "187a75cb5"


@functools.cache
def _tables() -> dict:
    return json.loads(TABLES.read_text(encoding="utf-8"))


def _escape(cp: int) -> str:
    return f"\\U{cp:08x}"


def _ranges(parts: tuple[str, ...]) -> list[tuple[int, int]]:
    out = []
    for part in parts:
        if part in _tables()["classes"]:
            out += [(lo, hi) for lo, hi in _tables()["classes"][part]]
        else:
            out += [(ord(c), ord(c)) for c in part]
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(out):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _class(ranges: list[tuple[int, int]]) -> str:
    return "[" + "".join(_escape(lo) if lo == hi else f"{_escape(lo)}-{_escape(hi)}" for lo, hi in ranges) + "]"


@functools.cache
def char_set(*parts: str, negate: bool = False, exclude: str = "", astral: bool = True) -> str:
    """A regex for one character in (``negate``: not in) the union of ``parts``, less ``exclude``.

    A part is a perl class: space (``\\s``), alnum (``\\p{IsAlnum}``), alpha (``\\p{IsAlpha}``),
    number (``\\p{IsN}``), lower (``\\p{IsLower}``), ll (``\\p{Ll}``), other (``\\p{C}``); or a
    string of literal characters. The rules run on blocks of lines, so no set holds ``\\n`` (no
    perl rule ever saw a line's ``\\n``).

    Speed: Python's ``re`` looks a character up in one table when the class stays below U+10000,
    but tests a class reaching beyond it range by range. So ``astral=False`` gives the class for
    text without such characters (the common case: test with :data:`ASTRAL`), and the default
    adds the characters above U+FFFF as a second, guarded alternative.
    """
    holes, start = [], 0  # the complement of the parts (and \n)
    for lo, hi in _ranges((*parts, "\n")):
        if lo > start:
            holes.append((start, lo - 1))
        start = hi + 1
    if start <= 0x10FFFF:
        holes.append((start, 0x10FFFF))
    ranges = holes if negate else [r for lo, hi in _ranges(parts) for r in ((lo, min(hi, 9)), (max(lo, 11), hi))]
    for c in map(ord, exclude):
        ranges = [r for lo, hi in ranges for r in ((lo, min(hi, c - 1)), (max(lo, c + 1), hi))]
    ranges = [(lo, hi) for lo, hi in ranges if lo <= hi]
    bmp = _class([(lo, min(hi, 0xFFFF)) for lo, hi in ranges if lo <= 0xFFFF])
    above = _class([(max(lo, 0x10000), hi) for lo, hi in ranges if hi > 0xFFFF])
    if not astral or above == "[]":
        return bmp
    above = f"(?={ASTRAL.pattern}){above}"
    return above if bmp == "[]" else f"(?:{bmp}|{above})"


ASTRAL = re.compile("[\\U00010000-\\U0010ffff]")  # characters beyond the Basic Multilingual Plane


def prefix_languages() -> list[str]:
    """Languages with a ``nonbreaking_prefix.LANG`` file at the commit; others fall back to English."""
    return sorted(_tables()["nonbreaking_prefixes"])


@functools.cache
def nonbreaking_prefixes(lang: str) -> dict[str, int]:
    """``tokenizer.perl``'s table for ``lang``: prefix -> 1 (always keeps its period) or 2 (only
    before a digit). Languages without a file get English's, as ``load_prefixes`` does."""
    table = _tables()["nonbreaking_prefixes"]
    return table.get(lang, table["en"])


def versions() -> dict[str, str]:
    """Where the rules come from, for the settings a data folder records."""
    t = _tables()
    return {"moses": MOSES_COMMIT, "perl": t["perl"], "unicode": t["unicode"]}
