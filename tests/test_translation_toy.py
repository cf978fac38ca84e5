"""A tiny encoder-decoder learns to reverse sequences in a few hundred steps, and greedy decoding
(not teacher forcing) then reproduces the reversal: the decoder, its masks and the decoding loop agree."""

from __future__ import annotations

import torch

from xlm.config import ModelConfig
from xlm.generation import translate_ids
from xlm.model.decoder import EncoderDecoder
from xlm.mt_steps import translation_loss

EOS, PAD, FIRST, N_SYMBOLS = 1, 2, 4, 10  # symbols are ids 4..13
STEPS = 200


def batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    lengths = torch.randint(3, 8, (n,), generator=g)
    src = torch.full((n, 9), PAD)
    tgt = torch.full((n, 9), PAD)
    for i, k in enumerate(lengths.tolist()):
        words = torch.randint(FIRST, FIRST + N_SYMBOLS, (k,), generator=g)
        src[i, : k + 2] = torch.cat([torch.tensor([EOS]), words, torch.tensor([EOS])])
        tgt[i, : k + 2] = torch.cat([torch.tensor([EOS]), words.flip(0), torch.tensor([EOS])])
    return src, lengths + 2, tgt, lengths + 2


def test_reverse_task_reaches_90_percent_exact_match_with_greedy_decoding():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses to thread sync (and a busy machine hurts it badly)
    try:
        _reverse_task()
    finally:
        torch.set_num_threads(threads)


def _reverse_task() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfg = ModelConfig(emb_dim=64, n_layers=2, n_heads=4, dropout=0.0, attention_dropout=0.0, encoder_only=False)
    model = EncoderDecoder(cfg, FIRST + N_SYMBOLS, 2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(STEPS):
        src, src_len, tgt, tgt_len = batch(64, g)
        loss = translation_loss(model, src, src_len, 0, tgt, tgt_len, 1).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    src, src_len, tgt, tgt_len = batch(300, torch.Generator().manual_seed(123))
    hyp = translate_ids(model, src, src_len, 0, 1, max_len=12)
    expected = [row[1 : n - 1] for row, n in zip(tgt.tolist(), tgt_len.tolist())]
    exact = sum(h == e for h, e in zip(hyp.tokens, expected)) / len(expected)
    print(f"greedy exact match {exact:.2%}")
    assert exact >= 0.9, f"exact match {exact:.2%} (last loss {loss.item():.3f})"
    beam = translate_ids(model, src, src_len, 0, 1, beam_size=4, max_len=12)
    assert sum(h == e for h, e in zip(beam.tokens, expected)) / len(expected) >= 0.9
