"""Every ``bash`` and ``python`` code block of README.md and docs/*.md runs, as written, on the bundled slice.

The blocks of all documents run in order (README first, then docs/ by name) in one copy of the
repository, as a reader would type them one after the other. A block is skipped only when the line
just before it is a marker from this closed list (:data:`SKIP_REASONS`)::

    <!-- docs-test: skip gpu -->

The skips are counted and printed at the end of the test session (tests/conftest.py). Under
pytest-xdist all documents run in one worker (``xdist_group``, ``--dist loadgroup`` in pytest.ini),
so that the order holds. One thing differs from a reader's
machine, and only in scale: in the copy, ``configs/tiny.yaml`` trains for 20 steps instead of 400, so
that the commands built on it run in seconds (the full run is the README's quick start; ``.ci/run``
runs that command itself, in a fresh virtual environment).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"bash": "bash", "sh": "bash", "python": "python"}
SKIP_REASONS = {
    "gpu": "needs a CUDA GPU",
    "cluster": "needs several machines or a SLURM scheduler",
    "external-data": "needs files that are not bundled (released checkpoints, XNLI, ...)",
    "experiment": "a full reproduction of a README table (CPU-hours); tests run the same code at a small scale",
    "ci": ".ci/run runs it itself (installation, the test suite)",
}
MARKER = re.compile(r"<!--\s*docs-test:\s*skip\s+([\w-]+)\s*(.*?)-->")
TIMEOUT = 600


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    code: str
    skip: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the skip marker just above each, if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(```+)\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence.group(1)):
            body.append(lines[i])
            i += 1
        i += 1
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(prev)
        out.append(Block(path, start + 1, fence.group(2).lower(), "\n".join(body) + "\n",
                         marker.group(1) if marker else ""))
    return out


def test_every_skip_marker_is_from_the_closed_list():
    for doc in DOCUMENTS:
        for b in blocks(doc):
            assert not b.skip or b.skip in SKIP_REASONS, f"{b.where}: unknown docs-test marker {b.skip!r}"
            assert not b.skip or b.lang in RUNNABLE, f"{b.where}: a marker on a block that would not run anyway"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The repository as a fresh clone has it (tracked and untracked-not-ignored files), nothing generated."""
    dest = tmp_path_factory.mktemp("docs") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    tiny = dest / "configs" / "tiny.yaml"
    cfg = yaml.safe_load(tiny.read_text(encoding="utf-8"))
    cfg["train"].update(max_steps=20, eval_every=10, save_every=10)
    tiny.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return dest


def _run(block: Block, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(cwd), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if RUNNABLE[block.lang] == "python":
        cmd = [sys.executable, "-c", block.code]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        pytest.fail(f"{block.where}: the {block.lang} block failed (exit {proc.returncode}):\n{block.code}\n{tail}")


def doc_id(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


@pytest.mark.xdist_group("docs")
@pytest.mark.parametrize("doc", DOCUMENTS, ids=[doc_id(d) for d in DOCUMENTS])
def test_code_blocks_run(doc, copy):
    for block in blocks(doc):
        if block.lang in RUNNABLE and not block.skip:
            _run(block, copy)
