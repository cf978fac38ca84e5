"""Readers for token-classification files: CoNLL-2002/2003 NER and Universal Dependencies ``.conllu``.

- ``conll``: one word a line, fields separated by whitespace, the word first and the tag last
  (CoNLL-2002 ``word tag``, ``word POS tag``; CoNLL-2003 ``word POS chunk tag``, German with the
  lemma too); a blank line ends a sentence; ``-DOCSTART-`` lines are skipped. Every line of a file
  has the number of fields of its first line, and tags are ``O`` or ``B-``/``I-``/``E-``/``S-``
  followed by a type (IOB1, IOB2 and IOBES all read).
- ``conllu``: ten tab-separated fields (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC);
  ``#`` comments; multi-word token ranges (``1-2``) and empty nodes (``1.1``) are skipped, so the
  words are the syntactic words UPOS annotates.

Malformed lines are errors naming ``file:line``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from xlm.errors import XLMError

UPOS_TAGS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
             "SCONJ", "SYM", "VERB", "X"]  # Universal Dependencies v2
_NER_TAG = re.compile(r"O|[BIES]-\S+")


@dataclass
class TaggedSentence:
    words: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    where: str = ""  # file:line of its first word


def _lines(path: Path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for lineno, line in enumerate(f, 1):
                yield lineno, line.rstrip("\n").removesuffix("\r")
    except FileNotFoundError:
        raise XLMError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise XLMError(f"{path}: invalid UTF-8 at byte {e.start}") from None


def read_conll(path: str | os.PathLike) -> list[TaggedSentence]:
    path = Path(path)
    out: list[TaggedSentence] = []
    cur = TaggedSentence()
    n_fields = 0
    for lineno, line in _lines(path):
        fields = line.split()
        if not fields:
            if cur.words:
                out.append(cur)
            cur = TaggedSentence()
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) < 2:
            raise XLMError(f"{path}:{lineno}: expected 'WORD ... TAG', got one field {line[:60]!r}")
        if n_fields == 0:
            n_fields = len(fields)
        elif len(fields) != n_fields:
            raise XLMError(f"{path}:{lineno}: {len(fields)} fields where the file's lines have {n_fields}")
        tag = fields[-1]
        if not _NER_TAG.fullmatch(tag):
            raise XLMError(f"{path}:{lineno}: tag {tag!r} is neither O nor B-/I-/E-/S- followed by a type")
        if not cur.words:
            cur.where = f"{path}:{lineno}"
        cur.words.append(fields[0])
        cur.labels.append(tag)
    if cur.words:
        out.append(cur)
    return out


def read_conllu(path: str | os.PathLike, column: str = "upos") -> list[TaggedSentence]:
    path = Path(path)
    col = {"upos": 3, "xpos": 4}[column]
    out: list[TaggedSentence] = []
    cur = TaggedSentence()
    for lineno, line in _lines(path):
        if not line.strip():
            if cur.words:
                out.append(cur)
            cur = TaggedSentence()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise XLMError(f"{path}:{lineno}: expected 10 tab-separated fields (CoNLL-U), got {len(fields)}")
        wid = fields[0]
        if "-" in wid or "." in wid:  # a multi-word token's range, or an empty node
            if not re.fullmatch(r"\d+-\d+|\d+\.\d+", wid):
                raise XLMError(f"{path}:{lineno}: bad ID {wid!r}")
            continue
        if not wid.isdigit() or int(wid) != len(cur.words) + 1:
            raise XLMError(f"{path}:{lineno}: ID {wid!r} where word {len(cur.words) + 1} was expected")
        tag = fields[col]
        if not tag or tag == "_":
            raise XLMError(f"{path}:{lineno}: no {column.upper()} tag")
        if not cur.words:
            cur.where = f"{path}:{lineno}"
        cur.words.append(fields[1])
        cur.labels.append(tag)
    if cur.words:
        out.append(cur)
    return out


def read_tagged(fmt: str, path: str | os.PathLike, column: str = "upos") -> list[TaggedSentence]:
    if fmt == "conll":
        return read_conll(path)
    if fmt == "conllu":
        return read_conllu(path, column)
    raise XLMError(f"data.format: unknown token format {fmt!r}")
