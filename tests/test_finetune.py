"""Sentence-pair fine-tuning (xlm.finetune): strict config, a small task learned above chance, resume."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import yaml

import xlm
from tests.training_data import ROOT, one_thread
from xlm.config import ModelConfig
from xlm.data.dictionary import Dictionary
from xlm.errors import XLMError
from xlm.finetune import FinetuneConfig, PairExamples, load_finetune_config, make_batch, read_tsv

WORDS = [f"w{i}" for i in range(40)]


def write_task(folder, n_train=600, n_eval=200, seed=0):
    """Are A and B drawn from the same half of the vocabulary ('same') or not ('other')? Same generator for en, fr."""
    rng = random.Random(seed)
    halves = (WORDS[:20], WORDS[20:])

    def rows(n):
        out = []
        for _ in range(n):
            ga, gb = rng.randrange(2), rng.randrange(2)
            a, b = rng.sample(halves[ga], rng.randint(3, 6)), rng.sample(halves[gb], rng.randint(3, 6))
            out.append(f"{' '.join(a)}\t{' '.join(b)}\t{'same' if ga == gb else 'other'}\n")
        return "".join(out)

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.en.tsv").write_text(rows(n_train), encoding="utf-8")
    for split in ("valid", "test"):
        for lang in ("en", "fr"):
            (folder / f"{split}.{lang}.tsv").write_text(rows(n_eval), encoding="utf-8")
    return folder


def tiny_model(path):
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=1, n_heads=2, dropout=0.0, attention_dropout=0.0, max_positions=64)
    m = xlm.TransformerModel(cfg, 14 + len(WORDS), 2)
    return xlm.save_pretrained(xlm.Pretrained(m, Dictionary(WORDS), {"en": 0, "fr": 1}), path)


def config_file(tmp_path, name="ft.yaml", **sections):
    data = {
        "run": {"dir": str(tmp_path / "run"), "seed": 0, "log_every": 20},
        "model": {"path": str(tmp_path / "model.pt")},
        "data": {"path": str(tmp_path / "task"), "langs": ["en", "fr"], "train_langs": ["en"],
                 "labels": ["same", "other"], "tokenized": True, "max_len": 32},
        "optim": {"lr": 0.002, "warmup_updates": 10, "schedule": "linear"},
        "train": {"epochs": 20, "batch_size": 32, "eval_every": 100},
    }
    for k, v in sections.items():
        data[k].update(v)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_config_is_strict(tmp_path):
    path = config_file(tmp_path)
    cfg = load_finetune_config(path)
    assert isinstance(cfg, FinetuneConfig) and cfg.data.labels == ["same", "other"]
    with pytest.raises(XLMError, match="unknown config key 'train.epoch'"):
        load_finetune_config(config_file(tmp_path, "bad.yaml", train={"epoch": 3}))
    with pytest.raises(XLMError, match="unknown config key 'model.dropout'"):
        load_finetune_config(path, ["model.dropout=0.2"])
    with pytest.raises(XLMError, match="train.batch_size: expected an integer"):
        load_finetune_config(path, ["train.batch_size=big"])
    with pytest.raises(XLMError, match="train.positions: must be one of"):
        load_finetune_config(path, ["train.positions=reset"])
    with pytest.raises(XLMError, match="data.train_langs: 'de' is not in data.langs"):
        load_finetune_config(path, ["data.train_langs=[de]"])
    with pytest.raises(XLMError, match="optim.lr: must be positive"):
        load_finetune_config(path, ["optim.lr=0"])
    for name in ("xnli.yaml", "msgcorpus_pairs.yaml"):  # the shipped configs load
        load_finetune_config(ROOT / "configs" / "finetune" / name)


def test_tsv_and_pair_framing(tmp_path):
    (tmp_path / "a.tsv").write_text("x y\tz\tsame\nbad line\n", encoding="utf-8")
    with pytest.raises(XLMError, match="a.tsv:2: expected 'premise<TAB>hypothesis<TAB>label'"):
        read_tsv(tmp_path / "a.tsv", ["same", "other"], False)
    (tmp_path / "b.tsv").write_text("x\tz\tmaybe\n", encoding="utf-8")
    with pytest.raises(XLMError, match="label 'maybe' is not one of"):
        read_tsv(tmp_path / "b.tsv", ["same", "other"], False)

    ex = PairExamples([[20, 21, 22]], [[30, 31]], np.array([1]))
    x, lengths, langs, pos, y = make_batch(ex, [0], 1, 64, restart_positions=False)
    assert x[0].tolist() == [1, 20, 21, 22, 1, 1, 30, 31, 1] and lengths.tolist() == [9]
    assert pos[0].tolist() == list(range(9)) and langs.unique().tolist() == [1] and y.tolist() == [1]
    _, _, _, pos, _ = make_batch(ex, [0], 1, 64, restart_positions=True)
    assert pos[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    x, lengths, *_ = make_batch(PairExamples([list(range(20, 60))], [[30] * 10], np.array([0])), [0], 0, 24, False)
    assert lengths.tolist() == [24] and (x[0] == 30).sum() == 10  # the longer side is cut first


def test_finetune_learns_a_small_task_and_resumes(tmp_path):
    from xlm.finetune import finetune

    tiny_model(tmp_path / "model.pt")
    write_task(tmp_path / "task")
    path = config_file(tmp_path)
    with one_thread():
        result = finetune(load_finetune_config(path))
    m = result["metrics"]
    assert m["test_en_acc"] > 80 and m["test_fr_acc"] > 65, m  # chance: 50
    assert set(m) == {f"{s}_{lg}_acc" for s in ("valid", "test") for lg in ("en", "fr")} | {"valid_acc", "test_acc"}
    assert "| zero-shot (train en) | en | fr | avg |" in result["table"]
    run = tmp_path / "run"
    saved = json.loads((run / "results.json").read_text())
    assert saved["metrics"] == m
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "eval"} and records[-1]["final"] is True
    # best.pt is also a plain encoder checkpoint, with the classifier beside it
    best = xlm.load_pretrained(run / "checkpoints" / "best.pt")
    assert best.lang2id == {"en": 0, "fr": 1}
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["labels"] == ["same", "other"] and set(ckpt["classifier"]) == {"weight", "bias"}
    # rerunning the finished run resumes at its last step and only re-evaluates: same numbers
    with one_thread():
        again = finetune(load_finetune_config(path))
    assert again["metrics"] == m
    assert "resumed from" in (run / "train.log").read_text()
