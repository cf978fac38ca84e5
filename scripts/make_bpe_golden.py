#!/usr/bin/env python
"""Regenerate tests/golden/bpe/ from fastBPE itself (the `fast` CLI and the `fastBPE` package).

The tests compare xlm.data.bpe against these files, so they run where fastBPE cannot be installed.
Run again whenever data/msgcorpus changes:

    python scripts/make_bpe_golden.py --fast /path/to/fast            # or --sdist fastBPE-0.1.0.tar.gz

What is written (all produced by fastBPE, nothing by xlm):
  train.sha256       sha256 of the learn input: the bundled slice's train files concatenated
  codes.txt          `fast learnbpe 2000` on that input (also the codes every apply golden uses)
  vocab.txt          the 1000 most frequent pieces of `fast getvocab` on the BPE'd input: a vocab
                     small enough that restricted apply must split many words back
  sample.txt         a few lines of every bundled file, with `sample.bpe` / `sample.vocab.bpe` from
                     `fast applybpe` without / with vocab.txt (line-level, for diagnosable failures)
  edge.txt           hand-made edge cases (spaces, tabs, NBSP, NUL, CR, CJK, unseen chars, a long
                     line); `edge.bpe` from `fast applybpe`; `edge.lines.json` from the fastBPE
                     package's `apply` per line, without and with the vocab (the CLI aborts on NUL
                     words with a vocab, the package does not)
  outputs.json       for every file of data/msgcorpus and ../shared/data/msgcorpus (when present),
                     keyed by the sha256 of its content: sha256 of `fast applybpe` without and with
                     vocab.txt, and of `fast getvocab`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "bpe"
SLICE = ROOT / "data" / "msgcorpus"
SHARED = ROOT.parent / "shared" / "data" / "msgcorpus"
N_CODES = 2000
N_VOCAB = 1000
SAMPLE_LINES = 6

EDGE_LINES = [
    "",
    "   ",
    "plain words here",
    "  leading and trailing spaces  ",
    "multiple    spaces   between words",
    "tab\tinside\tone word",
    "no\u00a0break\u00a0space inside",
    "nul\0inside a\0 word \0first x\0",
    "carriage\rreturn inside",
    "中文没有空格的句子，包括标点。 和 日本語のテキスト",
    "한국어 텍스트 와 emoji 🦜🦜 and unseen ʬʭ ꙮ chars",
    "combining e\u0301 and precomposed é",
    "literal </w> and @@ and @@@ in text",
    "a" * 300 + " " + "ab" * 200,
    " ".join(f"word{i % 97}" for i in range(800)),
    "",
    "end",
]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_fast(args: argparse.Namespace, tmp: Path) -> Path:
    if args.fast:
        return Path(args.fast)
    if not args.sdist:
        found = shutil.which("fast")
        if found:
            return Path(found)
        sys.exit("need --fast PATH or --sdist fastBPE-*.tar.gz (pip download fastbpe --no-deps --no-binary :all:)")
    with tarfile.open(args.sdist) as tar:
        tar.extractall(tmp, filter="data")
    src = next(tmp.glob("fastBPE-*/fastBPE"))
    out = tmp / "fast"
    cmd = ["g++", "-std=c++11", "-pthread", "-O3", str(src / "main.cc"), f"-I{src}", "-o", str(out)]
    subprocess.run(cmd, check=True)
    return out


def run(fast: Path, *args: str | Path) -> bytes:
    return subprocess.run([str(fast), *map(str, args)], check=True, capture_output=True).stdout


def apply_cli(fast: Path, tmp: Path, text: Path, vocab: Path | None = None) -> bytes:
    out = tmp / "applied"
    run(fast, "applybpe", out, text, GOLDEN / "codes.txt", *([vocab] if vocab else []))
    return out.read_bytes()


def corpus_files() -> list[Path]:
    files = sorted(p for p in SLICE.glob("*/*") if p.is_file())
    if SHARED.is_dir():
        files += sorted(p for p in SHARED.glob("*/*") if p.is_file())
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", help="the compiled fastBPE `fast` CLI")
    parser.add_argument("--sdist", help="fastBPE sdist to compile `fast` from (needs g++)")
    args = parser.parse_args()
    import fastBPE  # the package: needed for the per-line goldens

    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fast = find_fast(args, tmp)

        train = tmp / "train.txt"
        train.write_bytes(b"".join(p.read_bytes() for p in sorted(SLICE.glob("*/train.*"))))
        (GOLDEN / "train.sha256").write_text(sha256(train.read_bytes()) + "\n")
        (GOLDEN / "codes.txt").write_bytes(run(fast, "learnbpe", N_CODES, train))
        train_bpe = tmp / "train.bpe"
        train_bpe.write_bytes(apply_cli(fast, tmp, train))
        vocab_lines = run(fast, "getvocab", train_bpe).splitlines(keepends=True)[:N_VOCAB]
        vocab = GOLDEN / "vocab.txt"
        vocab.write_bytes(b"".join(vocab_lines))

        sample = GOLDEN / "sample.txt"
        lines = []
        for path in sorted(SLICE.glob("*/*")):
            lines += path.read_bytes().splitlines(keepends=True)[:SAMPLE_LINES]
        sample.write_bytes(b"".join(lines))
        (GOLDEN / "sample.bpe").write_bytes(apply_cli(fast, tmp, sample))
        (GOLDEN / "sample.vocab.bpe").write_bytes(apply_cli(fast, tmp, sample, vocab))

        edge = GOLDEN / "edge.txt"
        edge.write_bytes("".join(line + "\n" for line in EDGE_LINES).encode("utf-8"))
        (GOLDEN / "edge.bpe").write_bytes(apply_cli(fast, tmp, edge))
        plain = fastBPE.fastBPE(str(GOLDEN / "codes.txt"))
        restricted = fastBPE.fastBPE(str(GOLDEN / "codes.txt"), str(vocab))
        per_line = {"lines": EDGE_LINES, "plain": plain.apply(EDGE_LINES), "vocab": restricted.apply(EDGE_LINES)}
        (GOLDEN / "edge.lines.json").write_text(json.dumps(per_line, ensure_ascii=False, indent=0) + "\n")

        outputs = {}
        for path in corpus_files():
            data = path.read_bytes()
            outputs[sha256(data)] = {
                "file": str(path.relative_to(ROOT.parent)),
                "apply": sha256(apply_cli(fast, tmp, path)),
                "apply_vocab": sha256(apply_cli(fast, tmp, path, vocab)),
                "getvocab": sha256(run(fast, "getvocab", path)),
            }
            print(f"{path}: done", file=sys.stderr)
        (GOLDEN / "outputs.json").write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
