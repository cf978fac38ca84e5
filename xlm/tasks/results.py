"""Results in the papers' layout: one column per language, then their average; Markdown and JSON.

Metric keys are ``{split}_{lang}_{metric}`` (the original's ``glue-xnli.py`` names with the
language inserted: ``test_fr_acc``, ``valid_de_f1``, ``test_zh_em``) and ``{split}_{metric}`` for
the average over languages. A row shows one metric, or several joined by `` / `` in each cell
(MLQA's ``F1 / EM``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xlm.io import atomic_write_text


def add_averages(metrics: dict[str, float], split: str, langs: Sequence[str], names: Sequence[str]) -> None:
    """``{split}_{name}`` = mean over ``langs`` of ``{split}_{lang}_{name}`` (NaN if any is NaN)."""
    for name in names:
        values = [metrics[f"{split}_{lg}_{name}"] for lg in langs if f"{split}_{lg}_{name}" in metrics]
        if values:
            metrics[f"{split}_{name}"] = sum(values) / len(values)


def _cell(values: list[float | None]) -> str:
    return " / ".join("n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}" for v in values)


def table(metrics: dict[str, float], langs: Sequence[str], rows: Sequence[Sequence[str]], title: str,
          splits: Sequence[str] = ("valid", "test")) -> str:
    """Markdown: ``| title | lang1 | ... | avg |`` then one line per (split, row of metric names)."""
    lines = [f"| {title} | " + " | ".join(langs) + " | avg |", "|" + "---|" * (len(langs) + 2)]
    for split in splits:
        for names in rows:
            if not any(f"{split}_{lg}_{n}" in metrics for lg in langs for n in names):
                continue
            cells = [_cell([metrics.get(f"{split}_{lg}_{n}") for n in names]) for lg in langs]
            cells.append(_cell([metrics.get(f"{split}_{n}") for n in names]))
            lines.append(f"| {split} {' / '.join(names)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def save(run_dir: str | Path, result: dict[str, Any]) -> None:
    """``results.json`` (everything) and ``results.md`` (the table), written atomically."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / "results.json", json.dumps(clean(result), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(run_dir / "results.md", result["table"] + "\n")
