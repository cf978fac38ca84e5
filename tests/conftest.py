"""Shared fixtures: paths to the bundled corpus slice and small helpers used across test files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SLICE = ROOT / "data" / "msgcorpus"
SHARED_CORPUS = ROOT.parent / "shared" / "data" / "msgcorpus"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def slice_dir() -> Path:
    return SLICE


def corpus_dir() -> Path:
    """The full msgcorpus when shared/ is beside the repo (CI), else the bundled slice."""
    return SHARED_CORPUS if SHARED_CORPUS.is_dir() else SLICE


def pytest_terminal_summary(terminalreporter) -> None:
    """The code blocks of README.md and docs/ that tests/test_docs.py skipped, counted by reason."""
    docs = sys.modules.get("test_docs")
    if docs is None or not docs.SKIPPED:
        return
    by_reason: dict[str, list[str]] = {}
    for where, reason in docs.SKIPPED:
        by_reason.setdefault(reason, []).append(where)
    terminalreporter.write_line(f"docs code blocks skipped: {len(docs.SKIPPED)}")
    for reason, places in sorted(by_reason.items()):
        terminalreporter.write_line(f"  {reason} ({docs.SKIP_REASONS[reason]}): {len(places)}: {', '.join(places)}")
