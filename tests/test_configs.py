"""Every YAML under configs/ loads with its loader; training configs are consistent with what they train."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xlm.config import from_dict, load_config
from xlm.data.pipeline import PipelineConfig, load_pipeline_config
from xlm.evaluation import metric_names
from xlm.objectives import parse_tasks

ROOT = Path(__file__).resolve().parents[1]
TRAINING = sorted((ROOT / "configs").glob("*.yaml"))
PIPELINE = sorted((ROOT / "configs" / "data").glob("*.yaml"))


def test_the_expected_training_configs_exist():
    names = {p.name for p in TRAINING}
    assert {"tiny.yaml", "xlm_mlm_enfr_1024.yaml", "xlm_clm_ende_1024.yaml", "xlm_mlm_tlm_xnli15.yaml",
            "bert_en.yaml"} <= names


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_config_loads_and_is_self_consistent(path):
    cfg = load_config(path)
    tasks = parse_tasks(cfg.objectives)
    assert tasks, "a training config must train something"
    metric = cfg.train.validation_metric
    computed = metric_names(tasks, bleu=cfg.train.eval_bleu)
    assert metric.lstrip("_") in computed, f"{metric} is not computed by {[t.name for t in tasks]}"
    assert cfg.data.bptt <= cfg.model.max_positions
    # the keys scripts override
    over = load_config(path, ["run.dir=/tmp/x", "run.seed=3", "train.max_steps=7", "train.eval_every=2",
                              "train.save_every=2"])
    assert (over.run.dir, over.run.seed, over.train.max_steps, over.train.eval_every, over.train.save_every) == (
        "/tmp/x", 3, 7, 2, 2)


@pytest.mark.parametrize("path", PIPELINE, ids=lambda p: p.name)
def test_pipeline_config_is_valid(path):
    # Schema and invariants only: some configs name files that another command makes first
    # (msgcorpus_de_reuse.yaml reuses the slice's codes) or that live outside the repo (the full corpus).
    cfg = from_dict(PipelineConfig, yaml.safe_load(path.read_text(encoding="utf-8")))
    cfg.validate()
    assert cfg.output


def test_readme_pipeline_config_names_files_that_exist(monkeypatch):
    monkeypatch.chdir(ROOT)  # input paths are relative to the directory the command runs from
    assert load_pipeline_config(ROOT / "configs" / "data" / "msgcorpus_slice.yaml").output


def test_tiny_config_is_the_readme_demo():
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    assert cfg.objectives.mlm == ["en", "fr", "en-fr"] and cfg.data.langs == ["en", "fr"]
    assert cfg.train.eval_at_start  # the first evaluation is a real one, before any update
    data = yaml.safe_load((ROOT / "configs" / "data" / "msgcorpus_slice.yaml").read_text())
    assert Path(cfg.data.path) == Path(data["output"])  # trains on what the preprocess demo writes


def test_paper_configs_match_the_original_recipes():
    enfr = load_config(ROOT / "configs" / "xlm_mlm_enfr_1024.yaml")
    ende = load_config(ROOT / "configs" / "xlm_clm_ende_1024.yaml")
    xnli = load_config(ROOT / "configs" / "xlm_mlm_tlm_xnli15.yaml")
    bert = load_config(ROOT / "configs" / "bert_en.yaml")
    for cfg in (enfr, ende, xnli):
        m = cfg.model
        assert (m.emb_dim, m.n_heads, m.dropout, m.attention_dropout, m.gelu_activation) == (1024, 8, 0.1, 0.1, True)
        assert (cfg.data.bptt, cfg.data.batch_size, cfg.optim.lr) == (256, 32, 1e-4)
    assert enfr.model.n_layers == ende.model.n_layers == 6 and xnli.model.n_layers == 12
    assert enfr.objectives.mlm == ["en", "fr"] and ende.objectives.clm == ["de", "en"]
    assert len(xnli.data.langs) == 15 and xnli.data.lg_sampling_factor == 0.7 and xnli.data.max_vocab == 95000
    pairs = [t for t in parse_tasks(xnli.objectives) if t.is_pair]
    assert len(pairs) == 28 and all("en" in (t.lang1, t.lang2) for t in pairs)
    assert (xnli.optim.schedule, xnli.optim.beta2, xnli.optim.weight_decay) == ("inverse_sqrt", 0.98, 0.0)
    assert (bert.model.emb_dim, bert.model.n_layers, bert.model.n_heads) == (2048, 12, 16)
    assert (bert.optim.warmup_updates, bert.optim.beta2, bert.optim.weight_decay, bert.optim.eps) == (
        30000, 0.999, 0.01, 1e-6)
    assert bert.train.validation_metric == "_valid_en_mlm_ppl" and bert.train.early_stopping_patience == 25
