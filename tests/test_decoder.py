"""The encoder-decoder against the ORIGINAL facebookresearch/XLM code (its outputs kept as goldens in
tests/golden/original_mt/, made by scripts/make_original_mt_golden.py), checkpoint round trips, and
decoding: original greedy/beam outputs, beam 1 = greedy, exhaustive beam, cache = no cache."""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path

import pytest
import torch

import xlm
from xlm.config import ModelConfig
from xlm.data.dictionary import N_SPECIAL, Dictionary
from xlm.errors import XLMError
from xlm.generation import generate, translate_ids
from xlm.model.decoder import EncoderDecoder, TransformerDecoder
from xlm.model.transformer import TransformerModel
from xlm.serialization import safe_load

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = torch.load(ROOT / "tests" / "golden" / "original_mt" / "golden.pt", weights_only=True)
P = GOLDEN["params"]
CFG = ModelConfig(emb_dim=P["emb_dim"], n_layers=P["n_layers"], n_heads=P["n_heads"], dropout=0.0,
                  attention_dropout=0.0, gelu_activation=True, encoder_only=False)


def golden_model() -> EncoderDecoder:
    model = EncoderDecoder(CFG, P["n_words"], P["n_langs"]).eval()
    model.encoder.load_state_dict(GOLDEN["encoder"])
    model.decoder.load_state_dict(GOLDEN["decoder"])
    return model


def original_checkpoint(path: Path) -> Path:
    """The golden weights as the original's train.py saves an MT model."""
    words = [f"w{i}" for i in range(P["n_words"] - N_SPECIAL)]
    d = Dictionary(words)
    params = {**P, "encoder_only": False, "langs": ["en", "fr"], "n_layers": P["n_layers"]}
    torch.save({"encoder": GOLDEN["encoder"], "decoder": GOLDEN["decoder"], "params": params,
                "dico_id2word": dict(enumerate(d.id2word)), "dico_word2id": d.word2id,
                "dico_counts": dict(zip(d.id2word, d.counts))}, path)
    return path


def test_parameter_names_are_the_originals():
    model = golden_model()
    assert list(model.decoder.state_dict()) == list(GOLDEN["decoder"])
    assert list(model.encoder.state_dict()) == list(GOLDEN["encoder"])
    assert isinstance(model.decoder, TransformerModel)  # the encoder's layers, plus cross-attention


@torch.no_grad()
def test_outputs_equal_the_original():
    model, inp, out = golden_model(), GOLDEN["inputs"], GOLDEN["outputs"]
    enc = model.encode(inp["src"], inp["src_len"], 0)
    torch.testing.assert_close(enc, out["enc"], atol=1e-5, rtol=0)
    dec = model.decoder(inp["tgt"], lengths=inp["tgt_len"], langs=1, src_enc=enc, src_len=inp["src_len"])
    torch.testing.assert_close(dec, out["dec"], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.decoder.predict(dec), out["scores"], atol=1e-5, rtol=0)


