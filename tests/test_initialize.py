"""Starting a run from a model (``init.from``) or from word vectors (``init.emb``); ``train.eval_only``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from training_data import synthetic_folder, tiny_config, write_corpus

import xlm
from xlm.data.dictionary import N_SPECIAL, Dictionary
from xlm.errors import XLMError
from xlm.initialize import read_vectors
from xlm.serialization import safe_load
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("init") / "data")


@pytest.fixture(scope="module")
def source(data, tmp_path_factory):
    """A run trained for 20 steps: its best.pt holds the metrics of its evaluation at step 20."""
    run = tmp_path_factory.mktemp("src") / "run"
    Trainer(tiny_config(data, run, ["train.max_steps=20"])).train()
    return run


def _evals(run):
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "eval"}


@pytest.mark.parametrize("fmt", ["xlm", "original", "hf"])
def test_a_run_started_from_a_model_reports_its_metrics_at_step_0(data, source, tmp_path, fmt):
    best = source / "checkpoints" / "best.pt"
    if fmt == "xlm":
        path = source  # a run folder (its best.pt)
    else:
        path = tmp_path / ("model.pth" if fmt == "original" else "hf")
        xlm.save_pretrained(xlm.load_pretrained(best), path, format=fmt)
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(data, run, ["train.max_steps=1", f"init.from={path}"]))
    trainer.train()
    expected = safe_load(best)["metrics"]
    got = _evals(run)[0]
    assert {k for k in expected if k.startswith("valid_")} <= set(got)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k
    assert "init.from" in (run / "train.log").read_text()


def test_rows_are_mapped_by_word_and_language(data, source, tmp_path):
    """Another vocabulary (words dropped, added, reordered) and another language set."""
    src = xlm.load_pretrained(source)
    old = Dictionary.read_vocab(data / "vocab")
    words = old.id2word[N_SPECIAL:]
    new_words = ["brand-new", *reversed(words[5:]), "other-new"]  # w0..w4 dropped, order reversed, 2 new
    other = synthetic_folder(tmp_path / "data", langs=("de", "en", "fr"))  # written with its own vocabulary
    dico = Dictionary(new_words, list(range(len(new_words), 0, -1)))
    dico.write(other / "vocab")
    gen = np.random.default_rng(0)
    for p in other.glob("*.idx"):
        prefix = p.with_suffix("")
        write_corpus(prefix, dico, [gen.integers(N_SPECIAL, len(dico), size=6) for _ in range(40)])
    cfg = tiny_config(other, tmp_path / "run", ["data.langs=[de,en,fr]", "objectives.mlm=[de,en,fr,de-en]",
                                                f"init.from={source}"])
    trainer = Trainer(cfg)
    fresh = trainer.model.embeddings.weight.detach().clone()  # what init gave every row
    lines = trainer.initialize()
    emb, src_emb = trainer.model.embeddings.weight, src.model.embeddings.weight
    for w in ("w5", "w30", "<pad>", "</s>"):
        assert torch.equal(emb[dico.index(w)], src_emb[src.dictionary.index(w)]), w
    for w in ("brand-new", "other-new"):
        assert torch.equal(emb[dico.index(w)], fresh[dico.index(w)]), w  # initialized as the model's init does
    lang, src_lang = trainer.model.lang_embeddings.weight, src.model.lang_embeddings.weight
    assert torch.equal(lang[1], src_lang[0]) and torch.equal(lang[2], src_lang[1])  # en, fr moved to ids 1, 2
    assert not torch.equal(lang[0], src_lang[0])  # de is new
    assert torch.equal(trainer.model.pred_layer.proj.bias[dico.index("w7")],
                       src.model.pred_layer.proj.bias[src.dictionary.index("w7")])
    report = "\n".join(lines)
    assert f"{len(dico) - 2:,} of {len(dico):,} words found" in report and "['de'] new" in report


def test_strict_refuses_another_architecture_and_non_strict_reports_it(data, source, tmp_path):
    with pytest.raises(XLMError, match=r"init.from .*: the architecture differs \(n_layers: 1 -> 2\)"):
        Trainer(tiny_config(data, tmp_path / "a", ["model.n_layers=2", f"init.from={source}"])).initialize()
    trainer = Trainer(tiny_config(data, tmp_path / "b", ["model.n_layers=2", f"init.from={source}",
                                                        "init.strict=false"]))
    report = "\n".join(trainer.initialize())
    assert "parameter(s) new (kept at init): attentions.1.q_lin.weight" in report
    src = xlm.load_pretrained(source)
    assert torch.equal(trainer.model.ffns[0].lin1.weight, src.model.ffns[0].lin1.weight)


def test_fasttext_vectors_initialize_the_words_found(data, tmp_path):
    vec = tmp_path / "emb.vec"
    rows = {"w3": np.full(32, 0.5), "w9": np.arange(32) / 10, "unknown-word": np.ones(32)}
    vec.write_text("3 32\n" + "".join(f"{w} {' '.join(f'{x:g}' for x in v)} \n" for w, v in rows.items()))
    trainer = Trainer(tiny_config(data, tmp_path / "run", [f"init.emb={vec}"]))
    (line,) = trainer.initialize()
    n = len(trainer.data.dictionary)
    assert line == f"init.emb {vec}: 2 of {n} words found ({200 / n:.1f}%)"
    emb = trainer.model.embeddings.weight
    assert torch.allclose(emb[trainer.data.dictionary.index("w9")], torch.arange(32) / 10)

    bad = tmp_path / "bad.vec"
    bad.write_text("2 16\nw3 " + " ".join(["1"] * 16) + "\n")
    with pytest.raises(XLMError, match=r"bad.vec:1: vectors of dimension 16 but model.emb_dim is 32"):
        read_vectors(bad, {"w3": 20}, 32)
    bad.write_text("2 3\nw3 1 2 3\nw4 1 2\n")
    with pytest.raises(XLMError, match=r"bad.vec:3: expected a word and 3 numbers, got 2"):
        read_vectors(bad, {"w3": 20}, 3)
    bad.write_text("1 2\nw3 1 nope\n")
    with pytest.raises(XLMError, match=r"bad.vec:2: not a number"):
        read_vectors(bad, {"w3": 20}, 2)


def test_resume_wins_over_init_from_and_eval_only_writes_nothing(data, source, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(data, run, ["train.max_steps=5", "train.save_every=5", f"init.from={source}"])).train()
    trainer = Trainer(tiny_config(data, run, ["train.max_steps=10", "train.save_every=5", f"init.from={source}"]))
    trainer.train()
    log = (run / "train.log").read_text()
    assert "ignored: the run folder has a checkpoint to resume" in log and "resumed from" in log

    listing = sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*"))
    metrics = Trainer(tiny_config(data, run, ["train.max_steps=10", "train.eval_only=true"])).train()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.rglob("*")) == listing
    last = _evals(run)[10]
    for k, v in metrics.items():
        assert math.isclose(v, last[k], rel_tol=1e-6), k
