"""The translation objectives' model steps: the teacher-forced loss equals the original's (its decoder's
scores from the goldens), back-translation is gradient-free and eval-mode, AE on noisy input trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xlm.config import ModelConfig
from xlm.model.decoder import EncoderDecoder
from xlm.mt_steps import back_translate, translation_loss
from xlm.noise import add_noise

GOLDEN = torch.load(Path(__file__).resolve().parent / "golden" / "original_mt" / "golden.pt", weights_only=True)


def test_loss_equals_the_originals_mt_step():
    p = GOLDEN["params"]
    cfg = ModelConfig(emb_dim=p["emb_dim"], n_layers=p["n_layers"], n_heads=p["n_heads"], dropout=0.0,
                      attention_dropout=0.0, encoder_only=False)
    model = EncoderDecoder(cfg, p["n_words"], p["n_langs"])
    model.encoder.load_state_dict(GOLDEN["encoder"])
    model.decoder.load_state_dict(GOLDEN["decoder"])
    inp, scores = GOLDEN["inputs"], GOLDEN["outputs"]["scores"]
    out = translation_loss(model, inp["src"], inp["src_len"], 0, inp["tgt"], inp["tgt_len"], 1)
    # the original's mt_step: pred_mask = alen < len2 - 1 (time-first), y = x2[1:] under it
    rows = [(b, t) for b in range(len(inp["tgt_len"])) for t in range(int(inp["tgt_len"][b]) - 1)]
    logits = torch.stack([scores[b, t] for b, t in rows])
    y = torch.stack([inp["tgt"][b, t + 1] for b, t in rows])
    assert out.n_words == len(rows)
    assert abs(out.loss.item() - F.cross_entropy(logits, y).item()) < 1e-5
    assert out.n_correct == int((logits.argmax(-1) == y).sum())


def test_back_translation_is_gradient_free_and_in_eval_mode():
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=16, n_layers=1, n_heads=2, dropout=0.3, attention_dropout=0.3, encoder_only=False)
    model = EncoderDecoder(cfg, 30, 2).train()
    x = torch.tensor([[1, 14, 15, 16, 1], [1, 20, 1, 2, 2]])
    lengths = torch.tensor([5, 3])
    a, a_len, _ = back_translate(model, x, lengths, 0, 1)
    b, _, _ = back_translate(model, x, lengths, 0, 1)
    assert model.training and torch.equal(a, b)  # dropout was off during generation, train mode restored
    assert not a.requires_grad and (a[:, 0] == 1).all() and (a[torch.arange(2), a_len - 1] == 1).all()
    assert int(a_len.max()) <= int(1.3 * 5 + 5)
    step = translation_loss(model, a, a_len, 1, x, lengths, 0)  # train fr->en on the synthetic source
    step.loss.backward()
    assert all(p.grad is not None for p in model.decoder.parameters() if p.requires_grad)


def test_denoising_auto_encoding_step_reduces_its_loss():
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=1, n_heads=2, dropout=0.0, attention_dropout=0.0, encoder_only=False)
    model = EncoderDecoder(cfg, 30, 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    x = torch.tensor([[1, 14, 15, 16, 17, 18, 1], [1, 20, 21, 22, 1, 2, 2]])
    lengths = torch.tensor([7, 5])
    losses = []
    for _ in range(30):
        noisy, noisy_len = add_noise(x.numpy(), lengths.numpy(), rng)
        step = translation_loss(model, torch.from_numpy(noisy), torch.from_numpy(noisy_len), 0, x, lengths, 0)
        opt.zero_grad()
        step.loss.backward()
        opt.step()
        losses.append(step.loss.item())
    assert losses[-1] < 0.5 * losses[0]
