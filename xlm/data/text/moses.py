"""Moses ``tokenizer.perl -no-escape -l LANG`` (mosesdecoder 187a75cb5), rule for rule.

The rules, in the script's order, for one line (the script's ``tokenize``; no ``-a``, ``-penn``,
``-x`` or protected patterns, as XLM's ``tokenize.sh`` runs it):

1. whitespace runs (perl's Unicode ``\\s``) become one space, ASCII controls go, ends are trimmed;
2. every character that is not alphanumeric, whitespace, ``.``, ``'``, backquote, ``,`` or ``-``
   is put between spaces (for fi and sv ``:`` too, unless a lowercase letter follows it);
3. runs of periods are kept together (the ``DOTMULTI`` placeholders, restored in step 9);
4. a comma is split off unless it sits between two numbers (or is a number's last character);
5. apostrophes: en splits before (``it 's``), fr/it/ga after (``l' homme``), so keeps letter-quote,
   every other language puts spaces around every ``'``;
6. a word ending in a period is split (``word .``) when it is the line's last word, else unless it
   holds a period and a letter (``e.g.``), is a nonbreaking prefix of the language (``Mr.``), or
   the next word starts with a lowercase letter; a ``#NUMERIC_ONLY#`` prefix (``No.``) is kept only
   before a digit;
7. spaces are collapsed and trimmed; 8. a final ``.'`` becomes `` . ' ``; 9. periods are restored.

Whitespace: the script writes a blank line (only whitespace) unchanged and step 8 leaves a space
at the end of the line (two inside for ``word .'``). By default we write single-space-separated
tokens instead (an empty line for a blank one): the same tokens, what every later step reads.
``moses_whitespace=True`` keeps the script's bytes.

Speed: the rules run once per block of lines (each ending in ``\\n``; every pattern leaves ``\\n``
out wherever the script's could meet the end of its one-line string), patterns start with a
literal where the rule allows (``re`` then skips ahead with a fast search), replacements are
literal strings or ``split``/``join`` (Python 3.11 expands ``\\1`` templates in Python, per match),
and rules that consume their neighbours run only on the lines that need them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from xlm.data.text.tables import ASTRAL, char_set, nonbreaking_prefixes

_SPACES = re.compile(" {2,}")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f]")  # the ASCII controls perl's \s leaves to the next rule
_MULTI_DOT = re.compile(r"\.(\.+)")
_DOTMULTI_BEFORE = re.compile(r"DOTMULTI\.([^.\n])")
_FINAL_PERIOD_QUOTE = re.compile(r"\.' ?(?=\n)")
_FINAL_PERIOD = re.compile(r"\.(?= *\n)(?<=[^ \n]\.)")  # the last word "pre." of a line
_INNER_PERIOD = re.compile(r"\.(?= +[^ \n])(?<=[^ \n]\.)")  # a word "pre." with words after it
_DIGITS = "0123456789"


def _collapse(text: str) -> str:
    """``s/ +/ /g; s/^ //g; s/ $//g`` on every line of a block."""
    text = _SPACES.sub(" ", text).replace(" \n", "\n").replace("\n ", "\n")
    return text[1:] if text.startswith(" ") else text


def on_lines_with(text: str, needle: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` (block -> block) to only the lines of ``text`` that contain ``needle``."""
    pos = text.find(needle)
    if pos < 0:
        return text
    spans = []
    while pos >= 0:
        start = text.rfind("\n", 0, pos) + 1
        end = text.index("\n", pos) + 1
        spans.append((start, end))
        pos = text.find(needle, end)
    done = fn("".join(text[a:b] for a, b in spans)).split("\n")
    out, prev = [], 0
    for (a, b), line in zip(spans, done):
        out += [text[prev:a], line, "\n"]
        prev = b
    out.append(text[prev:])
    return "".join(out)


class _Rules:
    """One language's patterns, for text below U+10000 (``astral=False``) or for any text."""

    def __init__(self, lang: str, astral: bool) -> None:
        def cs(*parts: str, **kw) -> str:
            return char_set(*parts, astral=astral, **kw)

        self.other_space = re.compile(cs("space", exclude=" "))
        colon = ":" if lang in ("fi", "sv") else ""  # "USA:n": the colon can be inside a word
        self.special = re.compile("(" + cs("alnum", "space", ".'`,-" + colon, negate=True) + ")")
        self.colon = re.compile(f":(?!{cs('ll')})") if colon else None
        num, no_num = cs("number"), cs("number", negate=True)
        # comma rules, fast forms (exact when no two commas touch) and the script's own
        self.comma_after = re.compile(f",(?<={no_num},)")
        self.comma_before = re.compile(f",(?={no_num})")
        self.comma_final = re.compile(f",(?<={num},)(?=\\n)")
        self.comma_exact = [(re.compile(f"({no_num}),"), r"\1 , "), (re.compile(f",({no_num})"), r" , \1")]
        alpha, no_alpha, no_alnum = cs("alpha"), cs("alpha", negate=True), cs("alpha", "number", negate=True)
        self.alpha = re.compile(alpha)
        self.lower = re.compile(cs("lower"))
        if lang == "en":  # split contractions right: "it 's", "1990 's"
            rules = [(f"({no_alpha})'({no_alpha})", r"\1 ' \2"), (f"({no_alnum})'({alpha})", r"\1 ' \2"),
                     (f"({alpha})'({no_alpha})", r"\1 ' \2"), (f"({alpha})'({alpha})", r"\1 '\2"),
                     (f"({num})'(s)", r"\1 '\2")]  # fmt: skip
        elif lang in ("fr", "it", "ga"):  # split contractions left: "l' homme"
            rules = [(f"({no_alpha})'({no_alpha})", r"\1 ' \2"), (f"({no_alpha})'({alpha})", r"\1 ' \2"),
                     (f"({alpha})'({no_alpha})", r"\1 ' \2"), (f"({alpha})'({alpha})", r"\1' \2")]  # fmt: skip
        elif lang == "so":  # Somali: glottal stops inside words stay
            rules = [(f"({no_alpha})'({no_alpha})", r"\1 ' \2"), (f"({no_alpha})'({alpha})", r"\1 ' \2"),
                     (f"({alpha})'({no_alpha})", r"\1 ' \2")]  # fmt: skip
        else:
            rules = []  # every ' gets spaces
        self.apostrophe = [(re.compile(pattern), repl) for pattern, repl in rules]


