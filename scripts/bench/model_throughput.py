#!/usr/bin/env python
"""One MLM training step of our model vs ``transformers.XLMWithLMHeadModel``, alternating in one process.

A step is: forward, loss on the 15% masked positions, backward, AdamW step. Ours scores only the
masked positions; HF computes full-vocabulary logits everywhere and ignores labels of -100.
Prints tokens/s of each and the ratio (target on CPU: ours >= 1.8x HF).

    python scripts/bench/model_throughput.py [--emb-dim 256 --n-layers 4 --n-heads 8 --vocab 20000
                                              --batch 16 --seq 128 --rounds 5 --steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[0] = str(ROOT)  # not scripts/bench/: its tokenize.py would shadow the standard library's (torch imports it)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from xlm.config import ModelConfig  # noqa: E402
from xlm.model import TransformerModel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--emb-dim", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--n-heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5, help="alternations of (ours, hf)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import XLMConfig, XLMWithLMHeadModel

    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=args.emb_dim, n_layers=args.n_layers, n_heads=args.n_heads, dropout=0.1,
                      attention_dropout=0.1, gelu_activation=True, max_positions=512)
    ours = TransformerModel(cfg, args.vocab, 2).train()
    hf = XLMWithLMHeadModel(XLMConfig(vocab_size=args.vocab, emb_dim=args.emb_dim, n_layers=args.n_layers,
                                      n_heads=args.n_heads, dropout=0.1, attention_dropout=0.1, n_langs=2,
                                      gelu_activation=True, max_position_embeddings=512)).train()
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)
    opt_hf = torch.optim.AdamW(hf.parameters(), lr=1e-4, fused=True)  # same optimizer for both

    g = torch.Generator().manual_seed(0)
    x = torch.randint(14, args.vocab, (args.batch, args.seq), generator=g)
    langs = torch.randint(0, 2, (args.batch, args.seq), generator=g)
    mask = torch.rand(args.batch, args.seq, generator=g) < 0.15
    targets = x[mask]
    inputs = x.masked_fill(mask, 5)
    labels = x.masked_fill(~mask, -100)

    def step_ours() -> None:
        h = ours(inputs, langs=langs)
        loss = F.cross_entropy(ours.predict(h[mask]), targets)
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        opt_ours.step()

    def step_hf() -> None:
        loss = hf(input_ids=inputs, langs=langs, labels=labels).loss
        opt_hf.zero_grad(set_to_none=True)
        loss.backward()
        opt_hf.step()

    for fn in (step_ours, step_hf):  # warm-up
        fn()
    times: dict[str, list[float]] = {"ours": [], "hf": []}
    for _ in range(args.rounds):
        for name, fn in (("ours", step_ours), ("hf", step_hf)):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - t0) / args.steps)
    tokens = args.batch * args.seq
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    print(f"config: emb_dim {args.emb_dim}, {args.n_layers} layers, {args.n_heads} heads, vocab {args.vocab}, "
          f"batch {args.batch} x {args.seq}, {torch.get_num_threads()} threads, {int(mask.sum())} masked tokens")
    print(f"ours: {tps['ours']:10.0f} tokens/s  (median step {statistics.median(times['ours']) * 1e3:.1f} ms)")
    print(f"hf:   {tps['hf']:10.0f} tokens/s  (median step {statistics.median(times['hf']) * 1e3:.1f} ms)")
    print(f"ratio ours/hf: {tps['ours'] / tps['hf']:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
