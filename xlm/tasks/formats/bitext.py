"""Readers for bitext retrieval and mining: Tatoeba pairs and BUCC 2018 files.

- Tatoeba (as LASER and XTREME ship it): ``tatoeba.{xxx}-eng.{xxx}`` and ``tatoeba.{xxx}-eng.eng``,
  line ``i`` of one the translation of line ``i`` of the other (ISO 639-3 codes: :data:`LANG3`).
- BUCC 2018: ``{xx}-en.{split}.{xx}`` and ``{xx}-en.{split}.en`` with ``ID<TAB>sentence`` lines, and
  for the ``sample`` and ``training`` splits ``{xx}-en.{split}.gold`` with ``XX_ID<TAB>EN_ID`` lines.

Malformed lines, duplicate ids and gold ids that name no sentence are errors naming ``file:line``.
"""

from __future__ import annotations

import os
from pathlib import Path

from xlm.errors import XLMError

LANG3 = {"ar": "ara", "bg": "bul", "de": "deu", "el": "ell", "en": "eng", "es": "spa", "fr": "fra", "hi": "hin",
         "it": "ita", "ja": "jpn", "ko": "kor", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "th": "tha",
         "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn"}


def _read(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return [line.rstrip("\n").removesuffix("\r") for line in f]
    except FileNotFoundError:
        raise XLMError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise XLMError(f"{path}: invalid UTF-8 at byte {e.start}") from None


def read_aligned(src: str | os.PathLike, tgt: str | os.PathLike, limit: int = -1) -> tuple[list[str], list[str]]:
    """Two line-aligned files (Tatoeba); their line counts must agree."""
    a, b = _read(Path(src)), _read(Path(tgt))
    if len(a) != len(b):
        raise XLMError(f"{src} has {len(a)} lines but {tgt} has {len(b)}: the files must be aligned")
    if not a:
        raise XLMError(f"{src}: no sentences")
    return (a[:limit], b[:limit]) if limit > 0 else (a, b)


def read_bucc_sentences(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(ids, sentences)`` of one BUCC side."""
    path = Path(path)
    ids: list[str] = []
    sents: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(_read(path), 1):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0]:
            raise XLMError(f"{path}:{lineno}: expected 'ID<TAB>sentence', got {len(fields)} field(s)")
        if fields[0] in seen:
            raise XLMError(f"{path}:{lineno}: id {fields[0]!r} already on line {seen[fields[0]]}")
        seen[fields[0]] = lineno
        ids.append(fields[0])
        sents.append(fields[1])
    return ids, sents


def read_bucc_gold(path: str | os.PathLike, src_ids: list[str], tgt_ids: list[str]) -> set[tuple[str, str]]:
    path = Path(path)
    src, tgt = set(src_ids), set(tgt_ids)
    gold: set[tuple[str, str]] = set()
    for lineno, line in enumerate(_read(path), 1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise XLMError(f"{path}:{lineno}: expected 'SRC_ID<TAB>EN_ID', got {len(fields)} field(s)")
        if fields[0] not in src or fields[1] not in tgt:
            missing = fields[0] if fields[0] not in src else fields[1]
            raise XLMError(f"{path}:{lineno}: id {missing!r} is not a sentence of the split")
        gold.add((fields[0], fields[1]))
    return gold
