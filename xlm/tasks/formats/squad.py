"""Reader for SQuAD v1.1 JSON, the format MLQA and XQuAD ship in.

``{"version": ..., "data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id": ...,
"question": ..., "answers": [{"text": ..., "answer_start": ...}]}]}]}]}``.

Invalid JSON is an error naming the file and line; so is a missing or mistyped field (the file is
parsed a second time, keeping positions, to find the line of the offending object). An answer
whose ``answer_start`` does not point at its ``text`` in the context (SQuAD has a few) cannot be
a training target: it is kept for evaluation (which compares texts) and counted.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlm.errors import XLMError


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)  # (text, answer_start), starts in characters

    def answer_found(self, k: int) -> bool:
        text, start = self.answers[k]
        return self.context[start : start + len(text)] == text


class _Bad(Exception):
    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path = path


class _LineDict(dict):
    line = 0


def _parse_with_lines(text: str) -> Any:
    """``json.loads`` whose objects know the line they start on (slow: only used to report an error)."""
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    decoder = json.JSONDecoder()

    def parse_object(s_and_end, *args):
        obj, end = json.decoder.JSONObject(s_and_end, *args)
        out = _LineDict(obj)
        out.line = bisect.bisect_left(newlines, s_and_end[1]) + 1
        return out, end

    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    return decoder.decode(text)


def _get(obj: Any, key: str, kind: type | tuple[type, ...], path: tuple) -> Any:
    if not isinstance(obj, dict):
        raise _Bad(path, "expected an object")
    if key not in obj:
        raise _Bad(path, f"missing {key!r}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise _Bad(path, f"{key!r} should be {names}, got {type(value).__name__}")
    return value


def _examples(doc: Any) -> list[QAExample]:
    out = []
    for i, article in enumerate(_get(doc, "data", list, ())):
        for j, para in enumerate(_get(article, "paragraphs", list, ("data", i))):
            where = ("data", i, "paragraphs", j)
            context = _get(para, "context", str, where)
            for k, qa in enumerate(_get(para, "qas", list, where)):
                qwhere = (*where, "qas", k)
                ex = QAExample(str(_get(qa, "id", (str, int), qwhere)), _get(qa, "question", str, qwhere), context)
                for m, ans in enumerate(_get(qa, "answers", list, qwhere)):
                    awhere = (*qwhere, "answers", m)
                    ex.answers.append((_get(ans, "text", str, awhere), _get(ans, "answer_start", int, awhere)))
                if not ex.answers:
                    raise _Bad(qwhere, "no answers (SQuAD v1.1 questions all have one)")
                out.append(ex)
    return out


def _describe(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "top level"


def read_squad(path: str | os.PathLike) -> list[QAExample]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise XLMError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise XLMError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise XLMError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    try:
        examples = _examples(doc)
    except _Bad as bad:
        node: Any = _parse_with_lines(text)
        line = getattr(node, "line", 1)
        for p in bad.path:  # walk down to the offending object, remembering the deepest line known
            node = node[p]
            line = getattr(node, "line", line)
        raise XLMError(f"{path}:{line}: {_describe(bad.path)}: {bad}") from None
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise XLMError(f"{path}: question id {ex.id!r} appears twice")
        seen.add(ex.id)
    return examples
