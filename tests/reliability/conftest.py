"""Helpers for the bad-input suite: run a real command, check the one-line error, check outputs untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run(*args: str | Path, preexec_fn=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python ARGS...`` from the repo root, as a user would type it."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec_fn)


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr starting with ``error:``, no traceback, naming ``needles``."""
    err = proc.stderr.strip("\n")
    assert proc.returncode != 0, f"expected failure, got 0; stderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err, err
    assert len([line for line in lines if line.startswith("error: ")]) == 1, err
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in {lines[-1]!r}"
    return lines[-1]


def snapshot(*paths: Path) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.exists() else None for p in paths}
