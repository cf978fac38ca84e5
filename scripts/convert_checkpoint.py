#!/usr/bin/env python
"""Convert between checkpoint formats: original XLM .pth, Hugging Face folder, xlm checkpoint.

    python scripts/convert_checkpoint.py SRC DST --format {hf,original,xlm} [--causal true|false]
        [--codes CODES] [--lowercase | --no-lowercase] [--vocab VOCAB]

SRC is auto-detected. Loading never runs pickled code. An original .pth carries neither its BPE codes
nor whether its text was lowercased: give them (--codes, --lowercase) so that the output has them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xlm.cli.common import add_model_options, model_options, show_warnings_as_lines  # noqa: E402
from xlm.errors import XLMError  # noqa: E402
from xlm.pretrained import load_pretrained, save_pretrained  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="original .pth, Hugging Face folder, xlm checkpoint or run folder")
    ap.add_argument("dst", help="output file (xlm, original) or folder (hf)")
    ap.add_argument("--format", required=True, choices=["hf", "original", "xlm"])
    ap.add_argument("--causal", choices=["true", "false"], help="override: the model is a CLM (hub configs lie)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    add_model_options(ap)
    args = ap.parse_args(argv)
    show_warnings_as_lines()
    try:
        causal = None if args.causal is None else args.causal == "true"
        p = load_pretrained(args.src, causal=causal, **model_options(args))
        out = save_pretrained(p, args.dst, format=args.format)
    except XLMError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    n_words = len(p.dictionary) if p.dictionary is not None else "no"
    print(f"wrote {args.format} model to {out} ({p.model.num_parameters():,} parameters, "
          f"{n_words} words, langs {sorted(p.lang2id, key=p.lang2id.get)}, causal={p.causal})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
