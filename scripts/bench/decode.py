#!/usr/bin/env python
"""Beam-search decoding with and without the key/value cache, alternating in one process.

A translation model of the tiny config's size (configs/tiny.yaml: emb_dim 128, 2 layers, 4 heads;
vocabulary of the bundled slice, ~5k words) translates a batch of 32 random sources with beam 5;
``</s>`` is barred so that every hypothesis runs the full ``--tokens`` output tokens. Without the cache
each step recomputes the whole prefix (and the cross-attention keys); with it a step costs one token.
Prints sentences/s and output tokens/s of each and the ratio (target: cached >= 3x at 64 tokens, 2 threads).

    python scripts/bench/decode.py [--tokens 64 --batch 32 --beam 5 --threads 2 --rounds 3 --device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# this folder holds a tokenize.py, which would shadow the standard library's (torch's import reads it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from xlm.config import ModelConfig  # noqa: E402
from xlm.data.dictionary import EOS_INDEX, PAD_INDEX  # noqa: E402
from xlm.generation import translate_ids  # noqa: E402
from xlm.model.decoder import EncoderDecoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64, help="output tokens per hypothesis")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--src-len", type=int, default=30, help="source tokens (framing included)")
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of (cached, uncached)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=128, n_layers=2, n_heads=4, dropout=0.0, attention_dropout=0.0, encoder_only=False)
    model = EncoderDecoder(cfg, args.vocab, 2).to(args.device).eval()
    with torch.no_grad():
        model.decoder.pred_layer.proj.bias[EOS_INDEX] = -1e4  # no hypothesis ends early: exactly --tokens
    src = torch.randint(14, args.vocab, (args.batch, args.src_len), device=args.device)
    src[:, 0] = src[:, -1] = EOS_INDEX
    src_len = torch.full((args.batch,), args.src_len, device=args.device)
    assert PAD_INDEX not in src.tolist()

    def run(use_cache: bool) -> float:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        hyp = translate_ids(model, src, src_len, 0, 1, beam_size=args.beam, max_len=args.tokens + 1,
                            use_cache=use_cache)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        assert all(len(t) == args.tokens - 1 for t in hyp.tokens)  # the last token is the forced </s>
        return time.perf_counter() - start

    run(True), run(False)  # warm-up
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for use_cache in (True, False):
            times[use_cache].append(run(use_cache))
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"beam {args.beam}, batch {args.batch}, {args.tokens} output tokens, source {args.src_len} tokens, "
          f"emb_dim 128 x 2 layers, vocab {args.vocab}, {device}; median of {args.rounds}")
    for use_cache in (True, False):
        t = statistics.median(times[use_cache])
        print(f"  {'cache   ' if use_cache else 'no cache'}: {t:7.3f} s  {args.batch / t:8.1f} sentences/s  "
              f"{args.batch * args.tokens / t:9.1f} tokens/s")
    ratio = statistics.median(times[False]) / statistics.median(times[True])
    print(f"cache speed-up: {ratio:.2f}x (target >= 3x at 64 tokens on CPU)")


if __name__ == "__main__":
    main()
