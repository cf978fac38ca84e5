"""Derive BUCC-style mining sets from the bundled parallel data (docs/downstream.md).

For ``xx`` in fr, zh and each of the ``valid`` (written as BUCC's ``sample``, whose gold pairs choose
the threshold) and ``test`` splits of ``data/msgcorpus/para/{split}.en-xx.*``, the aligned pairs are
cut in three equal parts: the first third stays as translation pairs (the gold), the French or
Chinese side of the second third and the English side of the last third are added as sentences
with no translation on the other side. The lines of each side are shuffled and get BUCC ids, so
the files read as BUCC 2018's ``xx-en.{sample,test}.{xx,en,gold}``.

    python scripts/make_bucc_task.py --out data/processed/msgcorpus_bucc
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xlm.io import atomic_write_text  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(ROOT / "data" / "msgcorpus" / "para"))
    ap.add_argument("--out", default="data/processed/msgcorpus_bucc")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out, corpus = Path(args.out), Path(args.corpus)
    for lang in ("fr", "zh"):
        for split, name in (("valid", "sample"), ("test", "test")):
            en = (corpus / f"{split}.en-{lang}.en").read_text(encoding="utf-8").splitlines()
            xx = (corpus / f"{split}.en-{lang}.{lang}").read_text(encoding="utf-8").splitlines()
            third = len(en) // 3
            rng = random.Random(f"{args.seed}-{lang}-{split}")
            xs = [(i, xx[i]) for i in range(2 * third)]                      # pairs, then xx-only sentences
            ys = [(i, en[i]) for i in [*range(third), *range(2 * third, 3 * third)]]  # pairs, then en-only
            rng.shuffle(xs)
            rng.shuffle(ys)
            x_id = {i: f"{lang}-{k + 1:09d}" for k, (i, _) in enumerate(xs)}
            y_id = {i: f"en-{k + 1:09d}" for k, (i, _) in enumerate(ys)}
            base = out / f"{lang}-en.{name}"
            atomic_write_text(f"{base}.{lang}", "".join(f"{x_id[i]}\t{s}\n" for i, s in xs))
            atomic_write_text(f"{base}.en", "".join(f"{y_id[i]}\t{s}\n" for i, s in ys))
            atomic_write_text(f"{base}.gold", "".join(f"{x_id[i]}\t{y_id[i]}\n" for i in range(third)))
            print(f"{base}: {len(xs)} {lang} and {len(ys)} en sentences, {third} gold pairs")


if __name__ == "__main__":
    main()
