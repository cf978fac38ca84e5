"""Raw text in, raw text out: translation with an encoder-decoder, continuation with a CLM.

The input is prepared as the model's training text was (its tokenizer and BPE, :mod:`xlm.text`);
the output is de-BPE'd (``@@ `` joins) and, when the training text was Moses-tokenized, detokenized
with sacremoses' ``MosesDetokenizer`` (the ``mt`` extra). Lowercasing and accent removal cannot be
undone: a model trained on lowercased text writes lowercased text.

Command line (reads sentences on stdin, one per line; writes one line per input, in order)::

    python -m xlm.translate --model M --src-lang en --tgt-lang fr [--beam-size 5 --length-penalty 1.0]
    python -m xlm.translate --model CLM --lang en --max-len 30      # a CLM continues each line
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from xlm.errors import XLMError
from xlm.generation import generate, translate_ids
from xlm.model.decoder import EncoderDecoder
from xlm.pretrained import Pretrained
from xlm.text import DEFAULT_SETTINGS, check_lang, pad, prepare


def detokenize(p: Pretrained, ids: Sequence[int], lang: str) -> str:
    """Word ids -> text: BPE pieces joined (``w@@`` continues into the next piece), then Moses
    detokenization in ``lang`` when the model's text was tokenized (as its ``text_settings`` say)."""
    if p.dictionary is None:
        raise XLMError(f"{p.path or 'model'}: no vocabulary to turn ids into words")
    text = " ".join(p.dictionary.id2word[i] for i in ids).replace("@@ ", "")
    text = text.removesuffix("@@")
    settings = p.text_settings if p.text_settings is not None else DEFAULT_SETTINGS
    if not settings.get("tokenize", True) or not text:
        return text
    try:
        from sacremoses import MosesDetokenizer
    except ImportError:
        raise XLMError("detokenizing needs sacremoses: pip install -e '.[mt]'") from None
    return MosesDetokenizer(lang=lang).detokenize(text.split())


def _batches(n: int, lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by length (less padding), each group at most ``batch_size``."""
    order = sorted(range(n), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def translate(p: Pretrained, sentences: Sequence[str], src_lang: str, tgt_lang: str, *, batch_size: int = 32,
              max_len: int | None = None, tokenized: bool = False, detokenized: bool = True,
              **decoding: Any) -> list[str]:
    """Translate raw ``sentences`` from ``src_lang`` into ``tgt_lang``; one output per input, in order.

    ``max_len`` defaults to the original translate.py's ``1.5 * source length + 10`` (per batch,
    capped by the model's positions). ``decoding``: the options of :func:`xlm.generation.translate_ids`
    (``beam_size``, ``length_penalty``, ``early_stopping``, ``sample``, ``temperature``, ``top_k``,
    ``top_p``, ``generator``). ``detokenized=False`` returns the BPE-joined tokens (for multi-bleu).
    """
    if not isinstance(p.model, EncoderDecoder):
        raise XLMError(f"{p.path or 'model'}: not a translation model (no decoder); a CLM continues text with "
                       "--lang instead of --src-lang/--tgt-lang")
    src_id, tgt_id = check_lang(p, src_lang), check_lang(p, tgt_lang)
    _, framed = prepare(p, sentences, src_lang, tokenized)
    device = next(p.model.parameters()).device
    out: list[str] = [""] * len(framed)
    for group in _batches(len(framed), [len(x) for x in framed], batch_size):
        inputs = pad([framed[i] for i in group], src_id, device, p.model.pad_index)
        limit = max_len or int(1.5 * int(inputs.lengths.max()) + 10)
        limit = min(limit, p.model.cfg.max_positions)
        hyp = translate_ids(p.model, inputs.ids, inputs.lengths, src_id, tgt_id, max_len=limit,
                            eos_index=p.dictionary.eos_index, **decoding)  # type: ignore[union-attr]
        for i, tokens in zip(group, hyp.tokens):
            out[i] = detokenize(p, tokens, tgt_lang) if detokenized else _join(p, tokens)
    return out


def _join(p: Pretrained, ids: Sequence[int]) -> str:
    return " ".join(p.dictionary.id2word[i] for i in ids).replace("@@ ", "").removesuffix("@@")  # type: ignore


def complete(p: Pretrained, prompts: Sequence[str], lang: str, *, max_new_tokens: int = 50, batch_size: int = 32,
             **decoding: Any) -> list[str]:
    """Continue raw ``prompts`` with a causal LM: each prompt is framed ``</s> w1 .. wn`` (as CLM
    training streams start a sentence) and continued; returns the continuations' text."""
    if isinstance(p.model, EncoderDecoder) or not p.causal:
        raise XLMError(f"{p.path or 'model'}: generate() needs a causal LM (a CLM checkpoint)")
    lang_id = check_lang(p, lang)
    _, framed = prepare(p, prompts, lang)
    prompts_ids = [x[:-1] for x in framed]  # no closing </s>: the sentence goes on
    out: list[str] = [""] * len(prompts_ids)
    for group in _batches(len(prompts_ids), [len(x) for x in prompts_ids], batch_size):
        hyp = generate(p.model, [prompts_ids[i] for i in group], lang_id if p.model.use_lang_emb else None,
                       max_new_tokens=max_new_tokens, eos_index=p.dictionary.eos_index,  # type: ignore[union-attr]
                       **decoding)
        for i, tokens in zip(group, hyp.tokens):
            out[i] = detokenize(p, tokens, lang)
    return out


def main(argv: list[str] | None = None) -> int:
    from xlm.cli.common import add_model_options, model_options, show_warnings_as_lines
    from xlm.pretrained import load_pretrained

    ap = argparse.ArgumentParser(prog="python -m xlm.translate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="translation checkpoint (ours or an original MT .pth), or a CLM")
    ap.add_argument("--src-lang", help="source language (translation)")
    ap.add_argument("--tgt-lang", help="target language (translation)")
    ap.add_argument("--lang", help="language of the prompts (a CLM continues each line)")
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--length-penalty", type=float, default=1.0)
    ap.add_argument("--early-stopping", action="store_true")
    ap.add_argument("--max-len", type=int, default=None,
                    help="translation: longest output incl. the two </s> (default 1.5 x source + 10); CLM: new tokens")
    ap.add_argument("--sample", action="store_true", help="sample instead of taking the best token")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="for --sample")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tokenized", action="store_true", help="input already tokenized (BPE still applied)")
    ap.add_argument("--no-detokenize", action="store_true", help="write tokens (for multi-bleu.perl)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    add_model_options(ap)
    args = ap.parse_args(argv)
    show_warnings_as_lines()
    try:
        p = load_pretrained(args.model, device=args.device, **model_options(args))
        lines = sys.stdin.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        decoding = {"beam_size": args.beam_size, "length_penalty": args.length_penalty,
                    "early_stopping": args.early_stopping, "sample": args.sample, "temperature": args.temperature,
                    "top_k": args.top_k, "top_p": args.top_p,
                    "generator": torch.Generator(device=args.device).manual_seed(args.seed) if args.sample else None}
        if args.lang and not (args.src_lang or args.tgt_lang):
            out = complete(p, lines, args.lang, max_new_tokens=args.max_len or 50, batch_size=args.batch_size,
                           **decoding)
        elif args.src_lang and args.tgt_lang:
            out = translate(p, lines, args.src_lang, args.tgt_lang, batch_size=args.batch_size, max_len=args.max_len,
                            tokenized=args.tokenized, detokenized=not args.no_detokenize, **decoding)
        else:
            raise XLMError("give --src-lang and --tgt-lang (translation), or --lang (a CLM continues each line)")
    except XLMError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
