"""Character-level normalization before tokens exist: the three Moses scripts XLM's ``tokenize.sh``
pipes text through, then (after tokenization) the original's ``lowercase_and_remove_accent.py``.

Every function takes a *block*: one or more lines, each ending in ``\\n`` (the lines of a chunk of
a file, or one line plus ``\\n``), and returns a block with the same number of lines. Running a
rule once over a block is what makes tokenization fast; each rule is written so that it never
reaches across a ``\\n``, which makes the result the same as running the scripts line by line.

Sources (mosesdecoder 187a75cb5, ``scripts/tokenizer/``): ``replace-unicode-punctuation.perl``
and ``normalize-punctuation.perl`` run on bytes (no ``use utf8``), so their ``\\d`` and ``\\s``
are ASCII and ``[a-z]`` with ``/i`` is ``[a-zA-Z]``; ``remove-non-printing-char.perl`` runs on
characters. ``normalize-punctuation.perl`` sees each line with its ``\\n`` (it never chomps).
"""

from __future__ import annotations

import functools
import re
import unicodedata

from xlm.data.text.tables import char_set

# -- replace-unicode-punctuation.perl ---------------------------------------------------------------
# Its substitutions, in its order; none creates text another one matches, so one pass per table.
# It maps the full-width digit one to '"' (a bug in the script that the released models' data went
# through) and swallows the spaces after an ideographic or full-width full stop.
_UNICODE_PUNCT = str.maketrans({
    "，": ",", "、": ",", "”": '"', "“": '"', "∶": ":", "：": ":", "？": "?", "《": '"', "》": '"',
    "）": ")", "！": "!", "（": "(", "；": ";", "１": '"', "」": '"', "「": '"', "０": "0", "３": "3",
    "２": "2", "５": "5", "６": "6", "９": "9", "７": "7", "８": "8", "４": "4", "～": "~", "’": "'",
    "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%",
})  # fmt: skip
_FULL_STOP = re.compile("[。．] *")
_UNICODE_PUNCT_CHAR = re.compile("[" + "".join(map(chr, _UNICODE_PUNCT)) + "]")


def _unicode_punct(m: re.Match) -> str:
    return _UNICODE_PUNCT[ord(m.group())]


def replace_unicode_punctuation(text: str) -> str:
    """CJK and full-width punctuation to ASCII (``replace-unicode-punctuation.perl``)."""
    if text.isascii():
        return text
    return _UNICODE_PUNCT_CHAR.sub(_unicode_punct, _FULL_STOP.sub(". ", text))


# -- normalize-punctuation.perl -l LANG ------------------------------------------------------------------
_SPACES = re.compile(" {2,}")
_PAREN_PUNCT = re.compile(r"\) (?=[.!:?;,])")  # -> ")"
_DIGIT_PERCENT = re.compile(r" %(?<=[0-9] %)")  # -> "%"
_LEFT_QUOTE_IN_WORD = re.compile("([a-zA-Z])\u2018([a-zA-Z])")
_RIGHT_QUOTE_IN_WORD = re.compile("([a-zA-Z])\u2019([a-zA-Z])")
_QUOTE_BEFORE_COMMA = re.compile(r'"([,.]+)')  # en: move the quote after ,/.
_PERIOD_BEFORE_QUOTE = re.compile(r'(\.+)"([\t\x0b\x0c\r ]*[^<])')  # others: before; [^<] may be the \n
_DIGIT_SPACE_DIGIT = re.compile("([0-9])\u00a0([0-9])")  # a no-break space between digits
_COMMA_DECIMAL = ("de", "es", "cz", "cs", "fr")  # 1\u00a0000 -> 1,000; other languages 1.000

# (old, new) pairs applied with str.replace, in the script's order; None = collapse space runs.
_QUOTES = [("\u201e", '"'), ("\u201c", '"'), ("\u201d", '"'), ("\u2013", "-"), ("\u2014", " - "), None,
           ("\u00b4", "'")]  # fmt: skip
_AFTER_IN_WORD = [
    ("\u2018", '"'), ("\u201a", '"'), ("\u2019", '"'), ("''", '"'), ("\u00b4\u00b4", '"'), ("\u2026", "..."),
    # French quotes, then pseudo-spaces: the script's patterns hold a no-break space (U+00A0) where these do
    ("\u00a0\u00ab\u00a0", ' "'), ("\u00ab\u00a0", '"'), ("\u00ab", '"'), ("\u00a0\u00bb\u00a0", '" '),
    ("\u00a0\u00bb", '"'), ("\u00bb", '"'),
    ("\u00a0%", "%"), ("n\u00ba\u00a0", "n\u00ba "), ("\u00a0:", ":"), ("\u00a0\u00baC", " \u00baC"),
    ("\u00a0cm", " cm"), ("\u00a0?", "?"), ("\u00a0!", "!"), ("\u00a0;", ";"), (",\u00a0", ", "), None,
]  # fmt: skip


