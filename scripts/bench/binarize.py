"""Benchmark ``binarize`` against the original ``preprocess.py`` algorithm, and check its memory is flat.

    python scripts/bench/binarize.py                  # >= 5 M words of BPE'd msgcorpus text
    python scripts/bench/binarize.py --words 20000000 --repeat 3

1. Builds BPE'd text once (cached in --work): BPE codes learned on the bundled slice, applied to
   the msgcorpus train files (the full corpus when ../shared/data/msgcorpus exists, else the
   slice), repeated until it holds at least --words words; the vocabulary is counted on it.
2. Times the baseline (written below: the original's per-line split, per-token dictionary
   lookup into Python lists, numpy at the end) and ``xlm.data.binarize.binarize_file`` on it,
   best of --repeat runs each, checks that both produce the same ids, and prints the speed-up.
3. Runs ``preprocess.py binarize`` in a subprocess on the text and on 10 copies of it, reads the
   peak RSS of that process tree (``ru_maxrss`` of the children: the largest of the main process
   and its workers) and prints both and their ratio. A streaming binarizer keeps the ratio near 1.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from xlm.data import bpe  # noqa: E402
from xlm.data.binarize import binarize_file  # noqa: E402
from xlm.data.dictionary import Dictionary  # noqa: E402
from xlm.data.indexed import IndexedDataset, IndexedWriter  # noqa: E402

SLICE = ROOT / "data" / "msgcorpus"
FULL = ROOT.parent / "shared" / "data" / "msgcorpus"


def baseline_binarize(vocab_path: Path, txt_path: Path, prefix: Path) -> None:
    """The original ``preprocess.py`` (``Dictionary.index_data``): Python lists for the whole corpus."""
    dico = Dictionary.read_vocab(vocab_path)
    positions: list[list[int]] = []
    sentences: list[int] = []
    unk_words: dict[str, int] = {}
    with open(txt_path, encoding="utf-8") as f:
        for line in f:
            s = line.rstrip().split()
            count_unk = 0
            indexed = []
            for w in s:
                word_id = dico.index(w)
                if 0 <= word_id < 4 + 10 and word_id != 3:  # special word other than <unk>: skipped
                    continue
                indexed.append(word_id)
                if word_id == dico.unk_index:
                    unk_words[w] = unk_words.get(w, 0) + 1
                    count_unk += 1
            positions.append([len(sentences), len(sentences) + len(indexed)])
            sentences.extend(indexed)
            sentences.append(dico.eos_index)
    pos = np.int64(positions)
    sent = np.uint16(sentences) if len(dico) < 1 << 16 else np.int32(sentences)
    with IndexedWriter(prefix, len(dico), dico.fingerprint()) as writer:  # same output format, to compare
        writer.add_flat(sent, pos[:, 1] + 1)


def build_input(work: Path, n_words: int) -> tuple[Path, Path]:
    """BPE'd msgcorpus text with at least ``n_words`` words, and its vocabulary (cached)."""
    text, vocab = work / f"bpe.{n_words}.txt", work / f"vocab.{n_words}"
    if text.exists() and vocab.exists():
        return text, vocab
    work.mkdir(parents=True, exist_ok=True)
    codes = work / "codes"
    if not codes.exists():
        print("learning 10,000 BPE codes on the bundled slice ...", file=sys.stderr)
        bpe.learn_bpe([SLICE / "mono" / "train.en", SLICE / "mono" / "train.fr"], 10_000, codes, progress=False)
    corpus = FULL if FULL.is_dir() else SLICE
    once = work / "bpe.once.txt"
    with open(once, "wb") as out:
        for lang in ("en", "fr", "de", "zh"):
            part = work / f"bpe.{lang}"
            bpe.apply_bpe_file(codes, corpus / "mono" / f"train.{lang}", part, progress=False)
            out.write(part.read_bytes())
            part.unlink()
    data = once.read_bytes()
    words = len(data.split())
    with open(text, "wb") as out:
        for _ in range(-(-n_words // words)):
            out.write(data)
    bpe.get_vocab([text], vocab, progress=False)
    return text, vocab


def count_words(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            n += len(block.split())  # a word cut at a block edge counts twice: close enough
    return n


def best_time(fn, repeat: int) -> tuple[float, float]:
    """Best wall-clock and CPU seconds over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), cpu_seconds()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_seconds() - c)
    return min(walls), min(cpus)


# Measured from a fresh, small helper process: a child forked from this (big) benchmark process
# would report this process's memory as its own peak before it execs.
_RSS_HELPER = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_kb(vocab: Path, text: Path, prefix: Path, workers: int | None) -> int:
    """Peak RSS (KiB) of ``preprocess.py binarize``: the largest of its main process and its workers."""
    cmd = [sys.executable, str(ROOT / "preprocess.py"), "binarize", "--vocab", str(vocab), str(text), str(prefix)]
    cmd += ["--no-progress"] + (["--workers", str(workers)] if workers else [])
    rc, rss = subprocess.run([sys.executable, "-c", _RSS_HELPER, *cmd], capture_output=True, text=True).stdout.split()
    if rc != "0":
        raise SystemExit(f"binarize failed with exit code {rc}")
    return int(rss)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the binarize workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=5_000_000, help="minimum words in the benchmark text")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each; the best counts")
    parser.add_argument("--workers", type=int, default=None, help="binarize workers (default: one per core)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/xlm-bench-binarize"), help="cache folder")
    parser.add_argument("--skip-rss", action="store_true", help="skip the 1x/10x memory measurement")
    args = parser.parse_args()

    text, vocab = build_input(args.work, args.words)
    n_words = count_words(text)
    size_mb = text.stat().st_size / 2**20
    print(
        f"input: {text} ({size_mb:.0f} MiB, ~{n_words / 1e6:.1f} M words), vocab {len(Dictionary.read_vocab(vocab))} "
        f"words, {os.cpu_count()} CPUs"
    )
    out = args.work / "out"
    shutil.rmtree(out, ignore_errors=True)
    t_base, cpu_base = best_time(lambda: baseline_binarize(vocab, text, out / "base" / "train"), args.repeat)
    t_ours, cpu_ours = best_time(
        lambda: binarize_file(vocab, text, out / "ours" / "train", workers=args.workers), args.repeat
    )
    base, ours = IndexedDataset(out / "base" / "train"), IndexedDataset(out / "ours" / "train")
    same = np.array_equal(base.tokens, ours.tokens) and np.array_equal(base.offsets, ours.offsets)
    print(
        f"baseline (original algorithm): {t_base:.2f} s ({n_words / t_base / 1e6:.2f} M words/s), CPU {cpu_base:.2f} s"
    )
    print(
        f"xlm binarize:                  {t_ours:.2f} s ({n_words / t_ours / 1e6:.2f} M words/s), CPU {cpu_ours:.2f} s"
    )
    print(f"speed-up: {t_base / t_ours:.1f}x wall clock, {cpu_base / cpu_ours:.1f}x CPU time; identical output: {same}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (other processes slow both sides)")

    if not args.skip_rss:
        big = args.work / "bpe.x10.txt"
        if not big.exists() or big.stat().st_size != 10 * text.stat().st_size:
            with open(big, "wb") as f:
                for _ in range(10):
                    with open(text, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 24)
        rss1 = peak_rss_kb(vocab, text, out / "rss1" / "train", args.workers)
        rss10 = peak_rss_kb(vocab, big, out / "rss10" / "train", args.workers)
        print(
            f"peak RSS: 1x input {rss1 / 1024:.0f} MiB, 10x input ({10 * size_mb:.0f} MiB) {rss10 / 1024:.0f} MiB, "
            f"ratio {rss10 / rss1:.2f}"
        )
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
