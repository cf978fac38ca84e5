"""Raw text in, raw text out: python -m xlm.translate on a toy model trained here (reversal of letter
sequences, scripts/toy_translator.py), Moses detokenization of the output, CLM continuation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xlm.config import ModelConfig
from xlm.data.dictionary import N_SPECIAL, Dictionary
from xlm.errors import XLMError
from xlm.generation import generate
from xlm.model.transformer import TransformerModel
from xlm.pretrained import Pretrained, save_pretrained
from xlm.translate import complete, detokenize, translate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
NO_TOKENIZER = {"tokenize": False, "lower_remove_accent": False, "pre_segmented": [], "segmentation": "none"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    from toy_translator import LETTERS, train

    path = tmp_path_factory.mktemp("toy") / "toy_mt.pt"
    save_pretrained(Pretrained(train(150, 0), Dictionary(LETTERS), {"en": 0, "fr": 1}, text_settings=NO_TOKENIZER),
                    path)
    return path


def test_command_line_translates_stdin(toy):
    lines = ["a b c d", "j i h", "e f g h i j a"]
    for extra in ([], ["--beam-size", "4"]):
        out = subprocess.run([sys.executable, "-m", "xlm.translate", "--model", str(toy), "--src-lang", "en",
                              "--tgt-lang", "fr", *extra], input="\n".join(lines) + "\n", capture_output=True,
                             text=True, check=True, cwd=ROOT)
        assert out.stdout.splitlines() == [" ".join(reversed(x.split())) for x in lines]
    bad = subprocess.run([sys.executable, "-m", "xlm.translate", "--model", str(toy), "--src-lang", "en"],
                         input="a\n", capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "--tgt-lang" in bad.stderr


def test_translate_api_keeps_the_input_order(toy):
    import xlm

    p = xlm.load_pretrained(toy)
    lines = ["a b c d e f g", "b a c", "c d e f"]
    assert translate(p, lines, "en", "fr", batch_size=2) == [" ".join(reversed(x.split())) for x in lines]
    with pytest.raises(XLMError, match="not a language"):
        translate(p, lines, "en", "de")


def test_detokenize_joins_bpe_and_undoes_moses():
    words = ["Hello@@", "world", ",", "it", "&apos;s", "fine", "."]
    p = Pretrained(TransformerModel(ModelConfig(emb_dim=8, n_layers=1, n_heads=2), N_SPECIAL + len(words), 1),
                   Dictionary(words), {"en": 0})
    ids = list(range(N_SPECIAL, N_SPECIAL + len(words)))
    assert detokenize(p, ids, "en") == "Helloworld, it's fine."
    p.text_settings = NO_TOKENIZER
    assert detokenize(p, ids, "en") == "Helloworld , it &apos;s fine ."


def test_clm_complete_is_generate_on_the_prepared_prompt():
    torch.manual_seed(0)
    letters = list("abcdefghij")
    model = TransformerModel(ModelConfig(emb_dim=16, n_layers=2, n_heads=2, dropout=0.0), N_SPECIAL + 10, 2).eval()
    p = Pretrained(model, Dictionary(letters), {"de": 0, "en": 1}, causal=True, text_settings=NO_TOKENIZER)
    text = complete(p, ["a b c", "d"], "en", max_new_tokens=6)
    ids = generate(model, [[1, 14, 15, 16], [1, 17]], 1, max_new_tokens=6)
    assert text == [" ".join(p.dictionary.id2word[i] for i in t) for t in ids.tokens]
    p.causal = False
    with pytest.raises(XLMError, match="causal"):
        complete(p, ["a"], "en")
