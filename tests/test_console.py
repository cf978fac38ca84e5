"""What a researcher reads: time and ETA on log lines, the start block, evaluation progress, the CLI's own help."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml
from training_data import (
    ROOT,
    SUBPROCESS_ENV,
    synthetic_folder,
    tiny_config,
    tiny_config_dict,
    write_config,
)

from xlm.config import load_config, to_dict
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("console") / "data")


def test_log_lines_carry_elapsed_time_and_steps_an_eta(data, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(data, run, ["train.max_steps=10"])).train()
    lines = (run / "train.log").read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| \d+:\d\d:\d\d \| ", line) for line in lines), lines[:3]
    steps = [line for line in lines if " | step " in line]
    assert len(steps) == 2 and all(re.search(r"\| step (5|10)/10 \| eta \d+:\d\d:\d\d \| loss \d", s) for s in steps)
    assert steps[-1].split(" | eta ")[1].startswith("0:00:00")
    start = "\n".join(lines[:8])
    for part in ("world size 1 (single process)", "devices 1 x cpu", "precision fp32", "parallelism none",
                 "'loss' below is the lambda-weighted mean of the tasks' losses"):
        assert part in start, part
    # MLM-en + MLM-fr (2 draws of 8 x 16-token windows) + TLM (1 draw of ~200-token pair batches)
    tokens = int(re.search(r"tokens per step: about ([\d,]+)", start).group(1).replace(",", ""))
    assert 2 * 8 * 16 + 150 <= tokens <= 2 * 8 * 16 + 200


def test_long_evaluations_show_progress(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path / "run"))
    lines: list[str] = []
    trainer.evaluator.log, trainer.evaluator.progress_every = lines.append, 0.0
    trainer.evaluator.evaluate(trainer.model, trainer.device)
    assert any(re.fullmatch(r"evaluating valid MLM-en: batch \d+/\d+ \(\d+ s so far\)", line) for line in lines)


def test_print_config_prints_every_key_resolved(data, tmp_path):
    path = write_config(tmp_path / "run.yaml", tiny_config_dict(data, tmp_path / "run"))
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(path), "--print-config",
                           "train.max_steps=7"], env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed == to_dict(load_config(path, ["train.max_steps=7"]))
    assert printed["train"]["max_steps"] == 7
    assert printed["init"] == {"from": "", "strict": True, "emb": "", "encoder": "", "decoder": ""}
    assert not (tmp_path / "run").exists()


def test_help_names_the_program_it_runs_as():
    exe = shutil.which("xlm-train")
    assert exe, "the package is installed with its console scripts (pip install -e .)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("usage: xlm-train") and "example: xlm-train --config" in out
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True,
                         env=SUBPROCESS_ENV, timeout=60).stdout
    assert out.startswith("usage: python train.py")
