"""Derive an XNLI-format sentence-pair task from the bundled en-fr slice (docs/transfer.md).

Each example is (A, B, label), built from one sentence A of the parallel data and one other
sentence A' (the partner) of the same split:

- ``same``: B is A with about 15% of its words dropped and, half of the time, two neighbouring
  words swapped (a noisy restatement of A);
- ``partial``: B is the first half of A followed by the second half of A';
- ``unrelated``: B is A'.

The three labels are balanced. Because the data is parallel, the English and French files of a
split are built from the same sentence indices with the same labels and partners (the French test
set is the "translation" of the English one, as XNLI's test sets are translations of each other);
the word edits are drawn separately for each language. Sentences of fewer than 4 words (on either
side) are skipped. ``train.fr.tsv`` is written too, for translate-train-all; the zero-shot setting
trains on ``train.en.tsv`` only.

    python scripts/make_pair_task.py --out data/processed/msgcorpus_pairs [--n-train 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("same", "partial", "unrelated")


def _read(path: Path, n: int | None) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n").replace("\t", " ") for line in f]
    return lines[:n] if n else lines


def _same(words: list[str], rng: random.Random) -> list[str]:
    kept = [w for w in words if rng.random() >= 0.15] or words[:1]
    if len(kept) > 2 and rng.random() < 0.5:
        i = rng.randrange(len(kept) - 1)
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return kept


def build(en: list[str], fr: list[str], seed: int) -> dict[str, list[tuple[str, str, str]]]:
    keep = [i for i in range(len(en)) if len(en[i].split()) >= 4 and len(fr[i].split()) >= 4]
    rng = random.Random(seed)
    labels = [LABELS[k % 3] for k in range(len(keep))]
    rng.shuffle(labels)
    out: dict[str, list[tuple[str, str, str]]] = {"en": [], "fr": []}
    for k, i in enumerate(keep):
        j = keep[(k + rng.randrange(1, len(keep))) % len(keep)]  # any other kept sentence
        label = labels[k]
        for lang, side in (("en", en), ("fr", fr)):
            a, b = side[i].split(), side[j].split()
            edit = random.Random(f"{seed}-{lang}-{i}")
            if label == "same":
                hyp = _same(a, edit)
            elif label == "partial":
                hyp = a[: len(a) // 2] + b[len(b) // 2 :]
            else:
                hyp = b
            out[lang].append((side[i], " ".join(hyp), label))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(ROOT / "data" / "msgcorpus" / "para"),
                    help="folder of {split}.en-fr.{en,fr}")
    ap.add_argument("--out", default="data/processed/msgcorpus_pairs")
    ap.add_argument("--n-train", type=int, default=4000, help="parallel training sentences to use")
    ap.add_argument("--n-eval", type=int, default=None, help="valid/test sentences to use (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = Path(args.corpus)
    for split, n in (("train", args.n_train), ("valid", args.n_eval), ("test", args.n_eval)):
        en = _read(corpus / f"{split}.en-fr.en", n)
        fr = _read(corpus / f"{split}.en-fr.fr", n)
        if len(en) != len(fr):
            raise SystemExit(f"error: {corpus}/{split}.en-fr.*: {len(en)} English but {len(fr)} French lines")
        built = build(en, fr, args.seed + {"train": 0, "valid": 1, "test": 2}[split])
        for lang, rows in built.items():
            path = out / f"{split}.{lang}.tsv"
            tmp = path.with_suffix(".tsv.tmp")
            tmp.write_text("".join(f"{a}\t{b}\t{lab}\n" for a, b, lab in rows), encoding="utf-8")
            tmp.replace(path)
        print(f"{split}: {len(built['en'])} examples per language -> {out}/{split}.{{en,fr}}.tsv")


if __name__ == "__main__":
    main()
