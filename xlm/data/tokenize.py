"""Raw text to tokens, as the original ``tools/tokenize.sh`` (+ ``lowercase_and_remove_accent.py``).

Per line, the Moses perl scripts at mosesdecoder 187a75cb5, byte for byte (see ``xlm/data/text/``):

1. ``replace-unicode-punctuation.perl``; 2. ``normalize-punctuation.perl -l LANG``;
3. ``remove-non-printing-char.perl``; 4. ``tokenizer.perl -no-escape -l LANG``;
5. with ``lower_remove_accent``: the original's ``lowercase_and_remove_accent.py``.

Languages without spaces between words take a word segmenter instead of step 4 (Thai: PyThaiNLP;
Chinese: jieba; Japanese: fugashi; each an extra), as the original's ``tokenize.sh`` did with its
segmenters; with none installed, :class:`Tokenizer` refuses the language with a one-line error
naming the extra and the flags (``--pre-segmented``, ``--segmenter``). Options beyond the original,
all off by default and recorded in the settings: ``nfc`` (NFC first, so composed and decomposed
spellings give the same tokens), ``drop_invisible`` (soft hyphens, joiners, direction marks and the
BOM are dropped instead of made spaces), ``moses_whitespace`` (keep the script's stray spaces and
blank lines; by default every line is single-space-separated tokens, ending in ``\\n``).

Settings: :meth:`Tokenizer.settings` gives what a data folder's ``preprocess.json`` records, and
:meth:`Tokenizer.from_settings` rebuilds the same tokenizer from it (older files too).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlm.data import textio
from xlm.data.text import segment
from xlm.data.text.moses import MosesTokenizer
from xlm.data.text.normalize import (
    drop_format_characters,
    lowercase_and_remove_accent,
    nfc,
    normalize_punctuation,
    remove_non_printing,
    replace_unicode_punctuation,
)
from xlm.data.text.tables import char_set, versions
from xlm.errors import XLMError
from xlm.io import atomic_write_text

__all__ = [
    "Tokenizer", "tokenize_file", "lowercase_and_remove_accent", "remove_non_printing",
    "replace_unicode_punctuation", "normalize_punctuation", "merge_settings", "write_settings",
]  # fmt: skip

TOKENIZER_VERSION = "moses-" + versions()["moses"]  # marks settings written by this exact tokenizer
_LANG = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]+)?")
_SPACE_RUN = re.compile(char_set("space") + "+")


def _single_spaced(text: str) -> str:
    """Runs of whitespace (perl's ``\\s``) to one space, none at line ends, in a block of lines."""
    text = _SPACE_RUN.sub(" ", text).replace(" \n", "\n").replace("\n ", "\n")
    return text[1:] if text.startswith(" ") else text


@dataclass
class Tokenizer:
    """The whole per-line pipeline for one language; build once, call on lines or blocks of lines.

    ``segmenter``: ``None`` = the language's default (Moses, or the word segmenter th/zh/ja need),
    else one of ``moses``, ``cjk-chars``, ``pre-segmented``, ``pythainlp``, ``jieba``, ``fugashi``
    (see :mod:`xlm.data.text.segment`). ``pre_segmented=True`` is ``segmenter="pre-segmented"``:
    steps 1-3 and 5 only, whitespace collapsed, as the original handled its segmenters' output.
    Raises XLMError for a bad language code or a segmenter that is unknown or not installed.
    """

    lang: str
    lower_remove_accent: bool = False
    pre_segmented: bool = False
    segmenter: str | None = None
    nfc: bool = False
    drop_invisible: bool = False
    moses_whitespace: bool = False
    _moses: MosesTokenizer | None = field(default=None, init=False, repr=False, compare=False)
    _words: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _LANG.fullmatch(self.lang):
            raise XLMError(f"--lang: expected a language code such as 'en' or 'zh', got {self.lang!r}")
        if self.pre_segmented:
            if self.segmenter not in (None, segment.PRE_SEGMENTED):
                raise XLMError(f"--pre-segmented and --segmenter {self.segmenter}: choose one")
            self.segmenter = segment.PRE_SEGMENTED
        if self.segmenter is None:
            default = segment.DEFAULT.get(self.lang, segment.MOSES)
            if default in segment.LIBRARIES and segment.missing(default):
                raise segment.no_segmenter_error(self.lang)
            self.segmenter = default
        segment.check(self.segmenter, self.lang)
        self.pre_segmented = self.segmenter == segment.PRE_SEGMENTED
        if self.segmenter in (segment.MOSES, segment.CJK_CHARS):
            self._moses = MosesTokenizer(self.lang, self.moses_whitespace)

    # -- settings ---------------------------------------------------------------------------------
    @property
    def library_version(self) -> str | None:
        """Installed version of the word-segmentation library, if the tokenizer uses one."""
        return segment.version(self.segmenter) if self.segmenter in segment.LIBRARIES else None

    def settings(self) -> dict[str, Any]:
        """What ``preprocess.json`` records for this tokenizer (see :func:`merge_settings`)."""
        seg: dict[str, Any] = {"name": self.segmenter}
        if self.library_version:
            seg["version"] = self.library_version
        return {
            "tokenize": True,
            "tokenizer": TOKENIZER_VERSION,
            "lower_remove_accent": self.lower_remove_accent,
            "nfc": self.nfc,
            "drop_invisible": self.drop_invisible,
            "moses_whitespace": self.moses_whitespace,
            "pre_segmented": [self.lang] if self.pre_segmented else [],
            "segmenters": {self.lang: seg},
        }

    @classmethod
    def from_settings(cls, lang: str, settings: dict[str, Any]) -> Tokenizer | None:
        """The tokenizer that made a data folder's ``lang`` text, from its ``preprocess.json`` dict.

        Keys: ``tokenize`` (False: the text was used as given; returns None), ``lower_remove_accent``,
        ``pre_segmented`` (languages), ``nfc``, ``drop_invisible``, ``moses_whitespace`` and
        ``segmenters`` (``{lang: {"name": ..., "version": ...}}``); ``tokenizer`` marks files written
        by this exact tokenizer. Older files (only ``tokenize``, ``lower_remove_accent``,
        ``pre_segmented``, ``segmentation``) were made by the sacremoses-based tokenizer, which
        dropped invisible characters and split zh/ja into ideographs: those choices are rebuilt,
        with a warning that its Moses rules differed from perl on a few lines in a thousand. A
        recorded library version different from the installed one also warns. Raises XLMError as
        the constructor does (e.g. the recorded segmenter is not installed).
        """
        if not settings.get("tokenize", True):
            return None
        lower = bool(settings.get("lower_remove_accent", False))
        pre = lang in settings.get("pre_segmented", [])
        if "tokenizer" not in settings:
            warnings.warn(
                "preprocess.json predates the exact Moses tokenizer: rebuilding its choices "
                "(invisible characters dropped, zh/ja one token per ideograph); its sacremoses rules "
                "differed from the perl scripts on about 0.1% of lines",
                stacklevel=2,
            )
            seg = None if pre else segment.CJK_CHARS if lang in ("zh", "ja") else segment.MOSES
            return cls(lang, lower, pre_segmented=pre, segmenter=seg, drop_invisible=True)
        recorded = settings.get("segmenters", {}).get(lang, {})
        tok = cls(
            lang,
            lower,
            pre_segmented=pre,
            segmenter=None if pre else recorded.get("name"),
            nfc=bool(settings.get("nfc", False)),
            drop_invisible=bool(settings.get("drop_invisible", False)),
            moses_whitespace=bool(settings.get("moses_whitespace", False)),
        )
        if recorded.get("version") and recorded["version"] != tok.library_version:
            warnings.warn(
                f"{lang} text was segmented with {recorded['version']}, installed is {tok.library_version}: "
                "words may be cut differently",
                stacklevel=2,
            )
        return tok

    # -- tokenizing ---------------------------------------------------------------------------------
    def __call__(self, line: str) -> str:
        """Tokenize one line (without its ``\\n``)."""
        return self.tokenize_block(line + "\n")[:-1]

    def tokenize_block(self, text: str) -> str:
        """Tokenize a block of lines, each ending in ``\\n``; returns as many lines, each ending in ``\\n``."""
        if "\n" in text[:-1] and self.segmenter in segment.LIBRARIES:  # segmenters work per line
            return "".join(self.tokenize_block(line + "\n") for line in text[:-1].split("\n"))
        if self.nfc:
            text = nfc(text)
        if self.segmenter == "jieba":  # the original segments Chinese first, then normalizes
            text = " ".join(self._segment(text[:-1])) + "\n"
        text = normalize_punctuation(replace_unicode_punctuation(text), self.lang)
        if self.drop_invisible:
            text = drop_format_characters(text)
        text = remove_non_printing(text)
        if self._moses is not None:
            if self.segmenter == segment.CJK_CHARS:
                text = segment.split_cjk_ideographs(text)
            text = self._moses.tokenize(text)
        elif self.segmenter in ("pythainlp", "fugashi"):
            text = " ".join(self._segment(text[:-1])) + "\n"
        if self._moses is None:
            text = _single_spaced(text)
        if self.lower_remove_accent:
            text = lowercase_and_remove_accent(text)
            if not self.moses_whitespace and ("  " in text or " \n" in text or "\n " in text or text[:1] == " "):
                text = _single_spaced(text)  # a token that was only combining marks is gone
        return text

    def _segment(self, line: str) -> list[str]:
        if self._words is None:
            self._words = segment.load(self.segmenter)
        return self._words(line)


def merge_settings(old: dict[str, Any], new: dict[str, Any], source: str = "preprocess.json") -> dict[str, Any]:
    """Settings of several languages in one dict: ``new`` (from :meth:`Tokenizer.settings`) added
    to ``old``. Settings shared by all languages must agree (XLMError naming ``source`` otherwise)."""
    if not old:
        return dict(new)
    for key in ("tokenize", "tokenizer", "lower_remove_accent", "nfc", "drop_invisible", "moses_whitespace"):
        if key in old and key in new and old[key] != new[key]:
            raise XLMError(f"{source}: {key} is {old[key]!r} there but {new[key]!r} now; use the same settings")
    out = {**old, **{k: v for k, v in new.items() if k not in ("pre_segmented", "segmenters")}}
    redone = set(new.get("segmenters", {}))  # languages tokenized again: their new choice wins
    out["pre_segmented"] = sorted({x for x in old.get("pre_segmented", []) if x not in redone}
                                  | set(new.get("pre_segmented", [])))  # fmt: skip
    out["segmenters"] = {**old.get("segmenters", {}), **new.get("segmenters", {})}
    return out


def write_settings(path: str | os.PathLike, tokenizer: Tokenizer) -> dict[str, Any]:
    """Merge ``tokenizer``'s settings into the JSON file ``path`` (created if absent): what
    ``tokenize --settings-out`` does, so that by-hand preprocessing leaves the same
    ``preprocess.json`` as ``preprocess.py run``. Returns the merged settings."""
    old: dict[str, Any] = {}
    if Path(path).is_file():
        try:
            old = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise XLMError(f"{path}: cannot read settings: {e}") from None
        if not isinstance(old, dict):
            raise XLMError(f"{path}: expected a JSON object of settings")
    settings = merge_settings(old, tokenizer.settings(), source=str(path))
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise XLMError(f"{path}: cannot write settings: {e.strerror}") from None
    return settings


# -- files -------------------------------------------------------------------------------------------
_worker: tuple[Tokenizer, str, textio.Errors] | None = None  # per process, set by _init_worker
CHUNK_BYTES = 1 << 18  # ~3,000 lines: small enough to keep both workers busy on a 20 MB file


def _init_worker(options: dict[str, Any], source: str, errors: textio.Errors) -> None:
    global _worker
    _worker = (Tokenizer(**options), source, errors)


def _tokenize_chunk(chunk: textio.Chunk) -> tuple[bytes, int]:
    assert _worker is not None
    tokenizer, source, errors = _worker
    return tokenizer.tokenize_block(textio.decode_chunk(chunk, source, errors)).encode("utf-8"), len(chunk.data)


def tokenize_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    lang: str,
    *,
    lower_remove_accent: bool = False,
    pre_segmented: bool = False,
    segmenter: str | None = None,
    nfc: bool = False,
    drop_invisible: bool = False,
    moses_whitespace: bool = False,
    workers: int | None = None,
    progress: bool = False,
    errors: textio.Errors = "strict",
    chunk_bytes: int = CHUNK_BYTES,
) -> int:
    """Tokenize ``input`` into ``output`` line by line (``-`` = stdin/stdout); returns the line count.

    Output has exactly one line per input line, so parallel files stay aligned. Big inputs are
    split into chunks of ``chunk_bytes`` tokenized on ``workers`` processes, in order (``None``:
    one per core when the input spans several chunks).
    """
    options = dict(
        lang=lang, lower_remove_accent=lower_remove_accent, pre_segmented=pre_segmented, segmenter=segmenter,
        nfc=nfc, drop_invisible=drop_invisible, moses_whitespace=moses_whitespace,
    )  # fmt: skip
    Tokenizer(**options)  # validate the settings before any work
    source = textio.display_name(input)
    return textio.transform_file(
        input, output, _tokenize_chunk, initializer=_init_worker, initargs=(options, source, errors),
        workers=workers, progress=progress, desc="tokenize", chunk_bytes=chunk_bytes,
    )  # fmt: skip
