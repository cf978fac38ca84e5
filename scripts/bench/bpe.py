#!/usr/bin/env python
"""BPE pipeline speed: xlm.data.bpe next to fastBPE, timed side by side in one run.

The input is msgcorpus training text (../shared when present, else the bundled slice) repeated
until it holds at least --words words, written to a temporary folder. Each row times our
function and its fastBPE counterpart on the same files and prints ours/fastBPE (below 1 means
we are faster) and whether the outputs are identical.

Baselines: the compiled `fast` CLI (--fast PATH, `fast` on PATH, or compiled here from the
fastBPE sdist given by --sdist when g++ is present) for learnbpe/applybpe/getvocab, and the
fastBPE Python package for apply. Missing baselines are reported, not faked.

    PYTHONPATH=. python scripts/bench/bpe.py [--words 5000000] [--codes 20000] [--repeat 1]

To add rows (e.g. binarize), append Row(...) objects in `build_rows`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from xlm.data.bpe import BPE, apply_bpe_file, get_vocab, learn_bpe  # noqa: E402
from xlm.data.textio import resolve_workers  # noqa: E402

CORPORA = [ROOT.parent / "shared" / "data" / "msgcorpus", ROOT / "data" / "msgcorpus"]
DEFAULT_SDISTS = [Path("/tmp/fbsrc/fastBPE-0.1.0.tar.gz")]


@dataclass
class Row:
    """One comparison: ``ours`` and ``baseline`` each do the whole job; ``outputs`` are compared after."""

    name: str
    ours: Callable[[], None]
    baseline: Callable[[], None] | None
    outputs: tuple[Path, Path] | None = None
    note: str = ""
    prepare: Callable[[], None] | None = None  # untimed setup, run just before the row


@dataclass
class Context:
    tmp: Path
    text: Path
    n_words: int
    n_codes: int
    workers: int
    fast: Path | None
    fastbpe_package: object | None  # the imported fastBPE module, if installed


def build_input(tmp: Path, min_words: int) -> tuple[Path, int]:
    corpus = next(c for c in CORPORA if c.is_dir())
    one = b"".join(p.read_bytes() for p in sorted(corpus.glob("*/train.*")))
    per_copy = len(one.split())
    copies = max(1, -(-min_words // per_copy))
    text = tmp / "train.txt"
    with open(text, "wb") as f:
        for _ in range(copies):
            f.write(one)
    print(f"input: {corpus} train files x{copies} = {per_copy * copies:,} words, {text.stat().st_size / 1e6:.1f} MB")
    return text, per_copy * copies


def find_fast(args: argparse.Namespace, tmp: Path) -> Path | None:
    if args.fast:
        return Path(args.fast)
    if shutil.which("fast"):
        return Path(shutil.which("fast"))
    sdist = Path(args.sdist) if args.sdist else next((p for p in DEFAULT_SDISTS if p.is_file()), None)
    if sdist is None or not shutil.which("g++"):
        print("fastBPE `fast` CLI: not available (give --fast, or --sdist with g++ installed); its rows are skipped")
        return None
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "sdist", filter="data")
    src = next((tmp / "sdist").glob("fastBPE-*/fastBPE"))
    out = tmp / "fast"
    cmd = ["g++", "-std=c++11", "-pthread", "-O3", str(src / "main.cc"), f"-I{src}", "-o", str(out)]
    subprocess.run(cmd, check=True)
    print(f"fastBPE `fast` CLI: compiled from {sdist}")
    return out


def fast_cmd(ctx: Context, *args: object, stdout: Path | None = None) -> Callable[[], None]:
    def run() -> None:
        with open(stdout or os.devnull, "wb") as out:
            subprocess.run([str(ctx.fast), *map(str, args)], check=True, stdout=out, stderr=subprocess.DEVNULL)

    return run


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def package_apply(ctx: Context, codes: Path, output: Path) -> Callable[[], None]:
    def run() -> None:
        with quiet_stderr():  # the C++ side prints progress to fd 2
            bpe = ctx.fastbpe_package.fastBPE(str(codes))
        lines = ctx.text.read_text(encoding="utf-8").split("\n")
        output.write_text("\n".join(bpe.apply(lines)), encoding="utf-8")

    return run


def build_rows(ctx: Context) -> list[Row]:
    t = ctx.tmp
    w = ctx.workers
    rows = [
        Row(
            f"learn-bpe {ctx.n_codes}",
            lambda: learn_bpe([ctx.text], ctx.n_codes, t / "codes.ours", progress=False, workers=w),
            fast_cmd(ctx, "learnbpe", ctx.n_codes, ctx.text, stdout=t / "codes.fast") if ctx.fast else None,
            note="outputs differ where counts tie",
        ),
    ]
    # apply rows use fastBPE's codes when it ran (else ours): both sides get the same codes file
    codes = t / "codes.fast" if ctx.fast else t / "codes.ours"
    rows.append(
        Row(
            "apply-bpe",
            lambda: apply_bpe_file(codes, ctx.text, t / "bpe.ours", progress=False, workers=w),
            fast_cmd(ctx, "applybpe", t / "bpe.fast", ctx.text, codes) if ctx.fast else None,
            (t / "bpe.ours", t / "bpe.fast"),
        )
    )
    rows.append(
        Row(
            "apply-bpe, pure Python",
            lambda: apply_bpe_file(BPE(codes, accelerate=False), ctx.text, t / "bpe.pure", progress=False, workers=w),
            fast_cmd(ctx, "applybpe", t / "bpe.fast", ctx.text, codes) if ctx.fast else None,
            (t / "bpe.pure", t / "bpe.fast"),
            note="tokenizers accelerator off",
        )
    )
    rows.append(
        Row(
            "apply-bpe vs fastBPE package",
            lambda: apply_bpe_file(codes, ctx.text, t / "bpe.ours", progress=False, workers=w),
            package_apply(ctx, codes, t / "bpe.pkg") if ctx.fastbpe_package else None,
            note="package collapses runs of spaces; outputs not compared",
        )
    )
    rows.append(
        Row(
            "get-vocab (of BPE text)",
            lambda: get_vocab([t / "bpe.ours"], t / "vocab.ours", progress=False, workers=w),
            fast_cmd(ctx, "getvocab", t / "bpe.ours", stdout=t / "vocab.fast") if ctx.fast else None,
            (t / "vocab.ours", t / "vocab.fast"),
        )
    )
    vocab = t / "vocab.small"

    def small_vocab() -> None:
        vocab.write_bytes(b"".join((t / "vocab.ours").read_bytes().splitlines(keepends=True)[:5000]))

    rows.append(
        Row(
            "apply-bpe with vocab",
            lambda: apply_bpe_file(BPE(codes, vocab), ctx.text, t / "bpev.ours", progress=False, workers=w),
            fast_cmd(ctx, "applybpe", t / "bpev.fast", ctx.text, codes, vocab) if ctx.fast else None,
            (t / "bpev.ours", t / "bpev.fast"),
            note="vocab: the 5,000 most frequent pieces",
            prepare=small_vocab,
        )
    )
    return rows


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (our pool workers, the `fast` runs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], None], repeat: int) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        fn()
        best = min(best, (time.perf_counter() - start, cpu_seconds() - start_cpu))
    return best


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=5_000_000, help="minimum input size in words")
    parser.add_argument("--codes", type=int, default=20_000, help="number of merges to learn")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the fastest counts")
    parser.add_argument("--workers", type=int, default=None, help="our processes (default: one per core)")
    parser.add_argument("--fast", help="fastBPE `fast` binary")
    parser.add_argument("--sdist", help="fastBPE sdist to compile `fast` from")
    args = parser.parse_args()
    try:
        import fastBPE as package
    except ImportError:
        package = None
        print("fastBPE Python package: not installed; its row is skipped")

    with tempfile.TemporaryDirectory(prefix="xlm-bench-bpe-") as tmp_name:
        tmp = Path(tmp_name)
        text, n_words = build_input(tmp, args.words)
        workers = args.workers or resolve_workers(None)
        ctx = Context(tmp, text, n_words, args.codes, workers, find_fast(args, tmp), package)
        print(f"cores: {os.cpu_count()}, our workers: {ctx.workers}, load average: {os.getloadavg()[0]:.1f}")
        print("wall = elapsed seconds; cpu = CPU seconds of all processes (less sensitive to a busy machine)\n")
        print(
            f"{'task':30} {'xlm':>7} {'fastBPE':>8} {'ratio':>6} {'xlm cpu':>8} {'fBPE cpu':>8} {'ratio':>6}  outputs"
        )
        for row in build_rows(ctx):
            if row.prepare:
                row.prepare()
            ours = timed(row.ours, args.repeat)
            base = timed(row.baseline, args.repeat) if row.baseline else None
            same = ""
            if row.outputs and base is not None:
                same = "identical" if digest(row.outputs[0]) == digest(row.outputs[1]) else "DIFFERENT"
            if base is None:
                cells = f"{ours[0]:7.2f} {'n/a':>8} {'':>6} {ours[1]:8.2f} {'n/a':>8} {'':>6}"
            else:
                wall, cpu = ours[0] / base[0], ours[1] / base[1]
                cells = f"{ours[0]:7.2f} {base[0]:8.2f} {wall:6.2f} {ours[1]:8.2f} {base[1]:8.2f} {cpu:6.2f}"
            print(f"{row.name:30} {cells}  {same} {row.note}".rstrip(), flush=True)


if __name__ == "__main__":
    main()