def _marker(old: str) -> str:
    return next((c for c in old if not c.isascii()), "")  # "" for the all-ASCII ''


_MARKERS = re.compile("[" + "".join(sorted({_marker(pair[0]) for pair in _QUOTES + _AFTER_IN_WORD if pair})) + "]")


def _squeeze(text: str) -> str:
    return _SPACES.sub(" ", text) if "  " in text else text


def _replace_all(text: str, pairs: list) -> str:
    present = set(_MARKERS.findall(text)) | {""}  # one scan instead of one per pair
    for pair in pairs:
        if pair is None:
            text = _squeeze(text)
        elif _marker(pair[0]) in present and pair[0] in text:
            text = text.replace(*pair)
    return text


def normalize_punctuation(text: str, lang: str) -> str:
    """Quotes, dashes, spaces around punctuation (``normalize-punctuation.perl -l LANG``)."""
    text = text.replace("\r", "").replace("(", " (").replace(")", ") ")
    text = _squeeze(text)
    if ")" in text:
        text = _PAREN_PUNCT.sub(")", text)
    text = text.replace("( ", "(").replace(" )", ")")
    if "%" in text:
        text = _DIGIT_PERCENT.sub("%", text)
    text = text.replace(" :", ":").replace(" ;", ";").replace("`", "'").replace("''", ' " ')
    if not text.isascii():
        text = _replace_all(text, _QUOTES)
        if "\u2018" in text:
            text = _LEFT_QUOTE_IN_WORD.sub(r"\1'\2", text)
        if "\u2019" in text:
            text = _RIGHT_QUOTE_IN_WORD.sub(r"\1'\2", text)
        text = _replace_all(text, _AFTER_IN_WORD)
    else:  # '' -> " above may leave two spaces: the script collapses them later
        text = _squeeze(text)
    if '"' in text:
        if lang == "en":
            text = _QUOTE_BEFORE_COMMA.sub(r'\1"', text)
        elif lang not in ("cs", "cz"):  # "Czech is confused": no quote rule
            text = text.replace(',"', '",')
            text = _PERIOD_BEFORE_QUOTE.sub(r'"\1\2', text)
    if "\u00a0" in text:
        text = _DIGIT_SPACE_DIGIT.sub(r"\1,\2" if lang in _COMMA_DECIMAL else r"\1.\2", text)
    return text


# -- remove-non-printing-char.perl ----------------------------------------------------------------------
@functools.cache
def _other() -> re.Pattern:
    return re.compile(char_set("other"))


_ASCII_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")
_FORMAT_CHARS = re.compile("[\u00ad\u200c-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def remove_non_printing(text: str) -> str:
    """Every ``\\p{C}`` character (controls, format characters such as the soft hyphen and the
    zero-width joiners, private use, unassigned) becomes a space (``remove-non-printing-char.perl``)."""
    if text.isascii():
        return _ASCII_CONTROL.sub(" ", text)
    return _other().sub(" ", text)


def drop_format_characters(text: str) -> str:
    """Remove soft hyphens, zero-width (non-)joiners, word joiners, direction marks and the BOM.

    Not a Moses step: an option (``drop_invisible``) applied before it, so ``in\\u00adformation``
    stays one word where Moses makes two. The old default of this package; off by default now.
    """
    return text if text.isascii() else _FORMAT_CHARS.sub("", text)


# -- lowercase_and_remove_accent.py (XLM tools/) ---------------------------------------------------------
_TRAILING_SPACE = re.compile(r"[^\S\n]+(?=\n)")


@functools.cache
def _nonspacing_marks() -> re.Pattern:
    marks = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Mn"]
    return re.compile("[" + "".join(re.escape(c) for c in marks) + "]")


def lowercase_and_remove_accent(text: str) -> str:
    """Per line: strip trailing whitespace, lowercase, NFD, drop combining marks (``Mn``),
    lowercase again: the original's ``tools/lowercase_and_remove_accent.py``."""
    text = _TRAILING_SPACE.sub("", text).lower()
    if text.isascii():
        return text
    return _nonspacing_marks().sub("", unicodedata.normalize("NFD", text)).lower()


def nfc(text: str) -> str:
    """Unicode NFC, so that composed and decomposed spellings of a word give the same tokens."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)
