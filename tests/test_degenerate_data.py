"""Data and settings that leave nothing to train on stop before training with one line naming the file or key;
evaluation sets that leave nothing to evaluate are skipped with a warning (unless the validation metric needs them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from training_data import (
    ROOT,
    SUBPROCESS_ENV,
    synthetic_folder,
    tiny_config,
    tiny_config_dict,
    write_config,
    write_corpus,
)

from xlm.data.dictionary import UNK_INDEX, Dictionary
from xlm.errors import XLMError
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("degenerate") / "data")


def _data(pristine, tmp_path, empty=(), all_unk=()):
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    dico = Dictionary.read_vocab(data / "vocab")
    for name in empty:
        write_corpus(data / name, dico, [])
    for name in all_unk:
        write_corpus(data / name, dico, [np.full(5, UNK_INDEX)] * 30)
    return data


ERRORS = [
    # (files emptied, files made all-<unk>, overrides, expected message)
    (["train.en"], [], [], r"train.en.bin: empty \(0 sentences\): task MLM-en has nothing to train on"),
    (["train.en"], [], ["data.lg_sampling_factor=0.7"], r"train.en.bin: empty \(0 sentences\)"),
    (["train.en-fr.en", "train.en-fr.fr"], [], [], r"train.en-fr.en.bin \+ train.en-fr.fr.bin: empty \(0 pairs\)"),
    ([], [], ["data.max_len=1"], r"no usable pair \(each of the 400 has an empty side or a side over 1 tokens"),
    ([], ["train.fr"], [], r"train.fr.bin: no token to predict \(every token is special, <unk>, or beyond"),
    ([], ["train.en-fr.en", "train.en-fr.fr"], [], r"train.en-fr.en.bin \+ train.en-fr.fr.bin: no token to predict"),
    ([], [], ["data.max_vocab=14"], r"data.max_vocab/data.min_count: no word of .*vocab is left"),
    ([], [], ["data.min_count=100000"], r"data.max_vocab/data.min_count: no word of .*vocab is left"),
    ([], [], ["data.max_vocab=15"], r"valid.fr.bin: no token to predict .*validation_metric '_valid_mlm_ppl' needs it"),
    (["valid.en"], [], [], r"valid.en.bin: empty \(0 sentences\): train.validation_metric '_valid_mlm_ppl' needs it"),
    ([], [], ["objectives.mlm=[]", "objectives.clm=[en]", "objectives.context_size=15",
              "train.validation_metric=_valid_clm_ppl"], r"objectives.context_size: 15 leaves no position"),
    ([], [], ["objectives.mlm=[]", "objectives.clm=[en-fr]", "objectives.context_size=40",
              "train.validation_metric=_valid_en-fr_clm_ppl"], r"context_size: 40 leaves no position of any"),
    ([], [], ["objectives.lambda_mlm=0"], r"objectives.lambda_mlm: 0 at every step: nothing would be trained"),
    ([], [], ["objectives.word_pred=0"], r"objectives.word_pred: must be in \(0, 1\)"),
    ([], [], ["train.eval_max_sentences=0"], r"train.eval_max_sentences: must be -1 \(all\) or positive"),
]


@pytest.mark.parametrize("empty,all_unk,overrides,message", ERRORS)
def test_nothing_to_train_is_an_error_before_training(pristine, tmp_path, empty, all_unk, overrides, message):
    data = _data(pristine, tmp_path, empty, all_unk)
    with pytest.raises(XLMError, match=message):
        Trainer(tiny_config(data, tmp_path / "run", overrides)).train()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("empty,all_unk,skipped", [
    (["test.en"], [], "test_en_mlm_ppl/test_en_mlm_acc will not be reported (and test_mlm_ppl averages the other"),
    (["valid.en-fr.en", "valid.en-fr.fr"], [], "valid_en_fr_mlm_ppl/valid_en_fr_mlm_acc will not be reported"),
    ([], ["test.fr"], "test.fr.bin: no token to predict"),
])
def test_an_evaluation_set_with_nothing_to_evaluate_is_skipped_with_a_warning(pristine, tmp_path, empty, all_unk,
                                                                               skipped):
    data = _data(pristine, tmp_path, empty, all_unk)
    run = tmp_path / "run"
    Trainer(tiny_config(data, run, ["train.max_steps=2", "train.eval_every=2"])).train()
    assert skipped in (run / "train.log").read_text()
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    gone = skipped.split(" ")[0].split("/")[0]
    if gone.endswith("_ppl"):
        assert all(gone not in r for r in evals)
    assert all(v != 1e9 for r in evals for v in r.values())  # nothing reported as the 'no prediction' placeholder


def test_the_command_line_error_is_one_line_and_makes_no_folder(pristine, tmp_path):
    data = _data(pristine, tmp_path, empty=["train.en"])
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "run.yaml", tiny_config_dict(data, run))
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg)], env=SUBPROCESS_ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "train.en.bin: empty" in proc.stderr
    assert not run.exists()
