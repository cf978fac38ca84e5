"""Checkpoint format contract, keep-last pruning, the latest pointer, and atomic writes under failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_data import ROOT, synthetic_folder, tiny_config

from xlm.checkpoint import CheckpointManager, load_checkpoint
from xlm.config import ModelConfig, config_from_dict, to_dict
from xlm.data.dictionary import SPECIAL_WORDS
from xlm.errors import XLMError
from xlm.serialization import safe_load
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)

CONTRACT = {"format", "version", "model", "model_config", "n_words", "lang2id", "dictionary", "config", "bpe_codes",
            "step"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("ckpt")
    data = synthetic_folder(base / "data")
    (data / "codes").write_text("w 1</w> 10\n", encoding="utf-8")
    cfg = tiny_config(data, base / "run", ["train.max_steps=10", "train.eval_every=5", "train.save_every=5"])
    trainer = Trainer(cfg)
    trainer.train()
    return trainer, base / "run" / "checkpoints"


def test_training_checkpoint_follows_the_format_contract(trained):
    trainer, folder = trained
    ckpt = safe_load(folder / "step-00000010.pt")  # torch.load(weights_only=True)
    assert set(ckpt) >= CONTRACT
    assert ckpt["format"] == "xlm" and ckpt["version"] == 1 and ckpt["step"] == 10
    assert ModelConfig(**ckpt["model_config"]) == trainer.cfg.model
    assert ckpt["n_words"] == len(trainer.data.dictionary) == len(ckpt["dictionary"]["words"])
    assert ckpt["dictionary"]["words"][:14] == SPECIAL_WORDS and len(ckpt["dictionary"]["counts"]) == ckpt["n_words"]
    assert ckpt["lang2id"] == {"en": 0, "fr": 1}
    assert ckpt["bpe_codes"] == "w 1</w> 10\n"
    assert to_dict(config_from_dict(ckpt["config"])) == to_dict(trainer.cfg)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in ckpt["model"])
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)
    assert {"optimizer", "scheduler", "scaler", "train_state", "samplers", "rng"} <= set(ckpt)
    assert ckpt["train_state"]["step"] == 10 and ckpt["scheduler"] == {"n": 10}
    assert set(ckpt["samplers"][0]) == {"MLM-en", "MLM-fr", "MLM-en-fr"}


def test_best_checkpoint_is_model_only_and_loads_with_load_pretrained(trained):
    trainer, folder = trained
    best = load_checkpoint(folder / "best.pt")
    assert set(best) >= CONTRACT and "optimizer" not in best and "valid_mlm_ppl" in best["metrics"]
    from xlm import pretrained
    p = pretrained.load_pretrained(folder / "best.pt")
    assert p.lang2id == {"en": 0, "fr": 1} and len(p.dictionary) == best["n_words"]
    for k, v in p.model.state_dict().items():
        assert torch.equal(v, best["model"][k])


def test_keep_last_and_latest_pointer(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4, 5):
        m.save({"format": "xlm", "version": 1, "step": step}, step)
    assert [s for s, _ in m.step_files()] == [4, 5]
    assert (tmp_path / "latest").read_text().strip() == "step-00000005.pt"
    assert m.load_latest()[0]["step"] == 5
    (tmp_path / "latest").unlink()  # pointer lost: found by scanning
    assert m.latest() == tmp_path / "step-00000005.pt"


def test_a_save_that_raises_leaves_the_previous_file_intact(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2)
    m.save_best({"format": "xlm", "version": 1, "value": torch.arange(5)})
    with pytest.raises(Exception):  # noqa: B017 - any pickling error will do
        m.save_best({"format": "xlm", "version": 1, "value": lambda: 0})
    assert torch.equal(safe_load(tmp_path / "best.pt")["value"], torch.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no temporary left behind


def test_damaged_newest_checkpoint_falls_back_to_an_older_one(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=3)
    m.save({"format": "xlm", "version": 1, "step": 1}, 1)
    path = m.save({"format": "xlm", "version": 1, "step": 2, "x": torch.zeros(1000)}, 2)
    path.write_bytes(path.read_bytes()[:200])  # e.g. a disk that lost the tail
    ckpt, used = m.load_latest()
    assert ckpt["step"] == 1 and used.name == "step-00000001.pt"
    path.write_bytes(b"")
    (tmp_path / "step-00000001.pt").write_bytes(b"junk")
    with pytest.raises(XLMError, match="no usable checkpoint"):
        m.load_latest()


_WRITER = """
import sys, torch
from xlm.checkpoint import CheckpointManager
m = CheckpointManager(sys.argv[1], keep_last=2)
m.save({"format": "xlm", "version": 1, "step": 1, "w": torch.ones(10)}, 1)
print("saved", flush=True)
m.save({"format": "xlm", "version": 1, "step": 2, "w": torch.ones(100_000_000)}, 2)  # 400 MB: slow to write
print("unexpectedly finished", flush=True)
"""


def test_kill_9_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "saved"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".step-00000002.pt.*.tmp")):  # the second save has started
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    m = CheckpointManager(tmp_path, keep_last=2)
    assert not (tmp_path / "step-00000002.pt").exists()
    ckpt, path = m.load_latest()
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.ones(10))
    assert list(tmp_path.glob(".*.tmp"))  # the interrupted write, never renamed into place
    m.remove_stale_temporaries()
    assert not list(tmp_path.glob(".*.tmp"))
