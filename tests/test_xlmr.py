"""Hugging Face ``xlm-roberta`` folders: load with outputs equal to transformers', continue pretraining
through train.py (``init.from``), export back; the special ids are the model's (pad 1, </s> 2, <mask> last).

Every model is a tiny random ``XLMRobertaForMaskedLM`` built here with the real transformers classes
and a SentencePiece model trained on the bundled slice (no hub access).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from training_data import ROOT, SUBPROCESS_ENV, tiny_config_dict, write_config

import xlm
from xlm.config import ModelConfig
from xlm.data.binarize import binarize_file
from xlm.data.dictionary import Dictionary
from xlm.data.sentencepiece import encode_file, write_spm_vocab
from xlm.errors import XLMError
from xlm.initialize import init_from
from xlm.model import TransformerModel

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaTokenizer  # noqa: E402

SLICE = ROOT / "data" / "msgcorpus" / "mono"
SENTENCES = ["Cannot open the file %s.", "Le fichier est introuvable", "ok"]
ARCH = {"emb_dim": 32, "n_layers": 2, "n_heads": 4, "ffn_dim": 64, "layer_norm_eps": 1e-5, "position_offset": 2,
        "n_token_types": 1, "lm_head_transform": True, "use_lang_emb": False, "max_positions": 66,
        "dropout": 0.0, "attention_dropout": 0.0}


pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def spm_model() -> bytes:
    """An XLM-R-style SentencePiece model: <unk> 0, <s> 1, </s> 2, then the pieces."""
    lines = [line for lg in ("en", "fr") for line in (SLICE / f"train.{lg}").read_text(encoding="utf-8")
             .split("\n")[:800]]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=300,
                                   model_type="unigram", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
                                   minloglevel=2, hard_vocab_limit=False)
    return buf.getvalue()


@pytest.fixture(scope="module")
def hf(spm_model, tmp_path_factory) -> tuple[Path, XLMRobertaForMaskedLM]:
    """A random XLMRobertaForMaskedLM (LayerNorms and biases random too) with its sentencepiece.bpe.model."""
    folder = tmp_path_factory.mktemp("xlmr") / "hf"
    n_pieces = spm.SentencePieceProcessor(model_proto=spm_model).get_piece_size()
    conf = XLMRobertaConfig(vocab_size=n_pieces + 2, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=66, type_vocab_size=1,
                            layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = XLMRobertaForMaskedLM(conf).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm = "LayerNorm" in name or "layer_norm" in name
            p.normal_(0, 0.3 if norm or name.endswith("bias") else 0.1)
            if norm and name.endswith("weight"):
                p.add_(1)
    model.save_pretrained(folder)
    (folder / "sentencepiece.bpe.model").write_bytes(spm_model)
    return folder, model


def _hf_logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _our_logits(p: xlm.Pretrained, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return p.model.predict(p.model(ids, lengths=lengths))


def test_load_gives_transformers_outputs_and_keeps_the_models_special_ids(hf):
    folder, model = hf
    p = xlm.load_pretrained(folder)
    d = p.dictionary
    assert (d.bos_index, d.pad_index, d.eos_index, d.unk_index, d.mask_index) == (0, 1, 2, 3, len(d) - 1)
    assert d[d.mask_index] == "<mask>" and p.model.pad_index == 1 and len(d) == model.config.vocab_size
    ids, lengths, _ = p.tokenize(SENTENCES, "en")
    batch = XLMRobertaTokenizer.from_pretrained(folder)(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(ids, batch["input_ids"])  # <s> pieces </s>, padded with 1, as HF's tokenizer
    real = batch["attention_mask"].bool()
    diff = (_our_logits(p, ids, lengths)[real] - _hf_logits(model, batch)[real]).abs().max().item()
    assert diff < 1e-5, diff


def test_export_round_trip_and_our_checkpoint_keep_the_outputs(hf, tmp_path):
    folder, model = hf
    p = xlm.load_pretrained(folder)
    xlm.save_pretrained(p, tmp_path / "out", format="hf")
    back = XLMRobertaForMaskedLM.from_pretrained(tmp_path / "out").eval()
    tok = XLMRobertaTokenizer.from_pretrained(tmp_path / "out")
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(_hf_logits(back, batch), _hf_logits(model, batch))  # the same tensors, bit for bit
    # our checkpoint format keeps the layout, the SentencePiece model and the outputs
    xlm.save_pretrained(p, tmp_path / "model.pt")
    q = xlm.load_pretrained(tmp_path / "model.pt")
    assert q.dictionary == p.dictionary and q.dictionary.layout == "xlmr" and q.spm_model == p.spm_model
    ids, lengths, _ = q.tokenize(SENTENCES, "fr")
    assert torch.equal(ids, batch["input_ids"])
    assert torch.equal(_our_logits(q, ids, lengths), _our_logits(p, ids, lengths))
    with pytest.raises(XLMError, match="original XLM format cannot hold"):
        xlm.save_pretrained(p, tmp_path / "model.pth", format="original")


def test_what_xlm_roberta_cannot_hold_is_refused(hf, tmp_path):
    p = xlm.load_pretrained(hf[0])
    p.model.cfg.pre_norm = True
    with pytest.raises(XLMError, match="model.pre_norm: True cannot be exported as xlm-roberta"):
        xlm.save_pretrained(p, tmp_path / "x", format="hf")
    conf = json.loads((hf[0] / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**conf, "position_embedding_type": "relative_key"}))
    with pytest.raises(XLMError, match="position_embedding_type='relative_key' is not supported"):
        xlm.load_pretrained(bad)


def test_new_options_default_to_xlm_parameters():
    m = TransformerModel(ModelConfig(emb_dim=16, n_heads=2, n_layers=1), 40, 2)
    assert not any(k.startswith(("token_type", "pred_layer.dense", "pred_layer.layer_norm")) for k in m.state_dict())
    assert m.pad_index == 2 and m.layer_norm_emb.eps == 1e-12 and m.ffns[0].lin1.out_features == 64


def _data_folder(folder: Path, spm_model: bytes) -> Path:
    """The slice segmented with the model's SentencePiece, vocabulary in its order (XLM's specials in front)."""
    folder.mkdir(parents=True)
    (folder / "spm.model").write_bytes(spm_model)
    raw = folder / "raw"
    raw.mkdir()
    sizes = {"train": 400, "valid": 50, "test": 50}
    for split, n in sizes.items():
        for lg in ("en", "fr"):
            lines = (SLICE / f"{split}.{lg}").read_text(encoding="utf-8").split("\n")[:n]
            (raw / f"{split}.{lg}").write_text("\n".join(lines) + "\n", encoding="utf-8")
            encode_file(folder / "spm.model", raw / f"{split}.{lg}", raw / f"{split}.{lg}.spm", workers=1)
    write_spm_vocab(folder / "spm.model", [], folder / "vocab", order="model")
    for split in sizes:
        for lg in ("en", "fr"):
            binarize_file(folder / "vocab", raw / f"{split}.{lg}.spm", folder / f"{split}.{lg}", workers=1,
                          copy_vocab=False)
    (folder / "preprocess.json").write_text(json.dumps(
        {"tokenize": False, "lower_remove_accent": False, "pre_segmented": [], "segmentation": "sentencepiece"}))
    return folder


def test_continued_pretraining_through_train_py_then_export(hf, spm_model, tmp_path):
    folder, hf_model = hf
    data = _data_folder(tmp_path / "data", spm_model)
    dico = Dictionary.read_vocab(data / "vocab")
    src = xlm.load_pretrained(folder).dictionary
    # init.from maps rows by word and the specials by role: the run's model (XLM's layout, pad 2) computes
    # the XLM-R model's function, its <special1> row holding XLM-R's <mask>
    model = TransformerModel(ModelConfig(**ARCH), len(dico), 2).eval()
    report = init_from(model, dico, {"en": 0, "fr": 1}, str(folder), strict=True)
    assert report.words_found == len(dico) - 9  # all but <special0>, <special2..9>
    ours = torch.tensor([[dico.eos_index, dico.mask_index, *dico.encode(["▁file", "▁the"]), dico.eos_index]])
    theirs = torch.tensor([[src.eos_index, src.mask_index, *src.encode(["▁file", "▁the"]), src.eos_index]])
    with torch.no_grad():
        got = model.predict(model(ours))
        want = hf_model(input_ids=theirs).logits
    cols = torch.tensor([src.word2id[w] for w in src.id2word[:4] + dico.id2word[14:]] + [src.mask_index])
    ours_cols = torch.tensor([dico.word2id[w] for w in src.id2word[:4] + dico.id2word[14:]] + [dico.mask_index])
    assert (got[..., ours_cols] - want[..., cols]).abs().max().item() < 1e-5

    cfg = tiny_config_dict(data, tmp_path / "run")
    cfg["model"] = ARCH
    cfg["objectives"] = {"mlm": ["en", "fr"]}
    cfg["train"].update(max_steps=6, eval_every=6, save_every=6)
    cfg["init"] = {"from": str(folder)}
    run = subprocess.run([sys.executable, "train.py", "--config", str(write_config(tmp_path / "run.yaml", cfg))],
                         cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "init.from" in (tmp_path / "run" / "train.log").read_text()

    p = xlm.load_pretrained(tmp_path / "run")
    assert p.spm_model == spm_model and p.model.cfg.position_offset == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tokenizer is written: no warning
        xlm.save_pretrained(p, tmp_path / "export", format="hf")
    back = XLMRobertaForMaskedLM.from_pretrained(tmp_path / "export").eval()
    assert not torch.equal(back.roberta.embeddings.word_embeddings.weight,
                           hf_model.roberta.embeddings.word_embeddings.weight)  # it trained
    tok = XLMRobertaTokenizer.from_pretrained(tmp_path / "export")
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], XLMRobertaTokenizer.from_pretrained(folder)(
        SENTENCES, padding=True, return_tensors="pt")["input_ids"])  # the vocabulary kept XLM-R's ids
    # the same inputs in each layout give the same logits, column for column
    e = xlm.load_pretrained(tmp_path / "export").dictionary
    to_ours = torch.tensor([p.dictionary.word2id.get(w, p.dictionary.mask_index) for w in e.id2word])
    to_ours[e.pad_index] = p.dictionary.pad_index
    ids = to_ours[batch["input_ids"]]
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ours_logits = p.model.predict(p.model(ids, lengths=real.sum(1)))[..., to_ours]
    diff = (ours_logits[real] - _hf_logits(back, batch)[real]).abs().max().item()
    assert diff < 1e-5, diff


def test_a_folder_with_tokenizer_json_only_gives_the_ids_but_refuses_raw_text(hf, tmp_path):
    folder, model = hf
    out = tmp_path / "fast"
    model.save_pretrained(out)
    XLMRobertaTokenizer.from_pretrained(folder).save_pretrained(out)
    (out / "sentencepiece.bpe.model").unlink(missing_ok=True)
    assert (out / "tokenizer.json").exists()
    p = xlm.load_pretrained(out)
    assert p.dictionary == xlm.load_pretrained(folder).dictionary and p.spm_model is None
    with pytest.raises(XLMError, match="segmented with SentencePiece"):
        p.tokenize(SENTENCES, "en")
    ids, _, _ = p.tokenize(["▁the ▁file"], "en", tokenized=True)
    assert ids.tolist() == [[0, *p.dictionary.encode(["▁the", "▁file"]), 2]]


def _ernie_m_reference(sd: dict, conf: dict, ids: torch.Tensor) -> torch.Tensor:
    """``ErnieMModel.forward`` in eval mode, written from transformers 4.x ``models/deprecated/ernie_m``:
    positions ``i + 2``, post-norm layers, padding (``pad_token_id``) masked with the float minimum."""
    import math

    import torch.nn.functional as F

    dim, n_heads, eps = conf["hidden_size"], conf["num_attention_heads"], conf["layer_norm_eps"]
    bs, n = ids.shape
    sd = {k.removeprefix("ernie_m."): v for k, v in sd.items()}

    def norm(x, name):
        return F.layer_norm(x, (dim,), sd[name + ".weight"], sd[name + ".bias"], eps)

    def lin(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    h = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.position_embeddings.weight"][torch.arange(n) + 2]
    h = norm(h, "embeddings.layer_norm")
    mask = ((ids == conf["pad_token_id"]).float() * torch.finfo(torch.float32).min)[:, None, None, :]
    for i in range(conf["num_hidden_layers"]):
        p = f"encoder.layers.{i}."
        q, k, v = (lin(h, f"{p}self_attn.self_attn.{x}_proj").view(bs, n, n_heads, -1).transpose(1, 2) for x in "qkv")
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // n_heads) + mask
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(bs, n, dim)
        h = norm(h + lin(att, p + "self_attn.out_proj"), p + "norm1")
        h = norm(h + lin(F.gelu(lin(h, p + "linear1")), p + "linear2"), p + "norm2")
    return h


def test_an_ernie_m_golden_made_by_hand_loads_with_a_new_mlm_head(tmp_path):
    """transformers 5.x has no ernie_m: the golden is a state dict in the layout of its last version."""
    from safetensors.torch import save_file

    conf = {"model_type": "ernie_m", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 48, "hidden_act": "gelu", "max_position_embeddings": 40,
            "pad_token_id": 1, "layer_norm_eps": 1e-5, "act_dropout": 0.0}
    gen = torch.Generator().manual_seed(0)
    shapes = {"embeddings.word_embeddings.weight": (50, 16), "embeddings.position_embeddings.weight": (40, 16),
              "embeddings.layer_norm.weight": (16,), "embeddings.layer_norm.bias": (16,),
              "pooler.dense.weight": (16, 16), "pooler.dense.bias": (16,)}
    for i in range(2):
        for name, (o, n) in {"self_attn.self_attn.q_proj": (16, 16), "self_attn.self_attn.k_proj": (16, 16),
                             "self_attn.self_attn.v_proj": (16, 16), "self_attn.out_proj": (16, 16),
                             "linear1": (48, 16), "linear2": (16, 48)}.items():
            shapes[f"encoder.layers.{i}.{name}.weight"] = (o, n)
            shapes[f"encoder.layers.{i}.{name}.bias"] = (o,)
        for name in ("norm1", "norm2"):
            shapes[f"encoder.layers.{i}.{name}.weight"] = shapes[f"encoder.layers.{i}.{name}.bias"] = (16,)
    sd = {"ernie_m." + k: torch.randn(s, generator=gen) * 0.3 + (1.0 if k.endswith("norm.weight") or
                                                                  k.endswith(("norm1.weight", "norm2.weight")) else 0.0)
          for k, s in shapes.items()}
    sd["classifier.weight"], sd["classifier.bias"] = torch.randn(3, 16, generator=gen), torch.zeros(3)
    folder = tmp_path / "ernie-m"
    folder.mkdir()
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(conf))
    with pytest.warns(UserWarning) as caught:
        p = xlm.load_pretrained(folder)
    messages = " ".join(str(w.message) for w in caught)
    assert "ships no MLM head" in messages and "dropped 4 parameters" in messages
    assert p.dictionary is None and p.model.cfg.position_offset == 2 and p.model.pad_index == 1
    ids = torch.tensor([[0, 5, 9, 33, 2], [0, 7, 2, 1, 1]])
    real = ids != 1
    with torch.no_grad():
        ours = p.model(ids)
        logits = p.model.predict(ours)
    want = _ernie_m_reference(sd, conf, ids)
    diff = (ours[real] - want[real]).abs().max().item()
    assert diff < 1e-5, diff
    assert torch.allclose(logits, ours @ sd["ernie_m.embeddings.word_embeddings.weight"].T)  # tied, zero bias
    with pytest.raises(XLMError, match="carries no vocabulary"), pytest.warns(UserWarning):
        init_from(TransformerModel(p.model.cfg, 50, 2), Dictionary([f"w{i}" for i in range(36)]), {"en": 0},
                  str(folder), strict=False)


@pytest.mark.parametrize("kind", ["model", "classifier"])
def test_ernie_m_folders_made_by_transformers_4_load_with_its_outputs(kind):
    """Goldens made once by the real ``ErnieMModel`` / ``ErnieMForSequenceClassification`` of
    transformers 4.44.2 (scripts/make_ernie_m_golden.py; 5.x no longer has the class)."""
    folder = ROOT / "tests" / "golden" / "ernie_m" / kind
    expected = torch.load(folder / "expected.pt")
    with pytest.warns(UserWarning, match="ships no MLM head"):
        p = xlm.load_pretrained(folder)
    ids = expected["ids"]
    real = ids != p.model.pad_index
    with torch.no_grad():
        ours = p.model(ids)
    diff = (ours[real] - expected["hidden"][real]).abs().max().item()
    assert diff < 1e-5, diff
