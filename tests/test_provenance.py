"""A checkpoint knows how its text was prepared: from 'preprocess.py run' and from the by-hand commands alike."""

from __future__ import annotations

import json
import warnings

import pytest
from training_data import SLICE, synthetic_folder, tiny_config

import xlm
from xlm.cli.preprocess import _main as preprocess
from xlm.errors import XLMError, XLMWarning
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


def by_hand(tmp_path, n_codes: int = 300) -> tuple:
    """The README's by-hand steps for en and fr: tokenize, learn-bpe, apply-bpe, get-vocab, binarize."""
    w = tmp_path / "work"
    w.mkdir()
    for lang in ("en", "fr"):
        for split, n in (("train", 400), ("valid", 40), ("test", 40)):
            lines = (SLICE / "mono" / f"{split}.{lang}").read_text(encoding="utf-8").split("\n")[:n]
            (w / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
            preprocess(["tokenize", "--lang", lang, "--lower-remove-accent", "--workers", "1",
                        str(w / f"{split}.{lang}"), str(w / f"{split}.tok.{lang}")])
    preprocess(["learn-bpe", "--n-codes", str(n_codes), "--output", str(w / "codes"), str(w / "train.tok.en"),
                str(w / "train.tok.fr")])
    for lang in ("en", "fr"):
        for split in ("train", "valid", "test"):
            preprocess(["apply-bpe", "--codes", str(w / "codes"), "--workers", "1", str(w / f"{split}.tok.{lang}"),
                        str(w / f"{split}.bpe.{lang}")])
    preprocess(["get-vocab", "--output", str(w / "vocab"), str(w / "train.bpe.en"), str(w / "train.bpe.fr")])
    data = tmp_path / "data"
    for lang in ("en", "fr"):
        for split in ("train", "valid", "test"):
            preprocess(["binarize", "--vocab", str(w / "vocab"), "--workers", "1", str(w / f"{split}.bpe.{lang}"),
                        str(data / f"{split}.{lang}")])
    return w, data


def train(data, run, overrides=()):
    cfg = tiny_config(data, run, ["objectives.mlm=[en,fr]", "train.max_steps=2", "train.eval_every=2",
                                  "train.save_every=2", "train.eval_at_start=false", *overrides])
    Trainer(cfg).train()
    return run


def test_by_hand_steps_record_the_settings_and_codes_and_the_checkpoint_carries_them(tmp_path):
    work, data = by_hand(tmp_path)
    settings = json.loads((data / "preprocess.json").read_text())
    assert settings == {"tokenize": True, "tokenizer": "moses-187a75cb5", "lower_remove_accent": True, "nfc": False,
                        "drop_invisible": False, "moses_whitespace": False, "pre_segmented": [],
                        "segmenters": {"en": {"name": "moses"}, "fr": {"name": "moses"}}, "langs": ["en", "fr"],
                        "segmentation": "bpe"}  # what `preprocess.py run` records for the same choices, plus langs
    assert (data / "codes").read_bytes() == (work / "codes").read_bytes()
    run = train(data, tmp_path / "run")
    assert "WARNING" not in (run / "train.log").read_text()
    p = xlm.load_pretrained(run)
    assert p.text_settings == settings and p.bpe_codes == (work / "codes").read_text()
    # new text through the checkpoint == new text through the by-hand commands
    sentence = "Impossible d'ouvrir le fichier « %s » : Permission refusée"
    (work / "new.fr").write_text(sentence + "\n")
    preprocess(["tokenize", "--lang", "fr", "--lower-remove-accent", str(work / "new.fr"), str(work / "new.tok.fr")])
    preprocess(["apply-bpe", "--codes", str(work / "codes"), str(work / "new.tok.fr"), str(work / "new.bpe.fr")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", XLMWarning)  # nothing unknown, nothing guessed
        assert p.encode([sentence], "fr", per_token=True)[0].pieces == (work / "new.bpe.fr").read_text().split()


def test_text_that_left_no_record_trains_with_a_loud_warning_until_the_config_states_it(tmp_path):
    data = synthetic_folder(tmp_path / "data")
    run = train(data, tmp_path / "run")
    log = (run / "train.log").read_text()
    assert "WARNING" in log and "no preprocess.json says how its text was tokenized" in log
    p = xlm.load_pretrained(run)
    assert p.text_settings is None
    with pytest.warns(XLMWarning, match="does not record how its training text was tokenized"):
        p.tokenize(["w1 w2"], "en")
    run = train(data, tmp_path / "stated", ["data.preprocess={tokenize: false}"])
    assert "WARNING" not in (run / "train.log").read_text()
    p = xlm.load_pretrained(run)
    assert p.text_settings == {"tokenize": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error", XLMWarning)
        assert p.tokenize(["w1  w2"], "en").ids.tolist() == [[1, p.dictionary.index("w1"), p.dictionary.index("w2"), 1]]


def test_binarize_without_a_record_warns_and_disagreeing_records_are_refused(tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    (w / "a.en").write_text("hello world\n")
    (w / "vocab").write_text("hello 2\nworld 1\n")
    with pytest.warns(XLMWarning, match=r"a.en: no record of how this text was prepared"):
        preprocess(["binarize", "--vocab", str(w / "vocab"), str(w / "a.en"), str(tmp_path / "d1" / "train.en")])
    assert not (tmp_path / "d1" / "preprocess.json").exists()
    for lang, flags in (("en", ["--lower-remove-accent"]), ("fr", [])):
        (w / f"raw.{lang}").write_text("Hello world\n")
        preprocess(["tokenize", "--lang", lang, *flags, str(w / f"raw.{lang}"), str(w / f"tok.{lang}")])
    preprocess(["binarize", "--vocab", str(w / "vocab"), str(w / "tok.en"), str(tmp_path / "d2" / "train.en")])
    with pytest.raises(XLMError, match=r"tok.fr.preprocess.json: lower_remove_accent=false but the folder's other "
                                       r"data has lower_remove_accent=true"):
        preprocess(["binarize", "--vocab", str(w / "vocab"), str(w / "tok.fr"), str(tmp_path / "d2" / "train.fr")])
    assert not (tmp_path / "d2" / "train.fr.bin").exists()  # refused before anything was written


def test_codes_changed_after_segmenting_and_a_contradicting_config_are_refused(tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    (w / "raw.en").write_text("hello world\n")
    (w / "codes").write_text("h e 5\nl o</w> 4\n")
    preprocess(["tokenize", "--lang", "en", str(w / "raw.en"), str(w / "tok.en")])
    preprocess(["apply-bpe", "--codes", str(w / "codes"), str(w / "tok.en"), str(w / "bpe.en")])
    (w / "vocab").write_text("he@@ 1\nl@@ 1\nlo 1\nw@@ 1\no@@ 1\nr@@ 1\nd 1\n")
    (w / "codes").write_text("h e 5\n")
    with pytest.raises(XLMError, match="codes has changed since the text was segmented"):
        preprocess(["binarize", "--vocab", str(w / "vocab"), str(w / "bpe.en"), str(tmp_path / "d" / "train.en")])
    assert not (tmp_path / "d").exists()
    data = synthetic_folder(tmp_path / "data")
    (data / "preprocess.json").write_text('{"tokenize": true, "lower_remove_accent": true}\n')
    with pytest.raises(XLMError, match="data.preprocess.lower_remove_accent: false but .*preprocess.json says true"):
        train(data, tmp_path / "run", ["data.preprocess={lower_remove_accent: false}"])
