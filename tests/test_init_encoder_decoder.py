"""init.encoder / init.decoder: a translation model's both sides start from a pretrained model, the
decoder's cross-attention kept at its initialization (the paper's and the original's build_model)."""

from __future__ import annotations

import pytest
import torch

import xlm
from xlm.config import Config, ModelConfig
from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError
from xlm.initialize import init_encoder_decoder
from xlm.model.decoder import EncoderDecoder
from xlm.model.transformer import TransformerModel
from xlm.pretrained import Pretrained

CFG = ModelConfig(emb_dim=16, n_layers=2, n_heads=2, dropout=0.0, attention_dropout=0.0)


def pretrained_file(tmp_path, words, langs) -> tuple[str, TransformerModel]:
    torch.manual_seed(0)
    model = TransformerModel(CFG, 14 + len(words), len(langs))
    p = Pretrained(model, Dictionary(words), {lang: i for i, lang in enumerate(langs)})
    path = tmp_path / "pretrained.pt"
    xlm.save_pretrained(p, path)
    return str(path), model


def test_both_sides_from_one_pretrained_model(tmp_path):
    path, src = pretrained_file(tmp_path, ["le", "chat", "the", "cat"], ["en", "fr"])
    words = ["cat", "new", "le", "the"]  # another vocabulary: rows mapped by word
    torch.manual_seed(1)
    cfg = ModelConfig(**{**CFG.__dict__, "encoder_only": False})
    model = EncoderDecoder(cfg, 14 + len(words), 2)
    cross_before = {k: v.clone() for k, v in model.decoder.state_dict().items() if k.startswith("encoder_attn")}
    new_row_before = model.encoder.embeddings.weight[15].clone()
    reports = init_encoder_decoder(model, Dictionary(words), {"en": 0, "fr": 1}, path)
    s = src.state_dict()
    for side in (model.encoder, model.decoder):
        state = side.state_dict()
        for k, v in s.items():
            if k not in ("embeddings.weight", "pred_layer.proj.weight", "pred_layer.proj.bias"):
                assert torch.equal(state[k], v), k
        assert torch.equal(state["embeddings.weight"][14], s["embeddings.weight"][17])  # cat
        assert torch.equal(state["embeddings.weight"][16], s["embeddings.weight"][14])  # le
    assert torch.equal(model.encoder.embeddings.weight[15], new_row_before)  # "new": its initial row
    for k, v in model.decoder.state_dict().items():
        if k.startswith("encoder_attn"):
            assert torch.equal(v, cross_before[k])
    assert reports[1].cross_attention_new == 2 * 8 + 2 * 2  # per layer: 4 linears (w, b), one norm (w, b)
    assert any("cross-attention" in line for line in reports[1].lines())


def test_from_a_translation_model_each_side_its_own(tmp_path):
    torch.manual_seed(2)
    cfg = ModelConfig(**{**CFG.__dict__, "encoder_only": False})
    src = EncoderDecoder(cfg, 18, 2)
    xlm.save_pretrained(Pretrained(src, Dictionary(["a", "b", "c", "d"]), {"en": 0, "fr": 1}), tmp_path / "mt.pt")
    model = EncoderDecoder(cfg, 18, 2)
    init_encoder_decoder(model, Dictionary(["a", "b", "c", "d"]), {"en": 0, "fr": 1}, str(tmp_path / "mt.pt"))
    for side in ("encoder", "decoder"):
        theirs = getattr(src, side).state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in getattr(model, side).state_dict().items())


def test_strict_refuses_another_architecture_and_config_checks(tmp_path):
    path, _ = pretrained_file(tmp_path, ["a", "b"], ["en", "fr"])
    cfg = ModelConfig(**{**CFG.__dict__, "n_layers": 3, "encoder_only": False})
    model = EncoderDecoder(cfg, 16, 2)
    with pytest.raises(XLMError, match="init.encoder"):
        init_encoder_decoder(model, Dictionary(["a", "b"]), {"en": 0, "fr": 1}, path)
    reports = init_encoder_decoder(model, Dictionary(["a", "b"]), {"en": 0, "fr": 1}, path, strict=False)
    assert "attentions.2.q_lin.weight" in reports[0].new
    with pytest.raises(XLMError, match="no such file"):
        init_encoder_decoder(model, Dictionary(["a", "b"]), {"en": 0, "fr": 1}, str(tmp_path / "missing"))
    c = Config()
    c.init.encoder = path
    with pytest.raises(XLMError, match="init.encoder/init.decoder"):
        c.validate()
    c = Config()
    c.data.langs = ["en", "fr"]
    c.objectives.camlm = ["en-fr"]  # an encoder-only objective on an encoder-decoder
    c.model.encoder_only = False
    with pytest.raises(XLMError, match="objectives.camlm: not with an encoder-decoder"):
        c.validate()
