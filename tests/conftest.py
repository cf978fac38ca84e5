"""Shared fixtures: paths to the bundled corpus slice and small helpers used across test files."""

from __future__ import annotations

import os
import re
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


@pytest.fixture(scope="module")
def single_thread():
    """One torch/OpenMP thread for a module's tests (``pytestmark = pytest.mark.usefixtures("single_thread")``):
    tiny models gain nothing from a second thread, and threads collapse on a busy 2-core machine."""
    from training_data import one_thread

    with one_thread():
        yield


@pytest.fixture
def slice_dir() -> Path:
    return SLICE


def corpus_dir() -> Path:
    """The full msgcorpus when shared/ is beside the repo (CI), else the bundled slice."""
    return SHARED_CORPUS if SHARED_CORPUS.is_dir() else SLICE


def pytest_terminal_summary(terminalreporter) -> None:
    """The code blocks of README.md and docs/ that tests/test_docs.py skipped, counted by reason.

    Read from the documents themselves (the markers are static), so that the count is printed by
    the process that reports, also when pytest-xdist ran the docs test in a worker.
    """
    import test_docs as docs

    # nodeids of the docs tests that ran (pytest-xdist's loadgroup appends "@docs" to them)
    ran = {m.group(1) for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])
           if (m := re.match(r"tests/test_docs\.py::test_code_blocks_run\[(.+?)\]", getattr(r, "nodeid", "")))}
    if not ran:
        return
    skipped = [(b.where, b.skip) for doc in docs.DOCUMENTS if docs.doc_id(doc) in ran
               for b in docs.blocks(doc) if b.skip and b.lang in docs.RUNNABLE]
    by_reason: dict[str, list[str]] = {}
    for where, reason in skipped:
        by_reason.setdefault(reason, []).append(where)
    terminalreporter.write_line(f"docs code blocks skipped: {len(skipped)}")
    for reason, places in sorted(by_reason.items()):
        terminalreporter.write_line(f"  {reason} ({docs.SKIP_REASONS[reason]}): {len(places)}: {', '.join(places)}")
