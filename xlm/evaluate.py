"""Evaluation commands.

- ``python -m xlm.evaluate lm --model PATH --data DIR [--protocol xlm|original] [--json]``: perplexity
  and accuracy per language and objective under the original's metric names (``valid_en_mlm_ppl`` ...);
- ``python -m xlm.evaluate retrieval --model PATH --pair en-fr --src F --tgt F``;
- ``python -m xlm.evaluate bleu --hyp F --ref F [F ...] [--lc] [--tokenized]``: sacrebleu on detokenized
  text, or with ``--tokenized`` the BLEU of Moses' ``multi-bleu.perl`` (see :mod:`xlm.bleu`).
"""

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


def _lm(args: argparse.Namespace) -> None:
    from xlm.eval_lm import evaluate_lm

    split = lambda v: None if v is None else [s for s in v.split(",") if s]
    options = {k: getattr(args, k) for k in ("bptt", "batch_size", "max_batch_size", "word_pred", "n_langs")}
    res = evaluate_lm(args.model, args.data, args.protocol, split(args.mlm), split(args.clm),
                      split(args.splits), args.device, **options)
    if args.json:
        print(json.dumps(res.as_dict()))
    else:
        print("\n".join(res.lines()))


def _read_lines(path: str) -> list[str]:
    """Lines split on "\\n" only, as perl and sacrebleu read them (not on the other Unicode breaks)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise XLMError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise XLMError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _bleu(args: argparse.Namespace) -> None:
    from xlm.bleu import multi_bleu, sacre_bleu_signed

    hyp = _read_lines(args.hyp)
    refs = [_read_lines(r) for r in args.ref]
    if args.tokenized:
        res = multi_bleu(hyp, refs, lowercase=args.lc)
        print(json.dumps({"bleu": res.bleu, "precisions": res.precisions, "bp": res.bp, "ratio": res.ratio,
                          "hyp_len": res.hyp_len, "ref_len": res.ref_len}) if args.json else str(res))
    else:
        score, sig = sacre_bleu_signed(hyp, refs, lowercase=args.lc)
        print(json.dumps({"bleu": score, "signature": sig}) if args.json else f"BLEU = {score:.2f} ({sig})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xlm.evaluate", description=__doc__)
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)
    lm = sub.add_parser("lm", help="perplexity and accuracy per language and objective (MLM, TLM, CLM)")
    lm.add_argument("--model", required=True, help="checkpoint, run folder, original .pth or HF folder")
    lm.add_argument("--data", required=True, help="binarized data folder (vocab, valid.en.bin/.idx, ...)")
    lm.add_argument("--protocol", choices=["xlm", "original"], default="xlm",
                    help="xlm: our evaluation (as in training); original: facebookresearch/XLM's figures exactly")
    lm.add_argument("--mlm", default=None, help="MLM/TLM steps, e.g. en,fr,en-fr (default: the checkpoint's)")
    lm.add_argument("--clm", default=None, help="CLM steps, e.g. en,de (default: the checkpoint's)")
    lm.add_argument("--splits", default="valid,test")
    for name, typ in (("bptt", int), ("batch-size", int), ("max-batch-size", int), ("word-pred", float),
                      ("n-langs", int)):
        lm.add_argument(f"--{name}", type=typ, default=None,
                        help="overrides the checkpoint's value (original params or our config)")
    lm.add_argument("--device", default="cpu")
    lm.add_argument("--json", action="store_true", help="print one JSON line instead")
    lm.set_defaults(func=_lm)
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
    b = sub.add_parser("bleu", help="corpus BLEU: sacrebleu (detokenized) or multi-bleu.perl's (--tokenized)")
    b.add_argument("--hyp", required=True, help="hypotheses, one per line")
    b.add_argument("--ref", required=True, nargs="+", help="reference file(s), aligned with --hyp")
    b.add_argument("--lc", action="store_true", help="case-insensitive (models trained on lowercased text)")
    b.add_argument("--tokenized", action="store_true",
                   help="tokenized BLEU exactly as Moses' multi-bleu.perl (the original XLM's figure)")
    b.add_argument("--json", action="store_true", help="print one JSON line instead")
    b.set_defaults(func=_bleu)
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
