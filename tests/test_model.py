"""The encoder itself: shapes, masking, causality, language embeddings, options, parameter names."""

from __future__ import annotations

import pytest
import torch

from xlm.config import ModelConfig
from xlm.errors import XLMError
from xlm.model import TransformerModel
from xlm.model.transformer import sinusoidal_table


def tiny(n_words=50, n_langs=2, **kw) -> TransformerModel:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=2, n_heads=4, dropout=0.0, attention_dropout=0.0, max_positions=64, **kw)
    return TransformerModel(cfg, n_words, n_langs).eval()


def test_parameter_names_follow_the_original():
    keys = list(tiny().state_dict())
    assert keys[:3] == ["position_embeddings.weight", "lang_embeddings.weight", "embeddings.weight"]
    for k in ["layer_norm_emb.weight", "attentions.1.q_lin.weight", "attentions.0.out_lin.bias", "layer_norm1.1.bias",
              "ffns.0.lin1.weight", "ffns.1.lin2.bias", "layer_norm2.0.weight", "pred_layer.proj.weight",
              "pred_layer.proj.bias"]:
        assert k in keys
    m = tiny()
    assert m.ffns[0].lin1.weight.shape == (128, 32)  # FFN width 4 x emb_dim
    assert m.layer_norm_emb.eps == 1e-12


def test_output_projection_tied_and_untied():
    m = tiny()
    assert m.pred_layer.proj.weight is m.embeddings.weight
    u = tiny(share_inout_emb=False)
    assert u.pred_layer.proj.weight is not u.embeddings.weight
    assert m.num_parameters() < u.num_parameters()


def test_language_embeddings_exist_only_when_used():
    assert "lang_embeddings.weight" not in tiny(n_langs=1).state_dict()
    assert "lang_embeddings.weight" not in tiny(n_langs=3, use_lang_emb=False).state_dict()
    m = tiny(n_langs=3)
    x = torch.randint(14, 50, (2, 7))
    h0, h1, hn = m(x, langs=torch.zeros_like(x)), m(x, langs=torch.ones_like(x)), m(x)
    assert not torch.allclose(h0, h1) and not torch.allclose(h0, hn)
    assert torch.allclose(m(x, langs=1), h1, atol=1e-6)  # an int means that id for every token


def test_padding_is_ignored_and_zeroed():
    m = tiny()
    x = torch.randint(14, 50, (1, 6))
    padded = torch.cat([x, torch.full((1, 3), 2)], dim=1)
    h = m(padded, langs=0)
    assert torch.allclose(h[:, :6], m(x, langs=0), atol=1e-5)
    assert h[:, 6:].abs().max() == 0


def test_causal_prefix_does_not_see_the_future():
    m = tiny()
    x = torch.randint(14, 50, (2, 10))
    full = m(x, langs=0, causal=True)
    changed = x.clone()
    changed[:, 6:] = torch.randint(14, 50, (2, 4))
    other = m(changed, langs=0, causal=True)
    assert torch.allclose(full[:, :6], other[:, :6], atol=1e-6)
    assert not torch.allclose(full[:, 6:], other[:, 6:])
    # without causal attention, early positions do see later tokens
    assert not torch.allclose(m(x, langs=0)[:, :6], m(changed, langs=0)[:, :6])


def test_positions_argument_restarts_positions():
    m = tiny()
    x = torch.randint(14, 50, (1, 8))
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    assert not torch.allclose(m(x, positions=pos), m(x))
    assert torch.allclose(m(x, positions=torch.arange(8)[None]), m(x), atol=1e-6)


def test_predict_scores_only_given_positions():
    m = tiny()
    h = m(torch.randint(14, 50, (3, 5)))
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 1] = mask[2, 4] = True
    assert m.predict(h[mask]).shape == (2, 50)
    assert m.predict(h).shape == (3, 5, 50)


def test_gelu_is_exact_erf_and_relu_differs():
    g, r = tiny(gelu_activation=True), tiny(gelu_activation=False)
    r.load_state_dict(g.state_dict())
    x = torch.randint(14, 50, (2, 5))
    assert not torch.allclose(g(x), r(x))
    assert g.ffns[0].act(torch.tensor([1.0])).item() == pytest.approx(0.8413447, abs=1e-6)


def test_sinusoidal_positions_are_frozen():
    m = tiny(sinusoidal_embeddings=True)
    w = m.position_embeddings.weight
    assert not w.requires_grad
    assert torch.allclose(w, sinusoidal_table(64, 32))
    assert w[3, 0].item() == pytest.approx(torch.sin(torch.tensor(3.0)).item(), abs=1e-6)
    assert w[3, 1].item() == pytest.approx(torch.cos(torch.tensor(3.0)).item(), abs=1e-6)


def test_pre_norm_option_runs_and_differs():
    post, pre = tiny(), tiny(pre_norm=True)
    assert "layer_norm_out.weight" in pre.state_dict()
    x = torch.randint(14, 50, (2, 5))
    assert pre(x).shape == post(x).shape == (2, 5, 32)


def test_padding_row_is_zero_and_lookups_give_it_no_gradient():
    m = tiny().train()
    assert m.embeddings.weight[2].abs().sum() == 0
    x = torch.tensor([[20, 21, 2, 2]])
    m(x, lengths=torch.tensor([4])).sum().backward()
    assert m.embeddings.weight.grad[2].abs().sum() == 0


def test_invalid_architecture_is_a_clear_error():
    with pytest.raises(XLMError, match="emb_dim"):
        TransformerModel(ModelConfig(emb_dim=30, n_heads=4), 50, 1)


@pytest.mark.parametrize("causal", [False, True])
def test_masked_out_keys_have_no_influence(causal):
    """An arbitrary per-example mask: changing a token no query may see leaves every output unchanged."""
    m = tiny()
    torch.manual_seed(1)
    x = torch.randint(5, 50, (2, 10))
    lengths = torch.tensor([10, 7])
    x[1, 7:] = m.pad_index
    mask = torch.rand(2, 10, 10) < 0.5
    mask |= torch.eye(10, dtype=torch.bool)  # every query sees at least itself
    mask[:, :, 3] = False  # nobody attends to position 3 ...
    mask[:, 3, 3] = True  # ... except position 3 itself
    h = m(x, lengths, langs=0, causal=causal, attn_mask=mask)
    y = x.clone()
    y[:, 3] = (y[:, 3] + 1 - 5) % 45 + 5
    g = m(y, lengths, langs=0, causal=causal, attn_mask=mask)
    keep = torch.ones(10, dtype=torch.bool)
    keep[3] = False
    assert torch.isfinite(h).all()
    torch.testing.assert_close(g[:, keep], h[:, keep], rtol=0, atol=1e-6)
    assert not torch.allclose(g[:, 3], h[:, 3])
    # an all-True mask is the plain computation
    full = m(x, lengths, langs=0, causal=causal, attn_mask=torch.ones(2, 10, 10, dtype=torch.bool))
    torch.testing.assert_close(full, m(x, lengths, langs=0, causal=causal), rtol=0, atol=1e-5)
