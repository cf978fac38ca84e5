"""Embeddings API (``Pretrained.encode``) and retrieval scoring."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import xlm
from xlm.config import ModelConfig
from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError
from xlm.retrieval import precision_at_1, similarity

CODES = "h e 9\nl o</w> 8\nhe l 7\nhel lo</w> 6\nw o 5\nwo r 4\nwor l 3\nworl d</w> 2\n"
WORDS = ["hello", "world", "the", ".", "le", "monde", "bonjour", "h@@", "e@@", "l@@", "o@@", "w@@", "r@@", "d", "o"]


def model(n_langs=2, lowercase=True) -> xlm.Pretrained:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=2, n_heads=4, dropout=0.1, attention_dropout=0.1, max_positions=64)
    m = xlm.TransformerModel(cfg, 14 + len(WORDS), n_langs)
    return xlm.Pretrained(m, Dictionary(WORDS), {"en": 0, "fr": 1} if n_langs == 2 else {"en": 0},
                          bpe_codes=CODES, lowercase=lowercase)


def test_shapes_pooling_and_pieces():
    p = model()
    sents = ["Hello, World!", "the world .", "Bonjour le monde", "hello"]
    first = p.encode(sents, lang="en")
    mean = p.encode(sents, lang="en", pooling="mean")
    assert first.shape == mean.shape == (4, 32) and not torch.allclose(first, mean)
    toks = p.encode(["Hello, World!"], lang="en", per_token=True)[0]
    assert toks.pieces == ["hello", ",", "world", "!"]  # Moses-tokenized, lowercased, BPE'd with the codes
    assert toks.states.shape == (4, 32)
    assert torch.allclose(toks.states.mean(0), mean[0], atol=1e-6)
    assert p.model.training  # dropout is off inside encode, and the mode is restored


def test_embedding_does_not_depend_on_the_batch():
    p = model()
    alone = p.encode(["hello"], lang="en")
    with_long = p.encode(["the world . hello world hello world the", "hello", "monde"], lang="en", batch_size=3)
    assert torch.allclose(alone[0], with_long[1], atol=1e-5)
    small_batches = p.encode(["the world . hello world hello world the", "hello", "monde"], lang="en", batch_size=1)
    assert torch.allclose(small_batches, with_long, atol=1e-5)


def test_language_is_passed_to_the_model():
    p = model()
    en, fr = p.encode(["le monde"], lang="en"), p.encode(["le monde"], lang="fr")
    assert not torch.allclose(en, fr)
    with pytest.raises(XLMError, match="'de' is not a language of this model"):
        p.encode(["x"], lang="de")
    mono = model(n_langs=1)
    assert mono.encode(["le monde"], lang="de").shape == (1, 32)  # one-language models take any code


def test_precision_at_1_and_margin():
    torch.manual_seed(0)
    src = torch.randn(50, 16)
    tgt = src + 0.1 * torch.randn(50, 16)
    res = precision_at_1(src, tgt)
    assert res.src_to_tgt == res.tgt_to_src == 100.0
    assert precision_at_1(src, tgt, margin=True).src_to_tgt == 100.0
    shuffled = precision_at_1(src, tgt[torch.randperm(50)])
    assert shuffled.src_to_tgt < 20
    # a hub target close to every source wins under cosine, not under the margin
    hub_src = torch.randn(20, 16)
    hub_tgt = hub_src + 0.8 * torch.randn(20, 16)
    hub_tgt[0] = hub_src.mean(0) * 3
    hub_wins = [similarity(hub_src, hub_tgt, margin).argmax(1).eq(0).sum() for margin in (False, True)]
    assert hub_wins[0] >= hub_wins[1]
    with pytest.raises(XLMError, match="same non-zero number"):
        precision_at_1(src, tgt[:3])


def test_retrieval_command_line(tmp_path):
    p = model()
    path = xlm.save_pretrained(p, tmp_path / "m.pt")
    (tmp_path / "src").write_text("hello world\nthe world\nbonjour\n")
    (tmp_path / "tgt").write_text("hello world\nthe world\nbonjour\n")
    out = subprocess.run([sys.executable, "-m", "xlm.evaluate", "retrieval", "--model", str(path), "--pair", "en-fr",
                          "--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "tgt"), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "en->fr P@1" in out.stdout and '"n": 3' in out.stdout
    (tmp_path / "short").write_text("hello\n")
    bad = subprocess.run([sys.executable, "-m", "xlm.evaluate", "retrieval", "--model", str(path), "--pair", "en-fr",
                          "--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "short")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "must be aligned" in bad.stderr and bad.stderr.count("\n") == 1


def test_retrieval_command_line_takes_the_codes_an_original_pth_lacks(tmp_path):
    pth = xlm.save_pretrained(model(), tmp_path / "released.pth", format="original")
    (tmp_path / "codes").write_text(CODES)
    (tmp_path / "src").write_text("Hello World\nworld hello\n")
    args = [sys.executable, "-m", "xlm.evaluate", "retrieval", "--model", str(pth), "--pair", "en-fr",
            "--src", str(tmp_path / "src"), "--tgt", str(tmp_path / "src")]
    bare = subprocess.run(args, capture_output=True, text=True)
    assert bare.returncode == 1 and bare.stderr.count("\n") == 1 and "pass codes=PATH" in bare.stderr
    ok = subprocess.run(args + ["--codes", str(tmp_path / "codes"), "--lowercase"], capture_output=True, text=True)
    assert ok.returncode == 0 and "warning" not in ok.stderr, ok.stderr
    cased = subprocess.run(args + ["--codes", str(tmp_path / "codes")], capture_output=True, text=True)
    assert cased.returncode == 0 and "warning: " in cased.stderr and "--lowercase" in cased.stderr