def _original_rows(tokens: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    return [row[1:n - 1] for row, n in zip(tokens.tolist(), lengths.tolist())]


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_and_beam_equal_the_originals(use_cache):
    model, inp, out = golden_model(), GOLDEN["inputs"], GOLDEN["outputs"]
    hyp = translate_ids(model, inp["src"], inp["src_len"], 0, 1, max_len=9, use_cache=use_cache)
    assert hyp.tokens == _original_rows(out["greedy"], out["greedy_len"])
    for name, (beam_size, lp, early) in {"beam3": (3, 1.0, False), "beam4_lp0.5_early": (4, 0.5, True),
                                         "beam2_lp2": (2, 2.0, False)}.items():
        hyp = translate_ids(model, inp["src"], inp["src_len"], 0, 1, beam_size=beam_size, length_penalty=lp,
                            early_stopping=early, max_len=9, use_cache=use_cache)
        assert hyp.tokens == _original_rows(out[name], out[name + "_len"]), name


def test_original_mt_checkpoint_loads_and_exports_unchanged(tmp_path):
    p = xlm.load_pretrained(original_checkpoint(tmp_path / "mt.pth"))
    assert isinstance(p.model, EncoderDecoder) and not p.model.cfg.encoder_only
    inp, out = GOLDEN["inputs"], GOLDEN["outputs"]
    with torch.no_grad():
        dec = p.model.teacher_forced(inp["src"], inp["src_len"], 0, inp["tgt"], inp["tgt_len"], 1)
    torch.testing.assert_close(p.model.decoder.predict(dec), out["scores"], atol=1e-5, rtol=0)
    for fmt in ("original", "xlm"):
        xlm.save_pretrained(p, tmp_path / f"out.{fmt}", format=fmt)
        back = xlm.load_pretrained(tmp_path / f"out.{fmt}")
        for side in ("encoder", "decoder"):
            state = getattr(back.model, side).state_dict()
            assert list(state) == list(GOLDEN[side])
            assert all(torch.equal(state[k], GOLDEN[side][k]) for k in state)
    raw = safe_load(tmp_path / "out.original")
    assert set(raw) >= {"encoder", "decoder", "params", "dico_id2word"} and "model" not in raw
    assert raw["params"]["encoder_only"] is False
    with pytest.raises(XLMError, match="encoder-decoder"):
        xlm.save_pretrained(p, tmp_path / "hf", format="hf")


def _original_module():
    """The original transformer.py from a checkout (XLM_ORIGINAL), or None: the goldens stand in."""
    checkout = os.environ.get("XLM_ORIGINAL")
    if not checkout or not Path(checkout, "xlm", "model", "transformer.py").exists():
        return None
    spec = importlib.util.spec_from_file_location("make_golden", ROOT / "scripts" / "make_original_mt_golden.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script, script.load_original_transformer(checkout)


def test_ours_into_the_original_live():
    """Direction ours -> original with the original code itself (needs a checkout; CI uses the goldens)."""
    found = _original_module()
    if found is None:
        pytest.skip("XLM_ORIGINAL (a checkout of facebookresearch/XLM) not set")
    script, mod = found
    torch.manual_seed(5)
    ours = EncoderDecoder(CFG, P["n_words"], P["n_langs"]).eval()
    enc, dec = script.original_models(mod)
    enc.load_state_dict(ours.encoder.state_dict())
    dec.load_state_dict(ours.decoder.state_dict())
    inp = GOLDEN["inputs"]
    theirs = script.run_original(mod, enc, dec, inp)
    with torch.no_grad():
        h = ours.teacher_forced(inp["src"], inp["src_len"], 0, inp["tgt"], inp["tgt_len"], 1)
    torch.testing.assert_close(ours.decoder.predict(h), theirs["scores"], atol=1e-5, rtol=0)
    hyp = translate_ids(ours, inp["src"], inp["src_len"], 0, 1, beam_size=3, max_len=9)
    assert hyp.tokens == _original_rows(theirs["beam3"], theirs["beam3_len"])


# -- decoding properties ------------------------------------------------------------------------
def _random_model(n_words: int, seed: int, std: float = 0.3) -> EncoderDecoder:
    torch.manual_seed(seed)
    cfg = ModelConfig(emb_dim=16, n_layers=2, n_heads=2, dropout=0.0, attention_dropout=0.0, encoder_only=False)
    model = EncoderDecoder(cfg, n_words, 2).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" not in name:
                p.normal_(0.0, std)
    return model


def _sources(n_words: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 3, 5, 4])
    x = torch.full((4, 6), 2)
    for i, n in enumerate(lengths.tolist()):
        x[i, :n] = torch.randint(3, n_words, (n,), generator=g)
        x[i, 0] = x[i, n - 1] = 1
    return x, lengths


def test_beam_size_one_is_greedy():
    """With early stopping (the first hypothesis ends the search); without it the original's beam 1
    goes on looking for a better-scored longer hypothesis after the first </s>, by design."""
    from xlm.generation import _beam, _Stepper

    model = _random_model(12, 2)
    with torch.no_grad():
        model.decoder.pred_layer.proj.bias[1] += 1.5
    src, n = _sources(12)
    greedy = translate_ids(model, src, n, 0, 1, max_len=12)

    enc = model.encode(src, n, 0)
    stepper = _Stepper(model.decoder, 1, True, src_enc=enc, src_len=n)
    start = torch.full((4, 1), 1)
    with torch.no_grad():
        beam = _beam(stepper, start, 11, 1, 1, 2, 1.0, True)
    assert beam.tokens == greedy.tokens
    assert 0 < sum(len(t) < 10 for t in greedy.tokens) < 4, greedy.tokens  # some end with </s> before max_len
    torch.testing.assert_close(beam.score, greedy.score, atol=1e-5, rtol=0)
    torch.testing.assert_close(beam.logprob, greedy.logprob, atol=1e-5, rtol=0)


@pytest.mark.parametrize("length_penalty", [1.0, 0.5])
def test_full_width_beam_finds_the_exhaustive_best(length_penalty):
    n_words, max_len = 5, 5  # ids 0..4, </s> = 1; at most 3 words, 4 generated tokens
    model = _random_model(n_words, 3, std=0.6)
    src, n = _sources(n_words)
    steps = max_len - 1
    beam_size = (n_words - 1) ** (steps - 1)  # every open prefix fits in the beam
    hyp = translate_ids(model, src, n, 0, 1, beam_size=beam_size, length_penalty=length_penalty,
                        early_stopping=False, max_len=max_len)
    # exhaustive: every sequence ending with </s>, or cut at the last step, scored the same way
    candidates = []
    for k in range(1, steps + 1):
        for words in itertools.product([w for w in range(n_words) if w != 1], repeat=k - 1):
            for last in range(n_words) if k == steps else [1]:
                candidates.append((list(words), last))
    seqs = [[1] + words + [last] for words, last in candidates]
    lengths = torch.tensor([len(q) for q in seqs])
    tgt = torch.full((len(seqs), int(lengths.max())), 2)
    for i, q in enumerate(seqs):
        tgt[i, : len(q)] = torch.tensor(q)
    with torch.no_grad():
        enc = model.encode(src, n, 0)
        for b in range(len(src)):
            h = model.decoder(tgt, lengths=lengths, langs=1, src_enc=enc[b:b + 1].expand(len(seqs), -1, -1),
                              src_len=n[b:b + 1].expand(len(seqs)))
            logp = model.decoder.predict(h[:, :-1]).log_softmax(-1).gather(2, tgt[:, 1:, None]).squeeze(2)
            real = torch.arange(tgt.shape[1] - 1)[None] < (lengths - 1)[:, None]
            scores = (logp * real).sum(1) / (lengths - 1).double() ** length_penalty
            best = int(scores.argmax())
            assert hyp.tokens[b] == candidates[best][0]
            assert abs(float(hyp.score[b]) - float(scores[best])) < 1e-5


@pytest.mark.parametrize("beam_size", [1, 4])
def test_cache_gives_the_same_tokens_and_scores(beam_size):
    model = _random_model(30, 1)
    src, n = _sources(30, seed=2)
    a = translate_ids(model, src, n, 0, 1, beam_size=beam_size, max_len=20, use_cache=True)
    b = translate_ids(model, src, n, 0, 1, beam_size=beam_size, max_len=20, use_cache=False)
    assert a.tokens == b.tokens
    torch.testing.assert_close(a.score, b.score, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.logprob, b.logprob, atol=1e-5, rtol=0)


def test_sampling_with_cache_and_filters():
    model = _random_model(30, 1)
    src, n = _sources(30, seed=2)
    runs = [translate_ids(model, src, n, 0, 1, sample=True, temperature=0.8, top_k=10, top_p=0.9, max_len=15,
                          use_cache=c, generator=torch.Generator().manual_seed(7)) for c in (True, False)]
    assert runs[0].tokens == runs[1].tokens
    torch.testing.assert_close(runs[0].logprob, runs[1].logprob, atol=1e-5, rtol=0)
    top1 = translate_ids(model, src, n, 0, 1, sample=True, top_k=1, max_len=15,
                         generator=torch.Generator().manual_seed(0))
    assert top1.tokens == translate_ids(model, src, n, 0, 1, max_len=15).tokens  # top-1 sampling is greedy
    with pytest.raises(XLMError, match="beam_size 1"):
        translate_ids(model, src, n, 0, 1, sample=True, beam_size=2)


def test_clm_generate_left_padding_and_cache():
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=16, n_layers=2, n_heads=2, dropout=0.0, attention_dropout=0.0)
    model = TransformerModel(cfg, 25, 2).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" not in name:
                p.normal_(0.0, 0.3)
    short, long = [1, 7, 9], [1, 4, 12, 20, 6, 8]
    alone = generate(model, [short], 1, max_new_tokens=10)
    together = generate(model, [long, short], 1, max_new_tokens=10)
    assert together.tokens[1] == alone.tokens[0]
    torch.testing.assert_close(together.logprob[1:], alone.logprob, atol=1e-5, rtol=0)
    for beam_size in (1, 3):
        a = generate(model, [long, short], 1, max_new_tokens=10, beam_size=beam_size, use_cache=True)
        b = generate(model, [long, short], 1, max_new_tokens=10, beam_size=beam_size, use_cache=False)
        assert a.tokens == b.tokens
        torch.testing.assert_close(a.score, b.score, atol=1e-5, rtol=0)
    # the continuation is what the model's own forward predicts, token after token
    seq = list(long)
    for word in together.tokens[0][:3]:
        with torch.no_grad():
            logits = model.predict(model(torch.tensor([seq]), langs=1, causal=True)[0, -1])
        assert int(logits.argmax()) == word
        seq.append(word)
    with pytest.raises(XLMError, match="max_positions"):
        generate(model, [short], 1, max_new_tokens=600)


def test_decoder_rejects_src_for_an_encoder():
    from xlm.model.decoder import run_layers

    model = TransformerModel(ModelConfig(emb_dim=16, n_layers=1, n_heads=2), 20, 1)
    with pytest.raises(ValueError, match="cross-attention"):
        run_layers(model, torch.ones(1, 2, dtype=torch.long), src_enc=torch.zeros(1, 3, 16), src_len=torch.tensor([3]))
    assert isinstance(TransformerDecoder(ModelConfig(emb_dim=16, n_layers=1, n_heads=2), 20, 1).encoder_attn[0],
                      torch.nn.Module)
