"""Readers for sentence(-pair) tasks in the files the benchmarks distribute.

- ``xnli``: XNLI-1.0 ``xnli.dev.tsv`` / ``xnli.test.tsv`` (all languages in one file; a header with
  ``language``, ``gold_label``, ``sentence1``, ``sentence2``; rows of ``lang`` kept) and XNLI-MT-1.0
  ``multinli.train.{lang}.tsv`` (header ``premise hypo label``; ``contradictory`` read as
  ``contradiction``, as the original's ``get-data-xnli.sh``).
- ``pawsx``: PAWS-X ``{lang}/dev_2k.tsv``, ``test_2k.tsv``, ``translated_train.tsv`` (``en/train.tsv``):
  header ``id sentence1 sentence2 label``.
- ``tsv``: GLUE-style TSV, columns chosen by header name or 0-based index (``columns``:
  ``text_a``, optional ``text_b``, ``label``).

Lines are split on tabs only, with no quoting (the original cut them with ``cut -f``). A line
with too few fields is an error naming ``file:line`` (or, with ``skip_malformed``, skipped and
counted). Pairs with an empty side are dropped, as the original's ``ParallelDataset`` drops them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xlm.errors import XLMError

XNLI_LABELS = ["contradiction", "neutral", "entailment"]  # the original's label2id order (xnli.py)
PAWSX_LABELS = ["0", "1"]
FORMAT_FILES = {
    "xnli": {"train": "XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv", "valid": "XNLI-1.0/xnli.dev.tsv",
             "test": "XNLI-1.0/xnli.test.tsv"},
    "pawsx": {"train": "{lang}/translated_train.tsv", "valid": "{lang}/dev_2k.tsv", "test": "{lang}/test_2k.tsv"},
    "tsv": {"train": "train.{lang}.tsv", "valid": "valid.{lang}.tsv", "test": "test.{lang}.tsv"},
}
FORMAT_FILES_BY_LANG = {"pawsx": {"en": {"train": "en/train.tsv"}}}


@dataclass
class SentenceExample:
    text_a: str
    text_b: str | None
    label: str
    where: str  # file:line, for messages


@dataclass
class ReadStats:
    malformed: int = 0
    empty: int = 0


def _lines(path: Path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for lineno, line in enumerate(f, 1):
                yield lineno, line.rstrip("\n").removesuffix("\r")
    except FileNotFoundError:
        raise XLMError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise XLMError(f"{path}: invalid UTF-8 at byte {e.start}") from None


def _column_index(header: list[str] | None, spec: str, role: str, path: Path) -> int:
    if header is None:
        if not spec.isdigit():
            raise XLMError(f"data.columns.{role}: {spec!r} must be a 0-based column index when data.header is false")
        return int(spec)
    if spec in header:
        return header.index(spec)
    if spec.isdigit():
        return int(spec)
    raise XLMError(f"{path}:1: no column {spec!r} for data.columns.{role} in the header {header}")


def read_tsv(path: str | os.PathLike, columns: dict[str, str], header: bool, *, lang_filter: tuple[str, str] | None
             = None, label_map: dict[str, str] | None = None, skip_malformed: bool = False,
             stats: ReadStats | None = None) -> list[SentenceExample]:
    """Examples of a TSV file: ``columns`` maps ``text_a``/``text_b``/``label`` to a header name or an index.

    ``lang_filter=(column, lang)`` keeps the rows whose ``column`` is ``lang`` (XNLI-1.0).
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    unknown = set(columns) - {"text_a", "text_b", "label"}
    if unknown or "text_a" not in columns or "label" not in columns:
        raise XLMError(f"data.columns: expected text_a, label and optionally text_b, got {sorted(columns)}")
    out: list[SentenceExample] = []
    head: list[str] | None = None
    idx: dict[str, int] = {}
    lang_col = -1
    for lineno, line in _lines(path):
        fields = line.split("\t")
        if header and lineno == 1:
            head = fields
            idx = {role: _column_index(head, spec, role, path) for role, spec in columns.items()}
            if lang_filter is not None:
                if lang_filter[0] not in head:
                    raise XLMError(f"{path}:1: no {lang_filter[0]!r} column in the header")
                lang_col = head.index(lang_filter[0])
            continue
        if not idx:
            idx = {role: _column_index(None, spec, role, path) for role, spec in columns.items()}
        if not line:
            continue
        need = max(max(idx.values()), lang_col) + 1
        if len(fields) < need:
            if skip_malformed:
                stats.malformed += 1
                continue
            raise XLMError(f"{path}:{lineno}: expected at least {need} tab-separated fields, got {len(fields)}")
        if lang_filter is not None and fields[lang_col] != lang_filter[1]:
            continue
        a = fields[idx["text_a"]]
        b = fields[idx["text_b"]] if "text_b" in idx else None
        if not a.strip() or (b is not None and not b.strip()):
            stats.empty += 1
            continue
        label = fields[idx["label"]].strip()
        if label_map:
            label = label_map.get(label, label)
        out.append(SentenceExample(a, b, label, f"{path}:{lineno}"))
    if header and head is None:
        raise XLMError(f"{path}: empty file (expected a header line)")
    return out


def read_examples(fmt: str, path: str | os.PathLike, lang: str, *, columns: dict[str, str] | None = None,
                  header: bool = False, skip_malformed: bool = False,
                  stats: ReadStats | None = None) -> list[SentenceExample]:
    """One split of one language in format ``fmt`` (``xnli``, ``pawsx``, ``tsv``)."""
    if fmt == "xnli":
        first = _first_line(Path(path))
        if "language" in first.split("\t"):  # XNLI-1.0: every language in one file
            return read_tsv(path, {"text_a": "sentence1", "text_b": "sentence2", "label": "gold_label"}, True,
                            lang_filter=("language", lang), skip_malformed=skip_malformed, stats=stats)
        return read_tsv(path, {"text_a": "premise", "text_b": "hypo", "label": "label"}, True,
                        label_map={"contradictory": "contradiction"}, skip_malformed=skip_malformed, stats=stats)
    if fmt == "pawsx":
        return read_tsv(path, {"text_a": "sentence1", "text_b": "sentence2", "label": "label"}, True,
                        skip_malformed=skip_malformed, stats=stats)
    if fmt == "tsv":
        cols = columns or {"text_a": "0", "text_b": "1", "label": "2"}
        return read_tsv(path, cols, header, skip_malformed=skip_malformed, stats=stats)
    raise XLMError(f"data.format: unknown sentence format {fmt!r}")


def _first_line(path: Path) -> str:
    for _, line in _lines(path):
        return line
    raise XLMError(f"{path}: empty file (expected a header line)")
