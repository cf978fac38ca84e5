"""Raw text -> model inputs (``Pretrained.tokenize``, ``xlm.text``) and what a model must carry to take raw text."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from transformers import XLMConfig, XLMWithLMHeadModel

import xlm
from xlm.config import ModelConfig
from xlm.data.dictionary import EOS_INDEX, PAD_INDEX, UNK_INDEX, Dictionary
from xlm.errors import XLMError, XLMWarning

CODES = "h e 9\nl o</w> 8\nhe l 7\nhel lo</w> 6\nw o 5\nwo r 4\nwor l 3\nworl d</w> 2\n"
WORDS = ["hello", "world", "the", ".", ",", "!", "le", "monde", "bonjour", "h@@", "e@@", "l@@", "o@@", "w@@",
         "r@@", "d", "o", "fichier"]


def model(max_positions=64, lowercase=True, codes=CODES) -> xlm.Pretrained:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=2, n_heads=4, dropout=0.0, attention_dropout=0.0,
                      max_positions=max_positions)
    m = xlm.TransformerModel(cfg, 14 + len(WORDS), 2).eval()
    return xlm.Pretrained(m, Dictionary(WORDS), {"en": 0, "fr": 1}, bpe_codes=codes, lowercase=lowercase)


def test_tokenize_gives_framed_right_padded_batch_first_inputs_for_the_model():
    p = model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", XLMWarning)
        ids, lengths, langs = p.tokenize(["Hello, World!", "world ."], lang="fr")
    w = p.dictionary.index
    assert ids.tolist() == [[EOS_INDEX, w("hello"), w(","), w("world"), w("!"), EOS_INDEX],
                            [EOS_INDEX, w("world"), w("."), EOS_INDEX, PAD_INDEX, PAD_INDEX]]
    assert ids.dtype == lengths.dtype == langs.dtype == torch.long
    assert lengths.tolist() == [6, 4] and langs.shape == ids.shape and langs.eq(1).all()
    h = p.model(ids, lengths=lengths, langs=langs, causal=p.causal)  # the README's call
    assert h.shape == (2, 6, 32)
    first = p.encode(["Hello, World!", "world ."], lang="fr")  # encode shares the helper: same states
    assert torch.allclose(h[:, 0], first, atol=1e-5)


def test_released_style_pth_refuses_raw_text_until_given_its_codes(tmp_path):
    pth = xlm.save_pretrained(model(), tmp_path / "mlm_xx_1024.pth", format="original")
    bare = xlm.load_pretrained(pth)
    assert bare.bpe_codes is None and bare.text_settings is None and bare.lowercase is None
    with pytest.raises(XLMError, match=r"mlm_xx_1024.pth \(original\): .*no BPE codes: pass codes=PATH"):
        bare.tokenize(["Hello world"], "en")
    (tmp_path / "codes").write_text(CODES)
    p = xlm.load_pretrained(pth, codes=tmp_path / "codes")
    with pytest.warns(XLMWarning, match="does not record how its training text was tokenized.*lowercase=True"):
        p.tokenize(["hello world"], "en")
    p = xlm.load_pretrained(pth, codes=tmp_path / "codes", lowercase=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", XLMWarning)
        pieces = p.encode(["Hello World"], "en", per_token=True)[0].pieces
    assert pieces == ["hello", "world"]
    assert p.tokenize(["Hello World"], "en").ids.tolist() == model().tokenize(["Hello World"], "en").ids.tolist()


def test_lowercase_option_rebuilds_the_exact_moses_rules_not_the_older_tokenizer(tmp_path):
    """A released .pth (text made by the perl scripts) given lowercase=True is fed text as the perl
    scripts prepare it: a soft hyphen splits a word (remove-non-printing-char), no warning about
    rebuilding the older sacremoses-based tokenizer (which dropped it)."""
    from xlm.data.tokenize import TOKENIZER_VERSION
    from xlm.text import make_tokenizer

    pth = xlm.save_pretrained(model(), tmp_path / "mlm_xx_1024.pth", format="original")
    (tmp_path / "codes").write_text(CODES)
    p = xlm.load_pretrained(pth, codes=tmp_path / "codes", lowercase=True)
    assert p.text_settings["tokenizer"] == TOKENIZER_VERSION
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert make_tokenizer("en", p.text_settings)("In\u00adformation") == "in formation"


def test_codes_option_takes_hugging_face_merges_and_checks_fastbpe_codes(tmp_path):
    pth = xlm.save_pretrained(model(), tmp_path / "m.pth", format="original")
    merges = "#version: 0.2\n" + "".join(" ".join(line.split()[:2]) + "\n" for line in CODES.splitlines())
    (tmp_path / "merges.txt").write_text(merges)
    p = xlm.load_pretrained(pth, codes=tmp_path / "merges.txt", lowercase=True)
    assert p.encode(["hello world"], "en", per_token=True)[0].pieces == ["hello", "world"]
    (tmp_path / "bad").write_text("h e 9\nl o</w>\n")
    with pytest.raises(XLMError, match="bad:2"):
        xlm.load_pretrained(pth, codes=tmp_path / "bad")


def test_more_than_one_percent_unknown_pieces_warns_with_the_count():
    p = model()
    with pytest.warns(XLMWarning, match=r"3 of 5 pieces \(60.0%\) are <unk>"):
        ids = p.tokenize(["hello x y z world"], "en").ids
    assert ids[0].tolist().count(UNK_INDEX) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", XLMWarning)
        p.tokenize(["hello world"] * 50, "en")


def test_sentences_longer_than_the_positions_are_cut_with_a_warning_counting_them():
    p = model(max_positions=8)
    with pytest.warns(XLMWarning, match="cut 2 of 3 sentences to 6 pieces"):
        ids, lengths, _ = p.tokenize(["hello " * 7, "hello world", "world " * 9], "en")
    assert lengths.tolist() == [8, 4, 8] and ids[0, -1] == EOS_INDEX


def test_unknown_language_and_a_single_string_are_errors():
    p = model()
    with pytest.raises(XLMError, match="'de' is not a language of this model"):
        p.tokenize(["x"], "de")
    with pytest.raises(XLMError, match="a list of sentences"):
        p.tokenize("hello world", "en")


def test_model_only_hugging_face_folder_loads_and_raw_text_asks_for_a_vocabulary(tmp_path):
    torch.manual_seed(1)
    conf = XLMConfig(vocab_size=14 + len(WORDS), emb_dim=32, n_layers=1, n_heads=4, n_langs=2,
                     max_position_embeddings=32, lang2id={"en": 0, "fr": 1}, id2lang={0: "en", 1: "fr"})
    XLMWithLMHeadModel(conf).save_pretrained(tmp_path / "hf")  # model only: no vocab.json, no merges.txt
    p = xlm.load_pretrained(tmp_path / "hf")
    assert p.dictionary is None
    x = torch.tensor([[1, 20, 21, 1]])
    assert p.model(x, langs=torch.zeros_like(x)).shape == (1, 4, 32)  # ids work
    with pytest.raises(XLMError, match="no vocabulary.*pass vocab=PATH"):
        p.tokenize(["hello"], "en")
    Dictionary(WORDS).write(tmp_path / "vocab")
    (tmp_path / "codes").write_text(CODES)
    p = xlm.load_pretrained(tmp_path / "hf", vocab=tmp_path / "vocab", codes=tmp_path / "codes", lowercase=True)
    assert p.tokenize(["Hello world"], "en").ids.tolist() == [[1, 14, 15, 1]]
    longer = Dictionary(WORDS + ["extra"])
    longer.write(tmp_path / "vocab.long")
    with pytest.warns(XLMWarning, match="keeping the first 32"):
        assert len(xlm.load_pretrained(tmp_path / "hf", vocab=tmp_path / "vocab.long").dictionary) == 32
    vocab_json = json.loads(json.dumps({w: i for i, w in enumerate(Dictionary(WORDS[:-1]).id2word)}))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab_json))
    with pytest.raises(XLMError, match="31 words but the model has 32 embedding rows"):
        xlm.load_pretrained(tmp_path / "hf", vocab=tmp_path / "vocab.json")


@pytest.mark.filterwarnings("ignore::xlm.errors.XLMWarning")  # ',@@' is not in the toy vocabulary
def test_text_settings_rebuild_the_tokenizer_and_survive_every_format(tmp_path):
    p = model(lowercase=False)
    assert p.encode(["hello  ,world"], "en", per_token=True)[0].pieces == ["hello", ",", "world"]  # Moses
    p.text_settings = {**p.text_settings, "tokenize": False}  # training text went to BPE as it was
    assert p.encode(["hello  ,world"], "en", per_token=True)[0].pieces == ["hello", ",@@", "world"]
    back = xlm.load_pretrained(xlm.save_pretrained(p, tmp_path / "m.pt"))
    assert back.text_settings == p.text_settings and back.bpe_codes == p.bpe_codes
    hf = xlm.load_pretrained(xlm.save_pretrained(model(), tmp_path / "hf", format="hf"))
    assert hf.text_settings == model().text_settings and hf.lowercase is True
