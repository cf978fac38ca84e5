"""Evaluation commands: ``python -m xlm.evaluate retrieval --model PATH --pair en-fr --src F --tgt F``."""

from __future__ import annotations

import argparse
import json
import sys

from xlm.cli.common import add_model_options, model_options, show_warnings_as_lines
from xlm.errors import XLMError


def _retrieval(args: argparse.Namespace) -> None:
    from xlm.pretrained import load_pretrained
    from xlm.retrieval import read_lines, retrieval

    src_lang, _, tgt_lang = args.pair.partition("-")
    if not src_lang or not tgt_lang:
        raise XLMError(f"--pair: expected 'src-tgt' such as en-fr, got {args.pair!r}")
    p = load_pretrained(args.model, device=args.device, **model_options(args))
    src, tgt = read_lines(args.src, args.limit), read_lines(args.tgt, args.limit)
    if len(src) != len(tgt):
        raise XLMError(f"{args.src} has {len(src)} lines but {args.tgt} has {len(tgt)}: files must be aligned")
    res = retrieval(p, src, tgt, src_lang, tgt_lang, pooling=args.pooling, margin=args.margin)
    scoring = "margin" if args.margin else "cosine"
    print(f"{src_lang}->{tgt_lang} P@1 {res.src_to_tgt:.2f}  {tgt_lang}->{src_lang} P@1 {res.tgt_to_src:.2f}  "
          f"({res.n} pairs, {args.pooling} pooling, {scoring})")
    if args.json:
        print(json.dumps(res.as_dict(src_lang, tgt_lang)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xlm.evaluate", description=__doc__)
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("retrieval", help="cross-lingual sentence retrieval, precision@1 both ways")
    r.add_argument("--model", required=True, help="checkpoint, run folder, original .pth or HF folder")
    r.add_argument("--pair", required=True, help="src-tgt languages, e.g. en-fr")
    r.add_argument("--src", required=True, help="source sentences, one per line")
    r.add_argument("--tgt", required=True, help="target sentences, aligned with --src")
    r.add_argument("--pooling", choices=["first", "mean"], default="mean")
    r.add_argument("--margin", action="store_true", help="ratio-margin scoring instead of cosine")
    r.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    r.add_argument("--device", default="cpu")
    r.add_argument("--json", action="store_true", help="also print the scores as JSON")
    add_model_options(r)
    r.set_defaults(func=_retrieval)
    args = ap.parse_args(argv)
    show_warnings_as_lines()
    try:
        args.func(args)
    except XLMError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
