"""Exact resume: a run killed with ``kill -9`` and restarted ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_data import (
    ROOT,
    SUBPROCESS_ENV,
    synthetic_folder,
    tiny_config,
    tiny_config_dict,
    write_config,
)

from xlm.errors import XLMError
from xlm.serialization import safe_load
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)

STEPS = 60


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("resume") / "data", n_train=600)


def _config(data, run):
    cfg = tiny_config_dict(data, run)
    # Dropout on, TLM + MLM, lg sampling, accumulation, evaluation between checkpoints: every
    # source of randomness and every piece of state is exercised.
    cfg["train"].update(max_steps=STEPS, save_every=10, eval_every=15, accumulate_gradients=2, keep_last=2)
    cfg["data"].update(lg_sampling_factor=0.7)
    cfg["run"].update(log_every=5)
    return write_config(run.parent / f"{run.name}.yaml", cfg)


def _cmd(cfg):
    return [sys.executable, str(ROOT / "train.py"), "--config", str(cfg)]


_ENV = SUBPROCESS_ENV


def _final_params(run):
    return safe_load(run / "checkpoints" / f"step-{STEPS:08d}.pt")


def test_kill_9_and_restart_is_bit_identical_to_an_uninterrupted_run(data, tmp_path):
    ref_run, run = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cmd(_config(data, ref_run)), env=_ENV, check=True, capture_output=True, timeout=300)

    cfg = _config(data, run)
    proc = subprocess.Popen(_cmd(cfg), env=_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "step-00000020.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "checkpoints" / f"step-{STEPS:08d}.pt").exists()  # it really was cut short

    out = subprocess.run(_cmd(cfg), env=_ENV, check=True, capture_output=True, text=True, timeout=300)
    assert "resumed from" in out.stdout

    ref, got = _final_params(ref_run), _final_params(run)
    assert ref["model"].keys() == got["model"].keys()
    for k in ref["model"]:
        assert torch.equal(ref["model"][k], got["model"][k]), k
    for a, b in zip(ref["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert ref["samplers"] == got["samplers"] and ref["train_state"]["tokens"] == got["train_state"]["tokens"]
    # metrics.jsonl reads as one run: the steps redone after the restart are not duplicated.
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for kind in ("train", "eval"):
        steps = [r["step"] for r in records if r["kind"] == kind]
        assert steps == sorted(set(steps)) and steps
    ref_records = [json.loads(line) for line in (ref_run / "metrics.jsonl").read_text().splitlines()]
    TIMING = ("tokens_per_s", "tokens_per_s_per_device", "predicted_per_s", "memory_gb", "mfu")  # measured
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING} for r in rs]
    assert strip(records) == strip(ref_records)  # same losses, same evaluations


def test_extending_max_steps_resumes_exactly(data, tmp_path):
    def run(name, overrides):
        cfg = tiny_config(data, tmp_path / name, ["train.eval_every=100", "train.save_every=5", *overrides])
        trainer = Trainer(cfg)
        trainer.train()
        return trainer

    direct = run("direct", ["train.max_steps=20"])
    run("extended", ["train.max_steps=10"])
    extended = run("extended", ["train.max_steps=20"])
    assert extended.state.step == 20
    for (k, a), b in zip(direct.model.state_dict().items(), extended.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_resuming_with_an_incompatible_config_is_refused(data, tmp_path):
    Trainer(tiny_config(data, tmp_path / "r", ["train.max_steps=5", "train.save_every=5"])).train()
    with pytest.raises(XLMError, match=r"cannot resume.*model.emb_dim: 32 -> 64"):
        Trainer(tiny_config(data, tmp_path / "r", ["train.max_steps=10", "model.emb_dim=64"])).train()
    with pytest.raises(XLMError, match=r"cannot resume.*objectives.mlm"):
        Trainer(tiny_config(data, tmp_path / "r", ["train.max_steps=10", "objectives.mlm=[en]"])).train()
