"""Word segmentation for languages written without spaces, where the Moses tokenizer does not apply.

The original's ``tools/tokenize.sh`` never sends these languages through ``tokenizer.perl``:
Chinese goes through the Stanford segmenter, Thai through PyThaiNLP (``tools/segment_th.py``),
Japanese through KyTea. We use maintained libraries installable from PyPI, each an extra:

========  ===========  ============================  ==================================================
language  segmenter    extra                         what it is
========  ===========  ============================  ==================================================
th        pythainlp    ``pip install -e '.[th]'``     PyThaiNLP ``word_tokenize``, engine newmm (as the original)
zh        jieba        ``pip install -e '.[zh]'``     jieba ``lcut`` (accurate mode, HMM for unknown words)
ja        fugashi      ``pip install -e '.[ja]'``     MeCab through fugashi, with the UniDic-lite dictionary
========  ===========  ============================  ==================================================

``cjk-chars`` (no library) makes every CJK ideograph a token and leaves the rest to Moses, as
BERT's basic tokenizer does: a named, documented fallback, never chosen by default.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from importlib import metadata

from xlm.errors import XLMError

# name -> (language it is for, extra, PyPI distributions whose versions are recorded, modules needed)
LIBRARIES = {
    "pythainlp": ("th", "th", ("pythainlp",), ("pythainlp",)),
    "jieba": ("zh", "zh", ("jieba",), ("jieba",)),
    "fugashi": ("ja", "ja", ("fugashi", "unidic-lite"), ("fugashi", "unidic_lite")),
}
DEFAULT = {"th": "pythainlp", "zh": "jieba", "ja": "fugashi"}  # languages that need a segmenter
LANGUAGE_NAMES = {"th": "Thai", "zh": "Chinese", "ja": "Japanese"}
MOSES, CJK_CHARS, PRE_SEGMENTED = "moses", "cjk-chars", "pre-segmented"
CHOICES = (MOSES, CJK_CHARS, PRE_SEGMENTED, *LIBRARIES)


def missing(name: str) -> list[str]:
    """The modules of segmenter ``name`` that cannot be imported here."""
    return [m for m in LIBRARIES[name][3] if importlib.util.find_spec(m) is None]


def check(name: str, lang: str) -> None:
    """Refuse an unknown segmenter, or a library segmenter that is not installed (one-line XLMError)."""
    if name not in CHOICES:
        raise XLMError(f"--segmenter: unknown segmenter {name!r}; choose one of {', '.join(CHOICES)}")
    if name in LIBRARIES and missing(name):
        extra = LIBRARIES[name][1]
        raise XLMError(
            f"--lang {lang}: segmenter {name} is not installed: pip install -e '.[{extra}]' "
            f"(or {' '.join(LIBRARIES[name][2])}), or pass --pre-segmented / another --segmenter"
        )


def no_segmenter_error(lang: str) -> XLMError:
    """The error for a language that needs a word segmenter when its library is not installed."""
    name = DEFAULT[lang]
    fallback = f", --segmenter {CJK_CHARS} (one token per ideograph)" if lang in ("zh", "ja") else ""
    return XLMError(
        f"--lang {lang}: {LANGUAGE_NAMES[lang]} is written without spaces and needs a word segmenter: "
        f"pip install -e '.[{LIBRARIES[name][1]}]' ({name}), or pass --pre-segmented (text already segmented)"
        f"{fallback} or --segmenter {MOSES} (Moses rules anyway)"
    )


def version(name: str) -> str:
    """Installed version(s) of a library segmenter, e.g. ``fugashi 1.5.2, unidic-lite 1.0.8``."""
    out = []
    for dist in LIBRARIES[name][2]:
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} unknown")
    return ", ".join(out)


def load(name: str) -> Callable[[str], list[str]]:
    """A function from one line to its words (whitespace-free strings)."""
    if name == "pythainlp":
        from pythainlp.tokenize import word_tokenize

        return lambda line: word_tokenize(line, engine="newmm", keep_whitespace=False)
    if name == "jieba":
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)  # it prints its dictionary loading at INFO
        return lambda line: jieba.lcut(line, cut_all=False, HMM=True)
    if name == "fugashi":
        import fugashi

        tagger = fugashi.Tagger()  # finds unidic-lite's dictionary
        return lambda line: [word.surface for word in tagger(line)]
    raise XLMError(f"--segmenter: {name!r} is not a library segmenter")


_CJK_IDEOGRAPH = re.compile(
    "([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f])"
)


def split_cjk_ideographs(text: str) -> str:
    """Spaces around every CJK ideograph, so each becomes a token (the ``cjk-chars`` choice)."""
    return _CJK_IDEOGRAPH.sub(r" \1 ", text)
