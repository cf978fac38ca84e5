"""Moses-style tokenization, as the original ``tools/tokenize.sh`` (+ lowercase and accent removal).

Per line, in the original's order:

1. replace CJK/full-width punctuation with ASCII (port of Moses ``replace-unicode-punctuation.perl``,
   including its quirk of mapping the full-width digit one to ``"``);
2. ``sacremoses.MosesPunctNormalizer(lang, perl_parity=True)`` (``normalize-punctuation.perl -l L``);
3. remove non-printing characters (``remove-non-printing-char.perl``). Perl turns every ``\\p{C}``
   character into a space. We turn controls (category ``Cc``: tab, CR, ...), line/paragraph
   separators and the zero-width space into a space, since they separate words, and *drop* the
   other ``C*`` characters (soft hyphen, joiners, BOM, direction marks, private use, unassigned),
   which sit inside words: ``in\\u00adformation`` stays one word;
4. ``sacremoses.MosesTokenizer(lang).tokenize(escape=False)`` (``tokenizer.perl -no-escape``);
5. optionally lowercase, NFD, drop combining marks (``Mn``), lowercase again
   (``lowercase_and_remove_accent.py``).

Languages without spaces: the original piped zh through the Stanford segmenter, th through
PyThaiNLP and ja through KyTea, which we do not ship. Instead, for ``zh`` and ``ja`` every CJK
ideograph becomes its own token (as BERT's basic tokenizer does) before Moses tokenization; kana,
hangul and Thai runs are left as Moses leaves them. To use a real segmenter, segment first and pass
``pre_segmented=True``: steps 1-3 and 5 run, step 4 is replaced by collapsing whitespace, exactly
as the original handled its segmenters' output.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass

import regex

from xlm.data import textio
from xlm.errors import XLMError

CJK_SEGMENTED_LANGS = ("zh", "ja")

# -- step 1: replace-unicode-punctuation.perl ------------------------------------------------------
_PUNCT_TABLE = str.maketrans({
    "，": ",", "、": ",", "”": '"', "“": '"', "∶": ":", "：": ":", "？": "?", "《": '"', "》": '"',
    "）": ")", "！": "!", "（": "(", "；": ";", "１": '"', "」": '"', "「": '"', "０": "0", "３": "3",
    "２": "2", "５": "5", "６": "6", "９": "9", "７": "7", "８": "8", "４": "4", "～": "~", "’": "'",
    "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%",
})  # fmt: skip
_IDEOGRAPHIC_STOP = re.compile("[。．] *")  # both become ". ", swallowing the spaces after them


def replace_unicode_punctuation(text: str) -> str:
    """Map CJK and full-width punctuation to ASCII, as Moses' ``replace-unicode-punctuation.perl``."""
    return _IDEOGRAPHIC_STOP.sub(". ", text).translate(_PUNCT_TABLE)


# -- step 3: remove-non-printing-char.perl -------------------------------------------------------------
_SPACE_LIKE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b]")  # Cc, Zl, Zp, zero-width space
_INVISIBLE = regex.compile(r"[\p{Cf}\p{Co}\p{Cn}\p{Cs}]")


def remove_non_printing(text: str) -> str:
    """Controls and separators become spaces; other invisible (``C*``) characters are dropped."""
    return _INVISIBLE.sub("", _SPACE_LIKE.sub(" ", text))


# -- zh / ja fallback segmentation ---------------------------------------------------------------------
_CJK_IDEOGRAPH = re.compile(
    "([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f])"
)


def split_cjk_ideographs(text: str) -> str:
    """Put spaces around every CJK ideograph, so each becomes a token (BERT's Chinese handling)."""
    return _CJK_IDEOGRAPH.sub(r" \1 ", text)


# -- step 5: lowercase_and_remove_accent.py ------------------------------------------------------------
def lowercase_and_remove_accent(text: str) -> str:
    """Lowercase, decompose (NFD), drop combining marks, lowercase again (the original's tool)."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn").lower()


_WHITESPACE = re.compile(r"\s+")


@dataclass
class Tokenizer:
    """The whole per-line pipeline for one language; build once, call on many lines."""

    lang: str
    lower_remove_accent: bool = False
    pre_segmented: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]+)?", self.lang):
            raise XLMError(f"--lang: expected a language code such as 'en' or 'zh', got {self.lang!r}")
        from sacremoses import MosesPunctNormalizer, MosesTokenizer  # slow to import: only when needed

        self._normalizer = MosesPunctNormalizer(self.lang, perl_parity=True)
        self._moses = None if self.pre_segmented else MosesTokenizer(self.lang)
        self._split_cjk = self.lang in CJK_SEGMENTED_LANGS and not self.pre_segmented

    def __call__(self, line: str) -> str:
        text = replace_unicode_punctuation(line)
        text = self._normalizer.normalize(text)
        text = remove_non_printing(text)
        if self._split_cjk:
            text = split_cjk_ideographs(text)
        if self._moses is None:
            text = _WHITESPACE.sub(" ", text).strip()
        else:
            text = self._moses.tokenize(text, escape=False, return_str=True)
        if self.lower_remove_accent:
            text = lowercase_and_remove_accent(text)
        return text


# -- files -------------------------------------------------------------------------------------------
_worker: tuple[Tokenizer, str, textio.Errors] | None = None  # per process, set by _init_worker
CHUNK_BYTES = 1 << 18  # ~5,000 lines: a second of Moses tokenization per chunk


def _init_worker(settings: tuple[str, bool, bool], source: str, errors: textio.Errors) -> None:
    global _worker
    _worker = (Tokenizer(*settings), source, errors)


def _tokenize_chunk(chunk: textio.Chunk) -> tuple[bytes, int]:
    assert _worker is not None
    tokenizer, source, errors = _worker
    lines = textio.decode_chunk(chunk, source, errors)[:-1].split("\n")
    return ("\n".join(map(tokenizer, lines)) + "\n").encode("utf-8"), len(chunk.data)


def tokenize_file(
    input: str | os.PathLike,
    output: str | os.PathLike,
    lang: str,
    *,
    lower_remove_accent: bool = False,
    pre_segmented: bool = False,
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
    Tokenizer(lang, lower_remove_accent, pre_segmented)  # validate the settings before any work
    source = textio.display_name(input)
    return textio.transform_file(
        input, output, _tokenize_chunk, initializer=_init_worker,
        initargs=((lang, lower_remove_accent, pre_segmented), source, errors),
        workers=workers, progress=progress, desc="tokenize", chunk_bytes=chunk_bytes,
    )
