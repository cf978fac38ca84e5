"""Run folders are never silently damaged: one process per folder, safe restarts, no half-made folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from training_data import (
    ROOT,
    SUBPROCESS_ENV,
    slice_folder,
    synthetic_folder,
    tiny_config,
    tiny_config_dict,
    write_config,
)

from xlm.errors import XLMError
from xlm.serialization import safe_load
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("runfolder") / "data")


def _cmd(cfg_path, *overrides):
    return [sys.executable, str(ROOT / "train.py"), "--config", str(cfg_path), *overrides]


def _wait_for(path, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def test_a_second_process_on_the_folder_is_refused_and_a_killed_holder_does_not_block(data, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config_dict(data, run)
    cfg["train"].update(max_steps=100000, save_every=5, eval_every=100000)
    path = write_config(tmp_path / "run.yaml", cfg)
    first = subprocess.Popen(_cmd(path), env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(run / "checkpoints" / "step-00000005.pt", first)
        second = subprocess.run(_cmd(path), env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and "another training process is using this run folder" in err[0], second.stderr
        assert f"pid {first.pid}" in err[0]
        assert first.poll() is None  # the holder was not disturbed
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
        first.wait()
    # The lock died with its holder: the same command resumes (stale .lock file and all).
    assert (run / ".lock").exists()
    step = max(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("step-*.pt"))
    again = subprocess.run(_cmd(path, f"train.max_steps={step + 5}"), env=SUBPROCESS_ENV, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"resumed from {run / 'checkpoints' / f'step-{step:08d}.pt'}" in again.stdout


def _train(cfg):
    trainer = Trainer(cfg)
    trainer.train()
    return trainer


def test_restart_without_step_checkpoints_keeps_best_until_a_better_model(data, tmp_path):
    run = tmp_path / "run"
    _train(tiny_config(data, run, ["train.max_steps=20", "train.keep_last=1"]))
    best = run / "checkpoints" / "best.pt"
    before = best.read_bytes()
    best_metric = safe_load(best)["metrics"]["valid_mlm_ppl"]
    for p in (run / "checkpoints").glob("step-*.pt"):
        p.unlink()  # step checkpoints lost (a cleanup gone wrong); best.pt survives

    trainer = _train(tiny_config(data, run, ["train.max_steps=2", "train.eval_every=1", "train.keep_last=1"]))
    assert trainer.state.best_metric == best_metric  # seeded from best.pt, not from the step-0 evaluation
    assert best.read_bytes() == before  # the untrained restart never replaced it
    log = (run / "train.log").read_text()
    assert "starting again at step 0" in log and "is kept until a better model replaces it" in log
    assert (run / "metrics.before-restart.jsonl").exists()

    # The same run, trained as long as the first time: the same model again (deterministic), not better.
    trainer = _train(tiny_config(data, run, ["train.max_steps=40", "train.keep_last=1"]))
    after = safe_load(best)
    assert after["step"] == 40 and after["metrics"]["valid_mlm_ppl"] < best_metric  # a better model replaced it


def test_restart_refuses_a_folder_holding_another_configs_or_other_datas_results(data, tmp_path):
    run = tmp_path / "run"
    _train(tiny_config(data, run, ["train.max_steps=10"]))
    for p in (run / "checkpoints").glob("step-*.pt"):
        p.unlink()
    with pytest.raises(XLMError, match=r"config.yaml: this folder holds results of another config \(model.emb_dim"):
        Trainer(tiny_config(data, run, ["train.max_steps=10", "model.emb_dim=48"])).train()
    (run / "config.yaml").unlink()  # even without config.yaml, best.pt tells
    with pytest.raises(XLMError, match=r"best.pt: comes from another config \(model.emb_dim"):
        Trainer(tiny_config(data, run, ["train.max_steps=10", "model.emb_dim=48"])).train()
    other = synthetic_folder(tmp_path / "other", seed=1, n_train=300)
    with pytest.raises(XLMError, match=r"best.pt: comes from other data"):
        Trainer(tiny_config(other, run, ["train.max_steps=10"])).train()
    assert (run / "checkpoints" / "best.pt").exists()  # refusals touch nothing


def test_a_run_failing_before_its_first_step_leaves_no_folder(data, tmp_path):
    run = tmp_path / "run"
    path = write_config(tmp_path / "run.yaml", tiny_config_dict(data, run))
    proc = subprocess.run(_cmd(path, f"init.from={tmp_path / 'missing.pt'}"), env=SUBPROCESS_ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "init.from" in proc.stderr, proc.stderr
    assert not run.exists()
    # An existing folder is left alone.
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    proc = subprocess.run(_cmd(path, f"init.from={tmp_path / 'missing.pt'}"), env=SUBPROCESS_ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and (run / "notes.txt").read_text() == "mine"


def test_missing_tensorboard_warns_and_trains(data, tmp_path):
    """``run.tensorboard`` defaults to true, but the package is optional (not installed by `pip install -e .`)."""
    run = tmp_path / "run"
    path = write_config(tmp_path / "run.yaml", {**tiny_config_dict(data, run),
                                                 "run": {"dir": str(run), "tensorboard": True}})
    code = ("import sys; sys.modules['tensorboard'] = None; sys.argv = ['train.py'] + sys.argv[1:]; "
            "from xlm.cli.train import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, "--config", str(path), "train.max_steps=2"],
                          env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "the tensorboard package is not installed" in proc.stdout
    assert (run / "checkpoints" / "step-00000002.pt").exists() and not (run / "tensorboard").exists()


def test_data_fingerprint_changes_with_the_corpora(tmp_path):
    """Two folders with the same vocabulary but other corpora are other data for a restart."""
    from xlm.corpora import load_data
    from xlm.distributed import get_dist_info
    from xlm.objectives import parse_tasks

    a = slice_folder(tmp_path / "a", n_train=300, n_eval=20)
    b = slice_folder(tmp_path / "b", n_train=300, n_eval=30)  # same train text, so the same vocabulary
    prints = []
    for folder in (a, b):
        cfg = tiny_config(folder, tmp_path / "r")
        loaded = load_data(cfg, parse_tasks(cfg.objectives), get_dist_info(), warn=lambda _: None)
        prints.append((loaded.dictionary.fingerprint(), loaded.fingerprint))
    assert prints[0][0] == prints[1][0] and prints[0][1] != prints[1][1]