class MosesTokenizer:
    """``tokenizer.perl -no-escape -l lang`` over blocks of lines; build once per language."""

    def __init__(self, lang: str, moses_whitespace: bool = False) -> None:
        self.lang = lang
        self.moses_whitespace = moses_whitespace
        self.prefixes = nonbreaking_prefixes(lang)
        self._rules: list[_Rules | None] = [_Rules(lang, astral=False), None]  # the second when needed
        self._blank_line = re.compile(f"^{char_set('space')}+$", re.M)

    def tokenize(self, text: str) -> str:
        """Tokenize a block of lines, each ending in ``\\n``; returns as many lines."""
        astral = ASTRAL.search(text) is not None
        r = self._rules[astral] or self._build_astral()
        blank = {}  # line index -> line, for the blank lines the script writes unchanged
        if self.moses_whitespace:
            blank = {text.count("\n", 0, m.start()): m.group(0) for m in self._blank_line.finditer(text)}
        # 1. whitespace
        text = _collapse(_CONTROL.sub("", r.other_space.sub(" ", text)))
        # 2. special characters
        text = " ".join(r.special.split(text))
        if r.colon is not None:
            text = r.colon.sub(" : ", text)
        # 3. multi-dots
        dotmulti = ".." in text or "DOTMULTI" in text
        if dotmulti:
            text = _MULTI_DOT.sub(r" DOTMULTI\1", text)
            while "DOTMULTI." in text:
                text = _DOTMULTI_BEFORE.sub(r"DOTDOTMULTI \1", text)
                text = text.replace("DOTMULTI.", "DOTDOTMULTI")
        # 4. commas
        if ",," in text:
            for pattern, repl in r.comma_exact:
                text = pattern.sub(repl, text)
        elif "," in text:
            text = " , ".join(r.comma_after.split(text))
            text = " , ".join(r.comma_before.split(text))
        if "," in text:
            text = r.comma_final.sub(" ,", text)
        # 5. apostrophes
        if "'" in text:
            if r.apostrophe:
                text = on_lines_with(text, "'", lambda block: self._apostrophes(r, block))
            else:
                text = text.replace("'", " ' ")
        # 6. words ending in a period
        if "." in text:
            text = _FINAL_PERIOD.sub(" .", text)
            text = _INNER_PERIOD.sub(lambda m: self._inner_period(r, m), text)
        # 7. - 9.
        text = _collapse(text)
        quote = ".'" in text
        if quote:
            text = _FINAL_PERIOD_QUOTE.sub(" . ' ", text)
        if dotmulti or "DOTMULTI" in text:
            while "DOTDOTMULTI" in text:
                text = text.replace("DOTDOTMULTI", "DOTMULTI.")
            text = text.replace("DOTMULTI", ".")
        if blank:
            lines = text.split("\n")
            for i, line in blank.items():
                lines[i] = line
            text = "\n".join(lines)
        elif quote and not self.moses_whitespace:  # step 8 leaves a space at the end, maybe two inside
            text = _SPACES.sub(" ", text).replace(" \n", "\n")
        return text

    def _build_astral(self) -> _Rules:
        self._rules[1] = _Rules(self.lang, astral=True)
        return self._rules[1]

    @staticmethod
    def _apostrophes(r: _Rules, block: str) -> str:
        for pattern, repl in r.apostrophe:
            block = pattern.sub(repl, block)
        return block

    def _inner_period(self, r: _Rules, m: re.Match) -> str:
        """Step 6 for a word ``pre.`` that is not its line's last: keep it, or split the period off."""
        text, end = m.string, m.end()
        start = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end)) + 1
        pre = text[start : end - 1]
        prefix = self.prefixes.get(pre)
        if ("." in pre and r.alpha.search(pre)) or prefix == 1:
            return "."
        first = text[end + 1]  # the next word's first character (a space when that word is empty)
        if r.lower.match(first) or (prefix == 2 and first in _DIGITS):
            return "."
        return " ."
