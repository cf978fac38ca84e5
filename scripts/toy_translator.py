"""Train a toy translation model in seconds on CPU and save it as a checkpoint ``python -m xlm.translate`` reads.

The "languages" are en and fr over the letters a..j; the French of a sentence is its English
reversed ("a b c" -> "c b a"). A 2-layer encoder-decoder learns it in a few hundred steps (the same
task as tests/test_translation_toy.py). Used by docs/translation.md to show the commands end to end.

usage: python scripts/toy_translator.py --out runs/toy_mt.pt [--steps 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xlm.config import ModelConfig  # noqa: E402
from xlm.data.dictionary import EOS_INDEX, N_SPECIAL, PAD_INDEX, Dictionary  # noqa: E402
from xlm.model.decoder import EncoderDecoder  # noqa: E402
from xlm.mt_steps import translation_loss  # noqa: E402
from xlm.pretrained import Pretrained, save_pretrained  # noqa: E402

LETTERS = list("abcdefghij")


def pairs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` random sentences of 3-7 letters framed ``</s> .. </s>`` and their reversals, right-padded."""
    lengths = torch.randint(3, 8, (n,), generator=g)
    src = torch.full((n, 9), PAD_INDEX)
    tgt = torch.full((n, 9), PAD_INDEX)
    eos = torch.tensor([EOS_INDEX])
    for i, k in enumerate(lengths.tolist()):
        words = torch.randint(N_SPECIAL, N_SPECIAL + len(LETTERS), (k,), generator=g)
        src[i, : k + 2] = torch.cat([eos, words, eos])
        tgt[i, : k + 2] = torch.cat([eos, words.flip(0), eos])
    return src, lengths + 2, tgt, lengths + 2


def train(steps: int = 300, seed: int = 0) -> EncoderDecoder:
    """Train on fresh random pairs each step; one thread (a model this small only loses to thread sync)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train(steps: int, seed: int) -> EncoderDecoder:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    cfg = ModelConfig(emb_dim=64, n_layers=2, n_heads=4, dropout=0.0, attention_dropout=0.0, max_positions=64,
                      encoder_only=False)
    model = EncoderDecoder(cfg, N_SPECIAL + len(LETTERS), 2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        src, src_len, tgt, tgt_len = pairs(64, g)
        loss = translation_loss(model, src, src_len, 0, tgt, tgt_len, 1).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = train(args.steps, args.seed)
    settings = {"tokenize": False, "lower_remove_accent": False, "pre_segmented": [], "segmentation": "none"}
    p = Pretrained(model, Dictionary(LETTERS), {"en": 0, "fr": 1}, text_settings=settings)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_pretrained(p, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
