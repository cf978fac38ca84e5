#!/usr/bin/env python
"""Tokenization next to the Moses perl pipeline: speed side by side in one run, and exactness.

Speed: the input is the English msgcorpus text (../shared when present, else the bundled slice)
repeated up to --lines lines. Timed, wall clock, each as a user runs it:

* perl: XLM's ``tools/tokenize.sh`` for a language without a segmenter, with ``-threads`` = the
  cores available (tokenize.sh hard-codes 8)::

    replace-unicode-punctuation.perl | normalize-punctuation.perl -l en | remove-non-printing-char.perl
      | tokenizer.perl -no-escape -threads N -l en

* ours: ``python preprocess.py tokenize --lang en IN OUT`` (one worker process per core).

Both runs start from the same file and write a file; the best of --repeat runs of each is kept
(the machine may be shared) and the ratio ours/perl in lines per second is printed, with whether
the outputs are identical.

Exactness (--check): every msgcorpus file (mono and para, every language; zh with
``--segmenter moses``, i.e. ``tokenizer.perl -l zh``) through both, printing the lines that differ
per language, in bytes (``--moses-whitespace``: the script's exact output) and in tokens (the
default output: single-space-separated tokens).

    PYTHONPATH=. python scripts/bench/tokenize.py --moses /tmp/moses187 [--lines 200000] [--repeat 3] [--check]

--moses: a mosesdecoder tree at 187a75cb5 (see tests/golden/moses/README.md for how to get one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPORA = [ROOT.parent / "shared" / "data" / "msgcorpus", ROOT / "data" / "msgcorpus"]


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def perl_command(moses: Path, lang: str, threads: int) -> str:
    t = moses / "scripts" / "tokenizer"
    return (
        f"perl {t}/replace-unicode-punctuation.perl | perl {t}/normalize-punctuation.perl -l {lang} "
        f"| perl {t}/remove-non-printing-char.perl | perl {t}/tokenizer.perl -no-escape -threads {threads} -l {lang}"
    )


def run_perl(moses: Path, lang: str, src: Path, dst: Path, threads: int) -> float:
    start = time.perf_counter()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        subprocess.run(perl_command(moses, lang, threads), shell=True, stdin=fin, stdout=fout,
                       stderr=subprocess.DEVNULL, check=True)  # fmt: skip
    return time.perf_counter() - start


def run_ours(lang: str, src: Path, dst: Path, *flags: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "preprocess.py"), "tokenize", "--no-progress", "--lang", lang, *flags,
                    str(src), str(dst)], check=True, env=env, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def english_lines(corpus: Path, n: int) -> list[bytes]:
    files = sorted(corpus.glob("mono/*.en")) + sorted(corpus.glob("para/*.en"))
    lines = [line for f in files for line in f.read_bytes().splitlines(keepends=True)]
    return (lines * (n // len(lines) + 1))[:n]


def speed(moses: Path, corpus: Path, n: int, repeat: int, tmp: Path) -> None:
    src = tmp / "input.en"
    src.write_bytes(b"".join(english_lines(corpus, n)))
    threads = cores()
    perl_times, our_times = [], []
    for _ in range(repeat):  # interleaved, so that a busy spell hits both
        perl_times.append(run_perl(moses, "en", src, tmp / "perl.en", threads))
        our_times.append(run_ours("en", src, tmp / "ours.en"))
    perl, ours = (tmp / "perl.en").read_bytes().decode(), (tmp / "ours.en").read_bytes().decode()
    whitespace_only = sum(a != b for a, b in zip(perl.split("\n"), ours.split("\n")))
    same = [a.split() for a in perl.split("\n")] == [b.split(" ") if b else [] for b in ours.split("\n")]
    perl_rate, our_rate = n / min(perl_times), n / min(our_times)
    print(f"input: {n:,} English lines from {corpus}; {threads} cores; best of {repeat}")
    print(f"perl tokenize.sh pipeline (-threads {threads}): {min(perl_times):6.2f} s  {perl_rate:9,.0f} lines/s"
          f"   (runs: {', '.join(f'{t:.2f}' for t in perl_times)})")  # fmt: skip
    print(f"preprocess.py tokenize:                    {min(our_times):6.2f} s  {our_rate:9,.0f} lines/s"
          f"   (runs: {', '.join(f'{t:.2f}' for t in our_times)})")  # fmt: skip
    print(f"ratio ours/perl (lines/s): {our_rate / perl_rate:.2f}x; same tokens on every line: {same} "
          f"({whitespace_only} lines differ in bytes: perl's stray spaces, see --moses-whitespace)")  # fmt: skip


def check(moses: Path, corpus: Path, tmp: Path) -> None:
    total: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # lang -> lines, differing: bytes, tokens, ws
    for path in sorted(corpus.glob("*/*.*")):
        if path.suffix == ".md":
            continue
        lang = path.suffix[1:]
        flags = ["--segmenter", "moses"] if lang in ("zh", "ja", "th") else []
        run_perl(moses, lang, path, tmp / "perl", 2)
        run_ours(lang, path, tmp / "exact", *flags, "--moses-whitespace")
        run_ours(lang, path, tmp / "tokens", *flags)
        perl = (tmp / "perl").read_bytes().decode().split("\n")
        exact = (tmp / "exact").read_bytes().decode().split("\n")
        tokens = (tmp / "tokens").read_bytes().decode().split("\n")
        assert len(perl) == len(exact) == len(tokens), path
        t = total[lang]
        t[0] += len(perl) - 1
        t[1] += sum(a != b for a, b in zip(perl, exact))
        t[2] += sum(a.split() != (b.split(" ") if b else []) for a, b in zip(perl, tokens))
        t[3] += sum(a != b for a, b in zip(perl, tokens))
        print(f"{path.relative_to(corpus)}: {len(perl) - 1} lines, {t[1]} / {t[2]} differing so far in {lang}")
    print("\nlines differing from perl: in bytes with --moses-whitespace; in tokens, and in bytes, by default")
    print("language    lines   bytes (--moses-whitespace)   tokens (default)   bytes (default: stray spaces)")
    for lang, (n, b, k, w) in sorted(total.items()):
        print(f"{lang:8s} {n:8,d}   {b:26d}   {k:16d}   {w:29d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moses", type=Path, default=Path(os.environ.get("MOSES", "/tmp/moses187")))
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="also count differing lines on every msgcorpus file")
    args = ap.parse_args()
    if not (args.moses / "scripts" / "tokenizer" / "tokenizer.perl").is_file():
        sys.exit(f"{args.moses}: no scripts/tokenizer/tokenizer.perl; see tests/golden/moses/README.md")
    corpus = next(c for c in CORPORA if c.is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        speed(args.moses, corpus, args.lines, args.repeat, Path(tmp))
        if args.check:
            check(args.moses, corpus, Path(tmp))


if __name__ == "__main__":
    main()
