"""Each task type learns a small synthetic task to a stated threshold, and stays at chance on shuffled labels.

Thresholds (the ceiling is 100 for every task): sentence-pair accuracy >= 95 (chance 50), entity F1
>= 90 (shuffled: <= 30), QA F1 >= 90 (chance: about 1/12, one of 12 context words), retrieval and
mining >= 90 (shuffled gold: <= 10). Then the command line, strict configs and resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import xlm
from tests.task_data import WORDS, tiny_model, write_bucc, write_config, write_ner_task, write_pair_task, write_qa_task
from tests.training_data import ROOT, one_thread
from xlm.errors import XLMError
from xlm.finetune import run_task
from xlm.tasks.config import load_task_config

OPTIM = {"lr": 0.005, "warmup_updates": 10, "schedule": "linear"}
RUNS = {  # task -> (writer, data, epochs, metric, threshold when learned, bound when shuffled)
    "sentence": (write_pair_task, {"labels": ["same", "other"], "tokenized": True, "max_len": 32}, 15,
                 "test_en_acc", 95.0, 62.0),
    "tokens": (write_ner_task, {"max_len": 32}, 15, "test_en_f1", 90.0, 30.0),
    "qa": (write_qa_task, {"max_len": 64, "max_query_len": 8, "doc_stride": 32}, 20, "test_en_f1", 90.0, 25.0),
}


def config(tmp_path, task, folder, data, **train):
    return load_task_config(task, write_config(
        tmp_path / f"{task}.yaml", run={"dir": str(tmp_path / "run"), "seed": 0, "log_every": 100},
        model={"path": str(tmp_path / "model.pt")}, data={"path": str(folder), "langs": ["en", "fr"], **data},
        optim=OPTIM, train={"batch_size": 32, "eval_every": 100000, **train}))


@pytest.mark.parametrize("shuffled", [False, True], ids=["labels", "shuffled"])
@pytest.mark.parametrize("task", list(RUNS))
def test_task_learns_and_shuffled_labels_stay_at_chance(tmp_path, task, shuffled):
    writer, data, epochs, metric, threshold, bound = RUNS[task]
    tiny_model(tmp_path / "model.pt")
    folder = writer(tmp_path / "task", shuffled=shuffled)
    cfg = config(tmp_path, task, folder, data, epochs=epochs)
    with one_thread():
        result = run_task(task, cfg)
    m = result["metrics"]
    if shuffled:
        assert m[metric] <= bound, m
        return
    assert m[metric] >= threshold, m
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["metrics"] == pytest.approx(m) and saved["table"] == result["table"]
    assert (tmp_path / "run" / "results.md").read_text().startswith(f"| {task} zero-shot (train en) | en | fr | avg |")
    if task == "sentence":  # rerunning a finished run resumes at its last step and only re-evaluates
        with one_thread():
            again = run_task(task, config(tmp_path, task, folder, data, epochs=epochs))
        assert again["metrics"] == m and "resumed from" in (tmp_path / "run" / "train.log").read_text()
        records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert {r["kind"] for r in records} == {"train", "eval"} and records[-1]["final"] is True
        assert xlm.load_pretrained(tmp_path / "run" / "checkpoints" / "best.pt").lang2id == {"en": 0, "fr": 1}
    if task == "qa":
        preds = json.loads((tmp_path / "run" / "predictions" / "test.fr.json").read_text())
        assert len(preds) == 150 and all(p in WORDS for p in preds.values())


def write_tatoeba(folder, shuffled):
    import random

    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    sents = [" ".join(rng.sample(WORDS, 6)) for _ in range(50)]
    tgt = list(sents)
    if shuffled:
        rng.shuffle(tgt)
    (folder / "tatoeba.fra-eng.fra").write_text("\n".join(sents) + "\n", "utf-8")
    (folder / "tatoeba.fra-eng.eng").write_text("\n".join(tgt) + "\n", "utf-8")
    return folder


@pytest.mark.parametrize("shuffled", [False, True], ids=["gold", "shuffled"])
def test_retrieval_and_mining(tmp_path, shuffled):
    """The "translation" is the same words, and the model has no language signal: found unless the gold is shuffled."""
    tiny_model(tmp_path / "model.pt", same_langs=True)
    common = {"model": {"path": str(tmp_path / "model.pt")}, "encoder": {"tokenized": True}}
    cfg = load_task_config("retrieval", write_config(
        tmp_path / "r.yaml", run={"dir": str(tmp_path / "r")}, data={
            "path": str(write_tatoeba(tmp_path / "tatoeba", shuffled)), "langs": ["fr"]}, **common))
    acc = run_task("retrieval", cfg)["metrics"]["test_fr_acc"]
    cfg = load_task_config("mining", write_config(
        tmp_path / "m.yaml", run={"dir": str(tmp_path / "m")}, data={
            "path": str(write_bucc(tmp_path / "bucc", shuffled)), "langs": ["fr"]}, **common))
    m = run_task("mining", cfg)["metrics"]
    if shuffled:
        assert acc <= 10 and m["test_fr_f1"] <= 10, (acc, m)
        return
    assert acc >= 90 and m["test_fr_f1"] >= 90 and m["sample_fr_f1"] >= 90, (acc, m)
    mined = (tmp_path / "m" / "mined.fr.tsv").read_text().splitlines()
    assert len(mined) >= 27 and all(line.split("\t")[0].startswith("fr-test-") for line in mined)


def test_configs_are_strict_and_the_shipped_ones_load(tmp_path):
    path = write_config(tmp_path / "c.yaml", model={"path": "m.pt"}, data={"path": "d", "langs": ["en", "fr"]})
    cfg = load_task_config("sentence", path)
    assert cfg.data.positions == "continue" and cfg.train.finetune_layers == "0:_1"
    assert load_task_config("sentence", path, ["head.lr=5e-3"]).head.lr == 0.005  # YAML 1.1 reads 5e-3 as a string
    for bad, message in ((["train.epoch=3"], "unknown config key 'train.epoch'"),
                         (["data.train_langs=[de]"], "data.train_langs: 'de' is not in data.langs"),
                         (["train.finetune_layers=0-2"], "train.finetune_layers: expected 'i:j'"),
                         (["data.positions=reset"], "data.positions: must be one of"),
                         (["head.lr=0"], "head.lr: must be positive"),
                         (["data.regression=true", "data.labels=[a,b]"], "a regression task has no labels")):
        with pytest.raises(XLMError, match=message):
            load_task_config("sentence", path, bad)
    with pytest.raises(XLMError, match="data.doc_stride"):
        load_task_config("qa", path, ["data.doc_stride=0"])
    with pytest.raises(XLMError, match="never on the evaluated split"):
        load_task_config("mining", path, ["data.eval_split=sample"])
    shipped = sorted((ROOT / "configs" / "finetune").glob("*.yaml"))
    assert len(shipped) >= 8
    for f in shipped:
        task = f.read_text().split("xlm.finetune ", 1)[1].split()[0]  # the task named in the header comment
        load_task_config(task, f)


def test_command_line_errors_are_one_line_and_exit_1(tmp_path):
    path = write_config(tmp_path / "c.yaml", model={"path": "m.pt"}, data={"path": "d", "langs": ["en"]})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "xlm.finetune", "tokens", "--config", str(path), "train.epochs=0"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith(f"error: {path}: train.epochs: must be positive")
    r = subprocess.run([sys.executable, "-m", "xlm.finetune", "tokens", "--config", str(path)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr.strip() == "error: m.pt: no such file or folder"


def test_two_processes_fine_tune_like_one(tmp_path):
    """torchrun with 2 ranks (gloo): each takes half of every batch; losses and scores equal one process's."""
    tiny_model(tmp_path / "model.pt")
    folder = write_pair_task(tmp_path / "task", n_train=128, n_eval=32)
    paths = {}
    for name in ("one", "two"):
        paths[name] = write_config(
            tmp_path / f"{name}.yaml", run={"dir": str(tmp_path / name), "log_every": 2},
            model={"path": str(tmp_path / "model.pt")}, head={"dropout": 0.0},
            data={"path": str(folder), "langs": ["en", "fr"], "labels": ["same", "other"], "tokenized": True,
                  "max_len": 32}, optim=OPTIM, train={"epochs": 2, "batch_size": 32})
    with one_thread():
        one = run_task("sentence", load_task_config("sentence", paths["one"]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                        "xlm.finetune", "sentence", "--config", str(paths["two"])],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["metrics"] == pytest.approx(one["metrics"])

    def losses(name):
        return [rec["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                if (rec := json.loads(line))["kind"] == "train"]

    assert losses("two") == pytest.approx(losses("one"), rel=1e-5) and len(losses("one")) == 4


def test_mixed_precision_is_the_trainers(tmp_path):
    tiny_model(tmp_path / "model.pt")
    folder = write_pair_task(tmp_path / "task", n_train=64, n_eval=16)
    data = {"labels": ["same", "other"], "tokenized": True, "max_len": 32}
    cfg = config(tmp_path, "sentence", folder, data, max_steps=2, precision="bf16")
    with one_thread():
        m = run_task("sentence", cfg)["metrics"]
    assert 0 <= m["test_en_acc"] <= 100
    cfg = config(tmp_path, "sentence", folder, data, max_steps=2, precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(XLMError, match="fp16 needs a CUDA device"):
            run_task("sentence", cfg)
