"""Attention masks as descriptions (xlm.model.attention_mask): the dense and the flex_attention paths agree.

CPU covers flex_attention's forward only (torch has no flex_attention backward on CPU); the model uses
it on CUDA under torch.compile (``attention_backend: auto``), where it is not tested here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from training_data import one_thread

from xlm.config import ModelConfig
from xlm.model import TransformerModel
from xlm.model.attention_mask import AttentionMask, use_flex
from xlm.objectives.camlm import cross_attention_mask, second_side


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "flex_attention called without torch.compile")
        yield


def _pairs(bs: int = 4, slen: int = 20, seed: int = 0):
    """Pair rows ``[</s> s1 </s>][</s> s2 </s>]`` of random lengths: x, lengths, positions (numpy)."""
    gen = np.random.default_rng(seed)
    n1, n2 = gen.integers(3, slen // 2, bs), gen.integers(3, slen // 2, bs)
    lengths = n1 + n2
    lengths[0] = slen  # one full row
    n2[0] = slen - n1[0]
    col = np.arange(slen)[None, :]
    positions = np.where(col < n1[:, None], col, col - n1[:, None])
    positions[col >= lengths[:, None]] = 0
    x = gen.integers(14, 100, (bs, slen))
    x[col >= lengths[:, None]] = 2
    return torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(positions)


def _model(**kw) -> TransformerModel:
    torch.manual_seed(0)
    return TransformerModel(ModelConfig(emb_dim=32, n_layers=2, n_heads=2, **kw), 100, 2).eval()


def test_descriptions_make_the_dense_masks_of_packing_and_camlm():
    seg = torch.tensor([[1, 1, 2, 2, 0]])
    assert torch.equal(AttentionMask(segments=seg).to_dense(), seg[:, :, None] == seg[:, None, :])
    _, _, positions = _pairs()
    second = second_side(positions.numpy())
    cross = AttentionMask(sides=torch.from_numpy(second)).to_dense()
    assert torch.equal(cross, torch.from_numpy(cross_attention_mask(second)))  # CAMLM's and BTMLM's rule
    dense = torch.rand(4, 20, 20) > 0.5
    both = AttentionMask(sides=torch.from_numpy(second), dense=dense).to_dense()
    assert torch.equal(both, cross & dense)  # rules combine with AND
    with pytest.raises(ValueError, match="at least one rule"):
        AttentionMask().to_dense()
    with pytest.raises(ValueError, match="must be bool"):
        AttentionMask(dense=dense.int()).to_dense()


@pytest.mark.parametrize("rule", ["segments", "sides", "dense", "segments-causal"])
def test_flex_attention_equals_the_dense_mask(rule):
    """Every kind of rule, with padded rows, through flex_attention (BlockMask) and SDPA (dense)."""
    x, lengths, positions = _pairs()
    second = torch.from_numpy(second_side(positions.numpy()))
    causal = rule.endswith("causal")
    if rule.startswith("segments"):
        mask = AttentionMask(segments=(second.long() + 1) * (x != 2))
    elif rule == "sides":
        mask = AttentionMask(sides=second)
    else:
        dense = torch.rand(4, 20, 20, generator=torch.Generator().manual_seed(1)) > 0.6
        dense |= torch.eye(20, dtype=torch.bool)  # every query keeps a key
        mask = AttentionMask(dense=dense)
    model = _model()
    with torch.no_grad():
        model.attention_backend = "sdpa"
        ref = model(x, lengths, langs=0, positions=positions, causal=causal, attn_mask=mask)
        as_tensor = model(x, lengths, langs=0, positions=positions, causal=causal, attn_mask=mask.to_dense())
        model.attention_backend = "flex"
        flex = model(x, lengths, langs=0, positions=positions, causal=causal, attn_mask=mask)
    assert torch.equal(ref, as_tensor)  # a description and its dense tensor: the same computation
    real = (torch.arange(20)[None, :] < lengths[:, None]).unsqueeze(-1)
    torch.testing.assert_close(flex * real, ref * real, rtol=1e-5, atol=1e-5)
    assert (flex[~real.squeeze(-1)] == 0).all()  # padding zeroed as on the dense path


def test_the_flex_path_compiles_without_graph_breaks():
    """The block mask is built inside the compiled graph (fullgraph; backend eager keeps it fast)."""
    x, lengths, positions = _pairs()
    mask = AttentionMask(sides=torch.from_numpy(second_side(positions.numpy())))
    model = _model()
    model.attention_backend = "flex"
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, lengths, langs=0, positions=positions, attn_mask=mask, padded=True),
                                   model(x, lengths, langs=0, positions=positions, attn_mask=mask))
    torch._dynamo.reset()


def test_which_attention_runs_where():
    cpu = torch.zeros(1)
    assert not use_flex("auto", cpu, training=False, attention_dropout=0.0)  # CPU: dense SDPA
    assert not use_flex("sdpa", cpu, training=False, attention_dropout=0.0)
    assert use_flex("flex", cpu, training=True, attention_dropout=0.0)
    with pytest.raises(ValueError, match="no attention dropout"):
        use_flex("flex", cpu, training=True, attention_dropout=0.1)
    with pytest.raises(ValueError, match="must be one of"):
        use_flex("triton", cpu, training=False, attention_dropout=0.0)
    model = _model(attention_dropout=0.1).train()
    x, lengths, positions = _pairs()
    sides = torch.from_numpy(second_side(positions.numpy()))
    model(x, lengths, positions=positions, attn_mask=AttentionMask(sides=sides)).sum().backward()  # auto: dense
