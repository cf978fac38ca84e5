"""End-to-end training runs on tiny models: learning, run folder, CLM, accumulation, precision, stopping, errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml
from training_data import ROOT, slice_folder, synthetic_folder, tiny_config, tiny_config_dict, write_config

from xlm.config import load_config, to_dict
from xlm.errors import XLMError
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def slice_data(tmp_path_factory):
    return slice_folder(tmp_path_factory.mktemp("slice") / "data", n_train=3000, n_eval=150, min_count=3)


@pytest.fixture(scope="module")
def syn_data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("syn") / "data")


def _records(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_short_run_on_the_slice_halves_perplexity_and_fills_the_run_folder(slice_data, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(slice_data, run, [
        "train.max_steps=60", "train.eval_every=30", "train.save_every=30", "run.tensorboard=true",
        "model.emb_dim=64", "data.bptt=32", "data.tokens_per_batch=400", "optim.warmup_updates=20"])
    Trainer(cfg).train()

    evals = {r["step"]: r for r in _records(run, "eval")}
    assert sorted(evals) == [0, 30, 60]  # step 0: a real evaluation of the untrained model
    for name in ("valid_en_mlm_ppl", "valid_fr_mlm_ppl", "valid_en_fr_mlm_ppl"):
        assert evals[60][name] < 0.5 * evals[0][name], (name, evals[0][name], evals[60][name])
    assert {"valid_mlm_ppl", "valid_mlm_acc", "test_en_fr_mlm_acc", "test_mlm_ppl"} <= set(evals[60])
    mean = (evals[60]["valid_en_mlm_ppl"] + evals[60]["valid_fr_mlm_ppl"]) / 2
    assert evals[60]["valid_mlm_ppl"] == pytest.approx(mean)

    train = _records(run, "train")
    assert [r["step"] for r in train] == list(range(5, 61, 5))
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "loss_MLM-en-fr"):
        assert all(math.isfinite(r[key]) for r in train if key in r) and key in train[-1]

    assert to_dict(load_config(run / "config.yaml")) == to_dict(cfg)  # resolved config, reloadable
    log = (run / "train.log").read_text()
    assert "evaluation at step 0" in log and "step 60/60" in log
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "latest", "step-00000030.pt", "step-00000060.pt"]


def test_clm_on_streams_and_pairs(syn_data, tmp_path):
    run = tmp_path / "clm"
    cfg = tiny_config(syn_data, run, ["objectives.mlm=[]", "objectives.clm=[en, en-fr]",
                                      "train.validation_metric=_valid_clm_ppl", "train.max_steps=40",
                                      "train.eval_every=40"])
    metrics = Trainer(cfg).train()
    first = _records(run, "eval")[0]
    for name in ("valid_en_clm_ppl", "valid_en-fr_clm_ppl", "valid_clm_ppl", "test_en-fr_clm_acc"):
        assert name in metrics
    assert metrics["valid_en_clm_ppl"] < 0.5 * first["valid_en_clm_ppl"]
    assert "valid_mlm_ppl" not in metrics


def test_gradient_accumulation_consumes_n_batches_per_update(syn_data, tmp_path):
    cfg = tiny_config(syn_data, tmp_path / "acc", ["train.accumulate_gradients=3", "train.max_steps=4",
                                                   "train.eval_at_start=false", "objectives.mlm=[en]"])
    trainer = Trainer(cfg)
    trainer.train()
    (source,) = trainer.data.sources.values()
    state = source.sampler.state_dict()
    per_epoch = len(source.sampler.make_epoch(__import__("numpy").random.default_rng(0)))
    assert state["epoch"] * per_epoch + state["position"] == 3 * 4
    assert trainer.state.updates == 4 and trainer.scheduler.n == 4


def test_bf16_autocast_on_cpu(syn_data, tmp_path):
    cfg = tiny_config(syn_data, tmp_path / "bf16", ["train.precision=bf16", "train.max_steps=3", "train.eval_every=3",
                                                    "train.eval_at_start=false"])
    metrics = Trainer(cfg).train()
    train = _records(tmp_path / "bf16", "train")
    assert all(math.isfinite(r["loss"]) for r in train) and math.isfinite(metrics["valid_mlm_ppl"])


def test_early_stopping_when_the_metric_stops_improving(syn_data, tmp_path):
    run = tmp_path / "stop"
    cfg = tiny_config(syn_data, run, ["optim.schedule=constant", "optim.lr=1e-30", "optim.warmup_updates=0",
                                      "train.eval_every=2", "train.save_every=100", "train.max_steps=50",
                                      "train.early_stopping_patience=1"])
    trainer = Trainer(cfg)
    trainer.train()
    assert trainer.state.step == 6  # best at 2; no improvement at 4 and 6 (> patience 1): stop
    assert trainer.state.best_step == 2 and trainer.state.bad_evals == 2
    assert (run / "checkpoints" / "step-00000006.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    assert "early stopping" in (run / "train.log").read_text()


def test_divergence_stops_after_nan_tolerance(syn_data, tmp_path):
    cfg = tiny_config(syn_data, tmp_path / "nan", ["optim.schedule=constant", "optim.lr=1e30", "optim.warmup_updates=0",
                                                   "optim.clip_grad_norm=0", "train.nan_tolerance=2",
                                                   "train.eval_at_start=false"])
    with pytest.raises(XLMError, match="diverged: 3 consecutive"):
        Trainer(cfg).train()


def test_configuration_errors_are_clear(syn_data, tmp_path):
    with pytest.raises(XLMError, match="validation_metric.*not computed.*valid_en_mlm_ppl"):
        Trainer(tiny_config(syn_data, tmp_path / "a", ["train.validation_metric=_valid_clm_ppl"]))
    with pytest.raises(XLMError, match="data.path"):
        Trainer(tiny_config(tmp_path / "nowhere", tmp_path / "b"))
    with pytest.raises(XLMError, match="fp16 needs a CUDA"):
        Trainer(tiny_config(syn_data, tmp_path / "c", ["train.precision=fp16"]))


def test_cli_reports_errors_on_one_line(syn_data, tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", tiny_config_dict(syn_data, tmp_path / "run"))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    for args, message in ((["train.max_stepz=3"], "unknown config key 'train.max_stepz'"),
                          (["data.langs=[fr, en]"], "data.langs: must be sorted")):
        p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg), *args], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 1
        assert p.stderr.startswith("error: ") and message in p.stderr and len(p.stderr.strip().splitlines()) == 1
    data = yaml.safe_load(cfg.read_text())
    assert data["train"]["max_steps"] == 30  # the file itself is untouched by overrides


def test_lambda_schedule_reaching_zero_stops_updates(syn_data, tmp_path):
    cfg = tiny_config(syn_data, tmp_path / "lam", ["objectives.lambda_mlm=0:1,5:0", "train.max_steps=10",
                                                   "train.eval_at_start=false"])
    trainer = Trainer(cfg)
    trainer.train()
    assert trainer.state.step == 10 and trainer.state.updates == 5 and trainer.state.nan_streak == 0
    losses = {r["step"]: r["loss"] for r in _records(tmp_path / "lam", "train")}
    assert losses[10] is None and losses[5] > 0  # steps 5..9 have no task (lambda 0): no loss, never 0.0
