"""Whitespace on which fastBPE and the original ``preprocess.py`` disagree: found, counted, reported.

fastBPE (``learnbpe``, ``applybpe``, ``getvocab``) cuts words at ``' '`` and ``'\\n'`` only; every
other byte, CR and TAB included, is part of a word. The original ``preprocess.py`` reads lines with
Python's universal newlines (``\\n``, ``\\r\\n`` and a lone ``\\r`` end a line) and splits them with
``str.split()``, which also splits on the 27 other characters of :data:`PYTHON_ONLY`. On text whose
only whitespace is ``' '`` and ``'\\n'`` (what ``tokenize`` writes) the two agree; on other text
each step keeps its reference's behaviour and warns with the counts from :func:`census`.

:func:`census` costs about 1.5 ms per MiB: one ``bytes.translate`` keeps a symbol for each byte
that can belong to these characters (and one for every other UTF-8 lead byte, so that symbols of
different characters never run together), a few substring tests on that much shorter string find
none in clean text, and otherwise a regex counts them exactly. ``tests/test_whitespace.py`` checks
it against ``str.isspace`` on every code point. The steps mostly avoid even that: such a character
always sits inside a word, so get-vocab and learn-bpe look at the distinct words of a file (and
read it again only when one holds some), apply-bpe at the words it segments for the first time,
binarize at the words it does not find in the vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

# Every character for which str.isspace() is true, minus ' ' and '\n' (the test checks the list).
PYTHON_ONLY = (
    "\t\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
PYTHON_ONLY_RE = re.compile(f"[{re.escape(PYTHON_ONLY)}]")

CR, TAB, VT_FF, FS_US = "CR", "TAB", "VT/FF", "FS/GS/RS/US"
NEL, NBSP, LS_PS = "NEL U+0085", "NBSP U+00A0", "LS/PS U+2028/U+2029"
OTHER = "other spaces (U+1680, U+2000-U+200A, U+202F, U+205F, U+3000)"
CLASS_ORDER = (CR, TAB, VT_FF, FS_US, NEL, NBSP, LS_PS, OTHER)
CLASS_OF = {
    "\r": CR, "\t": TAB, "\x0b": VT_FF, "\x0c": VT_FF, **dict.fromkeys("\x1c\x1d\x1e\x1f", FS_US),
    "\x85": NEL, "\xa0": NBSP, "\u2028": LS_PS, "\u2029": LS_PS,
}  # fmt: skip
CLASS_OF.update({c: OTHER for c in PYTHON_ONLY if c not in CLASS_OF})


def _signature_table() -> tuple[bytes, bytes]:
    """``bytes.translate`` arguments: which byte becomes which symbol, which bytes are dropped."""
    symbols = {ord("\t"): b"t", ord("\r"): b"r", 0x0B: b"v", 0x0C: b"v"}
    symbols.update(dict.fromkeys(range(0x1C, 0x20), b"s"))
    # continuation bytes that occur in the UTF-8 forms of PYTHON_ONLY's other characters
    symbols.update({0x80: b"0", 0x81: b"2", 0x85: b"8", 0xA0: b"5", 0x9A: b"9", 0x9F: b"7", 0xA8: b"P", 0xA9: b"P"})
    symbols.update(dict.fromkeys([*range(0x82, 0x85), *range(0x86, 0x8B), 0xAF], b"1"))
    # lead bytes: four that start such characters, one symbol for all the others
    symbols.update(dict.fromkeys(range(0xC0, 0x100), b"L"))
    symbols.update({0xC2: b"C", 0xE1: b"E", 0xE2: b"F", 0xE3: b"G"})
    table = bytes(symbols.get(b, b"-")[0] for b in range(256))
    return table, bytes(b for b in range(256) if b not in symbols)


_TABLE, _DROP = _signature_table()
# In the signature every non-ASCII character starts with its lead symbol, so these match exactly the
# characters' own bytes: C8 = c2 85, C5 = c2 a0, E90 = e1 9a 80, F0x = e2 80 {80-8a, a8, a9, af},
# F27 = e2 81 9f, G00 = e3 80 80.
_SIGNED = re.compile(rb"[trvs]|C[58]|E90|F0[0128P]|F27|G00")
_SIGN_CLASS = {b"t": TAB, b"r": CR, b"v": VT_FF, b"s": FS_US, b"C8": NEL, b"C5": NBSP, b"F0P": LS_PS}
# The same matches as fixed strings: a few substring tests reject a clean signature faster than the regex.
_NEEDLES = (*_SIGN_CLASS, b"E90", b"F00", b"F01", b"F02", b"F08", b"F27", b"G00")
_ASCII = b"\t\r\x0b\x0c\x1c\x1d\x1e\x1f"
_BYTES_RE = re.compile(b"|".join(re.escape(c.encode()) for c in PYTHON_ONLY))


@dataclass
class Census:
    """Occurrences of :data:`PYTHON_ONLY` characters in some text, by class (:data:`CLASS_ORDER`)."""

    counts: Counter = field(default_factory=Counter)
    crlf: int = 0  # CRs directly followed by LF
    first_line: int = 0  # 1-based line of the first occurrence; 0 when none

    def __bool__(self) -> bool:
        return bool(self.counts)

    @property
    def lone_cr(self) -> int:
        """CRs not followed by LF: the original's universal newlines start a new line at each."""
        return self.counts[CR] - self.crlf

    def add(self, other: Census | None) -> None:
        """Fold in the census of text that comes after this one."""
        if not other:
            return
        if not self.first_line:
            self.first_line = other.first_line
        self.counts.update(other.counts)
        self.crlf += other.crlf

    def describe(self) -> str:
        """``CR 1200 (1200 before LF: CRLF line ends), TAB 3``."""
        parts = []
        for name in CLASS_ORDER:
            n = self.counts[name]
            if not n:
                continue
            if name == CR:
                lone = f", {self.lone_cr} alone" if self.lone_cr else ""
                parts.append(f"CR {n} ({self.crlf} before LF: CRLF line ends{lone})")
            else:
                parts.append(f"{name} {n}")
        return ", ".join(parts)


def census(data: bytes, first_line: int = 1) -> Census | None:
    """Count :data:`PYTHON_ONLY` characters in valid UTF-8 ``data``; ``None`` when there are none.

    ``first_line`` is the number of the line ``data`` starts with, for :attr:`Census.first_line`.
    """
    if data.isascii():
        if not any(c in data for c in _ASCII):
            return None
        signature = data.translate(_TABLE, _DROP)
    else:
        signature = data.translate(_TABLE, _DROP)
        if not any(needle in signature for needle in _NEEDLES):
            return None
    found = _SIGNED.findall(signature)
    result = Census(Counter(_SIGN_CLASS.get(sig, OTHER) for sig in found))
    if result.counts[CR]:
        result.crlf = data.count(b"\r\n")
    if all(sig in b"trvs" for sig in found):  # ASCII only: a few memchr calls find the first
        first = min(i for i in (data.find(c) for c in _ASCII) if i >= 0)
    else:
        first = _BYTES_RE.search(data).start()
    result.first_line = first_line + data.count(b"\n", 0, first)
    return result


def contains(word: str) -> bool:
    """Whether ``str.split()`` would cut ``word``."""
    return PYTHON_ONLY_RE.search(word) is not None


def classes_in(word: str) -> str:
    """``'CR'``, ``'TAB, NBSP U+00A0'``: the classes of the characters of ``word`` that split it."""
    found = {CLASS_OF[c] for c in PYTHON_ONLY_RE.findall(word)}
    return ", ".join(name for name in CLASS_ORDER if name in found)
