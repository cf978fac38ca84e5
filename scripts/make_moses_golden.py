#!/usr/bin/env python
"""Regenerate tests/golden/moses/ from the Moses perl scripts themselves (nothing from xlm).

    python scripts/make_moses_golden.py --moses /tmp/moses187 --lowercase /tmp/xlmtools/lowercase_and_remove_accent.py

``--moses``: a mosesdecoder tree at 187a75cb5 (``git -C mosesdecoder archive 187a75cb5
scripts/tokenizer scripts/share/nonbreaking_prefixes | tar -x -C /tmp/moses187``);
``--lowercase``: ``tools/lowercase_and_remove_accent.py`` of facebookresearch/XLM (needs ``six``).
For each language, the pipeline of XLM's ``tools/tokenize.sh`` on ``input.txt``::

    replace-unicode-punctuation.perl | normalize-punctuation.perl -l L | remove-non-printing-char.perl
      | tokenizer.perl -no-escape -threads 2 -l L                  > L.tok
      ... | python lowercase_and_remove_accent.py                    > L.lower.tok

Languages: every ``nonbreaking_prefix.L`` at that commit, and a few without one (perl falls back
to English's prefixes but applies the language's own rules): see ``FALLBACK``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "moses"
FALLBACK = ["ar", "cz", "hi", "ja", "ko", "so", "th", "tr"]  # cz: normalize-punctuation's "Czech" alias


def pipeline(moses: Path, lang: str) -> str:
    t = moses / "scripts" / "tokenizer"
    return (
        f"perl {t}/replace-unicode-punctuation.perl | perl {t}/normalize-punctuation.perl -l {lang} "
        f"| perl {t}/remove-non-printing-char.perl | perl {t}/tokenizer.perl -no-escape -threads 2 -l {lang}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moses", required=True, type=Path)
    ap.add_argument("--lowercase", required=True, type=Path)
    args = ap.parse_args()
    share = args.moses / "scripts" / "share" / "nonbreaking_prefixes"
    prefixes = sorted(p.suffix[1:] for p in share.glob("nonbreaking_prefix.*"))
    data = (GOLDEN / "input.txt").read_bytes()
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    for lang in prefixes + FALLBACK:
        command = pipeline(args.moses, lang)
        tok = subprocess.run(command, shell=True, input=data, capture_output=True, check=True, env=env)
        lower = subprocess.run(
            [sys.executable, str(args.lowercase)], input=tok.stdout, capture_output=True, check=True, env=env
        )
        (GOLDEN / f"{lang}.tok").write_bytes(tok.stdout)
        (GOLDEN / f"{lang}.lower.tok").write_bytes(lower.stdout)
    print(f"wrote {len(prefixes) + len(FALLBACK)} languages to {GOLDEN}")


if __name__ == "__main__":
    main()
