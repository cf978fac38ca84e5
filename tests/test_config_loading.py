"""Strict config loading: unknown keys, wrong types and broken invariants name the key."""

from __future__ import annotations

import pytest
import yaml

from xlm.config import Config, config_from_dict, dump_config, load_config, parse_schedule, to_dict
from xlm.errors import XLMError


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  emb_dim: 64\n  n_heads: 4\ndata:\n  langs: [en, fr]\n"))
    assert isinstance(cfg, Config)
    assert cfg.model.emb_dim == 64 and cfg.model.n_heads == 4 and cfg.data.langs == ["en", "fr"]
    assert cfg.model.n_layers == Config().model.n_layers


def test_unknown_key_names_dotted_path_and_valid_keys(tmp_path):
    with pytest.raises(XLMError) as e:
        load_config(write(tmp_path, "model:\n  emb_dimm: 64\n"))
    msg = str(e.value)
    assert "model.emb_dimm" in msg and "emb_dim" in msg and "n_heads" in msg and "c.yaml" in msg
    with pytest.raises(XLMError, match="unknown config key 'modle'"):
        load_config(write(tmp_path, "modle: {}\n"))


@pytest.mark.parametrize(("text", "key"), [
    ("model:\n  emb_dim: '64'\n", "model.emb_dim: expected an integer"),
    ("model:\n  dropout: true\n", "model.dropout: expected a number"),
    ("model:\n  gelu_activation: 1\n", "model.gelu_activation: expected true or false"),
    ("data:\n  langs: en\n", "data.langs: expected a list"),
    ("train:\n  precision: fp8\n", "train.precision: must be one of"),
    ("model: 3\n", "model: expected a mapping"),
])
def test_wrong_types_name_the_key(tmp_path, text, key):
    with pytest.raises(XLMError, match=key):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(("override", "key"), [
    ("model.emb_dim=100", "model.emb_dim: 100 is not a multiple of model.n_heads"),
    ("model.dropout=1.5", "model.dropout: must be in"),
    ("objectives.word_pred=1.0", "objectives.word_pred"),
    ("objectives.word_mask_keep_rand=[0.5,0.1,0.1]", "objectives.word_mask_keep_rand"),
    ("objectives.lambda_mlm=0:1,0:2", "objectives.lambda_mlm"),
    ("data.langs=[fr,en]", "data.langs: must be sorted"),
])
def test_broken_invariants_name_the_key(override, key):
    with pytest.raises(XLMError, match=key):
        load_config(None, [override])


def test_objective_language_must_be_in_langs():
    with pytest.raises(XLMError, match="objectives.mlm: language 'de'"):
        load_config(None, ["data.langs=[en,fr]", "objectives.mlm=[en,de-en]"])


def test_overrides_are_parsed_by_field_type(tmp_path):
    cfg = load_config(write(tmp_path, "run:\n  dir: a\n"), [
        "run.dir=123", "model.emb_dim=128", "model.dropout=0", "model.gelu_activation=false",
        "data.langs=[en,fr]", "objectives.lambda_mlm=0:1,100:0.5", "optim.lr=3e-4",
    ])
    assert cfg.run.dir == "123"  # a string field keeps the text
    assert cfg.model.emb_dim == 128 and cfg.model.dropout == 0.0 and cfg.model.gelu_activation is False
    assert cfg.data.langs == ["en", "fr"] and cfg.optim.lr == 3e-4
    assert parse_schedule(cfg.objectives.lambda_mlm) == [(0, 1.0), (100, 0.5)]
    with pytest.raises(XLMError, match="unknown config key 'model.nope'"):
        load_config(None, ["model.nope=1"])
    with pytest.raises(XLMError, match="expected key.sub=value"):
        load_config(None, ["model.emb_dim"])


def test_resolved_config_round_trips():
    cfg = load_config(None, ["data.langs=[en,fr]", "objectives.mlm=[en,en-fr]"])
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg
    assert to_dict(cfg)["objectives"]["mlm"] == ["en", "en-fr"]


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(XLMError, match=r"c.yaml:3: invalid YAML"):
        load_config(write(tmp_path, "model:\n  emb_dim: 64\n\tn_heads: 4\n"))
    with pytest.raises(XLMError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")
