"""The objective registry and ERNIE-M's CAMLM and BTMLM (arXiv 2012.15674, sections 3.1 and 3.2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from training_data import synthetic_folder, tiny_config, write_corpus

from xlm.config import Config, DataConfig, ModelConfig, ObjectivesConfig, TrainConfig
from xlm.data.datasets import ParallelDataset, SentenceDataset
from xlm.data.dictionary import EOS_INDEX, MASK_INDEX, N_SPECIAL, PAD_INDEX, Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.data.sampling import rng
from xlm.errors import XLMError
from xlm.evaluation import metric_names
from xlm.model.transformer import TransformerModel
from xlm.objectives import (
    OBJECTIVES,
    Masker,
    Task,
    TaskDrawer,
    loss,
    make_batch,
    parse_tasks,
    predict,
    prepare,
)
from xlm.trainer import Trainer

N_WORDS = 120


pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


def _dico() -> Dictionary:
    return Dictionary([f"w{i}" for i in range(N_WORDS - N_SPECIAL)])


def _pairs(tmp_path) -> ParallelDataset:
    dico = _dico()
    write_corpus(tmp_path / "p.en", dico, [[20, 21, 22], [30, 31, 32, 33, 34], [40, 41]])
    write_corpus(tmp_path / "p.fr", dico, [[50], [60, 61, 62], [70, 71, 72, 73]])
    return ParallelDataset(IndexedDataset(tmp_path / "p.en"), IndexedDataset(tmp_path / "p.fr"), N_WORDS, 0, 1)


def _sentences(tmp_path) -> SentenceDataset:
    write_corpus(tmp_path / "s.en", _dico(), [[20, 21, 22], [30, 31, 32, 33, 34], [], [40]])
    return SentenceDataset(IndexedDataset(tmp_path / "s.en"), N_WORDS, lang_id=0, lang2_id=1)


def _model(n_layers: int) -> TransformerModel:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=n_layers, n_heads=2, dropout=0.0, attention_dropout=0.0, max_positions=64)
    return TransformerModel(cfg, N_WORDS, 2).eval()


# -- registry -------------------------------------------------------------------------------------
def test_registry_parses_every_objective_in_draw_order_with_its_metric_names():
    cfg = ObjectivesConfig(mlm=["en", "en-fr"], clm=["de"], camlm=["en-fr"], btmlm=["en>fr", "fr>en"])
    tasks = parse_tasks(cfg)
    assert [t.name for t in tasks] == ["CLM-de", "MLM-en", "MLM-en-fr", "CAMLM-en-fr", "BTMLM-en>fr", "BTMLM-fr>en"]
    assert [t.data for t in tasks] == ["stream", "stream", "pairs", "pairs", "sentences", "sentences"]
    names = metric_names(tasks, ("valid",))
    assert names == ["valid_de_clm_ppl", "valid_de_clm_acc", "valid_en_mlm_ppl", "valid_en_mlm_acc",
                     "valid_en_fr_mlm_ppl", "valid_en_fr_mlm_acc", "valid_en_fr_camlm_ppl", "valid_en_fr_camlm_acc",
                     "valid_en_fr_btmlm_ppl", "valid_en_fr_btmlm_acc", "valid_fr_en_btmlm_ppl", "valid_fr_en_btmlm_acc",
                     "valid_mlm_ppl", "valid_mlm_acc", "valid_clm_ppl", "valid_clm_acc"]
    assert list(OBJECTIVES) == ["clm", "mlm", "camlm", "btmlm", "ae", "mt", "bt"]


def test_lambda_schedules_stage_camlm_then_btmlm():
    cfg = ObjectivesConfig(mlm=["en"], camlm=["en-fr"], btmlm=["en>fr"], lambda_camlm="0:1,99:1,100:0",
                           lambda_btmlm="0:0,99:0,100:1")
    tasks = parse_tasks(cfg)
    drawer = TaskDrawer.from_config(cfg, {t: 10 for t in tasks}, lg_sampling_factor=-1)
    assert {t.objective for t, _ in drawer.draw(50, rng(0))} == {"mlm", "camlm"}
    assert {t.objective for t, _ in drawer.draw(150, rng(0))} == {"mlm", "btmlm"}


@pytest.mark.parametrize("key, entry, message", [
    ("camlm", "en", "is not a pair 'l1-l2'"),
    ("btmlm", "en-fr", "is not a pair 'l1>l2'"),
    ("mlm", "en>fr", "is neither a language nor a pair 'l1-l2'"),
    ("btmlm", "en>en", "pairs a language with itself"),
    ("btmlm", "en>de", "language 'de'"),
])
def test_config_rejects_malformed_entries(key, entry, message):
    cfg = Config(data=DataConfig(langs=["en", "fr"]), objectives=ObjectivesConfig(**{key: [entry]}))
    with pytest.raises(XLMError, match=f"objectives.{key}: .*{message}"):
        cfg.validate()


def test_original_eval_protocol_refuses_ernie_objectives():
    cfg = Config(data=DataConfig(langs=["en", "fr"]), objectives=ObjectivesConfig(mlm=["en"], camlm=["en-fr"]),
                 train=TrainConfig(eval_protocol="original"))
    with pytest.raises(XLMError, match="objectives.camlm: train.eval_protocol 'original'"):
        cfg.validate()


# -- CAMLM ----------------------------------------------------------------------------------------
def test_camlm_mask_lets_each_side_attend_only_to_the_other(tmp_path):
    raw = _pairs(tmp_path).pairs(np.arange(3))
    batch = make_batch(Task("camlm", "en", "fr"), raw, Masker(ObjectivesConfig(), N_WORDS), rng(0))
    mask = batch.attn_mask.numpy()
    for r, (n1, n) in enumerate([(5, 8), (7, 12), (4, 10)]):  # </s> s1 </s> | </s> s2 </s>
        side = np.arange(n) >= n1
        np.testing.assert_array_equal(mask[r, :n, :n], side[:, None] != side[None, :])
    assert not batch.causal and batch.n_pred > 0
    tlm = make_batch(Task("mlm", "en", "fr"), raw, Masker(ObjectivesConfig(), N_WORDS), rng(0))
    assert tlm.attn_mask is None and torch.equal(tlm.x, batch.x)  # same masking as TLM


@pytest.mark.parametrize("objective, n_layers, unchanged", [("camlm", 1, True), ("mlm", 1, False), ("camlm", 2, False)])
def test_changing_an_unmasked_source_token_leaves_source_predictions_unchanged_with_one_layer(
        tmp_path, objective, n_layers, unchanged):
    """One CAMLM layer: a source position reads only the target side (and itself); TLM, or a second
    CAMLM layer (the source context comes back through the target states), do not have that property."""
    raw = _pairs(tmp_path).pairs(np.array([1]))  # </s> 30 31 32 33 34 </s> </s> 60 61 62 </s>
    model = _model(n_layers)
    masker = Masker(ObjectivesConfig(word_pred=0.3), N_WORDS)
    batch = make_batch(Task(objective, "en", "fr"), raw, masker, rng(1), train=False)
    src = (batch.pred_mask[0] & (torch.arange(batch.x.shape[1]) < 7)).nonzero().flatten()
    assert len(src) > 0, "the test needs a masked source token"
    rows = batch.pred_mask.nonzero()[:, 1]
    source_rows = rows < 7
    base = predict(model, batch)[source_rows]
    for pos in range(1, 6):  # every unmasked source word
        if batch.pred_mask[0, pos]:
            continue
        x = batch.x.clone()
        x[0, pos] = 100 if x[0, pos] != 100 else 101
        out = predict(model, dataclasses.replace(batch, x=x))[source_rows]
        assert torch.allclose(out, base, atol=1e-5) == unchanged, pos


# -- BTMLM ----------------------------------------------------------------------------------------
def test_sentence_dataset_reads_sentences_from_the_idx_boundaries(tmp_path):
    ds = _sentences(tmp_path)
    assert len(ds) == 3 and ds.n_dropped == 1  # the empty sentence is not used
    raw = ds.sentences(np.arange(3))
    np.testing.assert_array_equal(raw.x, [[EOS_INDEX, 20, 21, 22, EOS_INDEX, PAD_INDEX, PAD_INDEX],
                                          [EOS_INDEX, 30, 31, 32, 33, 34, EOS_INDEX],
                                          [EOS_INDEX, 40, EOS_INDEX, PAD_INDEX, PAD_INDEX, PAD_INDEX, PAD_INDEX]])
    assert raw.langs == 0 and raw.lang2 == 1


@pytest.mark.parametrize("k", [0, 2])
def test_btmlm_batch_layout_placeholders_and_targets(tmp_path, k):
    raw = _sentences(tmp_path).sentences(np.arange(3))
    masker = Masker(ObjectivesConfig(btmlm_k=k, word_pred=0.5), N_WORDS)
    batch = make_batch(Task("btmlm", "en", "fr"), raw, masker, rng(0))
    gen = batch.pending
    for r, n in enumerate([3, 5, 1]):
        kk = k or n
        n1, n2 = n + 2, kk + 2
        assert int(batch.lengths[r]) == n1 + n2
        row = gen.x[r, : n1 + n2].tolist()
        assert row == raw.x[r, :n1].tolist() + [EOS_INDEX] + [MASK_INDEX] * kk + [EOS_INDEX]  # step 1: unmasked s
        assert batch.langs[r, : n1 + n2].tolist() == [0] * n1 + [1] * n2
        assert batch.positions[r, : n1 + n2].tolist() == list(range(n1)) + list(range(n2))
        assert gen.placeholders[r].sum() == kk
        assert not batch.pred_mask[r, n1:].any()  # only the sentence is predicted
        side = np.arange(n1 + n2) >= n1
        np.testing.assert_array_equal(batch.attn_mask[r, : n1 + n2, : n1 + n2].numpy(), side[:, None] != side[None, :])
    assert batch.n_pred > 0
    np.testing.assert_array_equal(batch.targets.numpy(), gen.x[batch.pred_mask].numpy())


def test_btmlm_step_one_runs_without_gradients_and_fills_real_words(tmp_path):
    raw = _sentences(tmp_path).sentences(np.arange(3))
    model = _model(2).train()
    batch = make_batch(Task("btmlm", "en", "fr"), raw, Masker(ObjectivesConfig(), N_WORDS), rng(0))
    grad_modes = []
    hook = model.register_forward_hook(lambda *_: grad_modes.append((torch.is_grad_enabled(), model.training)))
    ready = prepare(model, batch)
    hook.remove()
    assert grad_modes == [(False, False)] and model.training  # no graph, no dropout; mode restored
    assert ready.pending is None and not ready.x.requires_grad
    pseudo = ready.x[batch.pending.placeholders]
    assert (pseudo >= N_SPECIAL).all() and (pseudo < N_WORDS).all()
    assert torch.equal(ready.x[~batch.pending.placeholders], batch.x[~batch.pending.placeholders])
    # The gradient is exactly that of step 2 with the pseudo tokens as constant inputs.
    loss(model.eval(), ready).backward()
    g1 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    constant = dataclasses.replace(batch, x=ready.x.clone(), pending=None)
    loss(model, constant).backward()
    for a, p in zip(g1, model.parameters()):
        assert torch.equal(a, p.grad)


def test_btmlm_sampling_is_seeded_by_the_batch_generator(tmp_path):
    raw = _sentences(tmp_path).sentences(np.arange(3))
    model = _model(1)
    masker = Masker(ObjectivesConfig(btmlm_generation="sample"), N_WORDS)
    task = Task("btmlm", "en", "fr")
    a = prepare(model, make_batch(task, raw, masker, rng(5))).x
    b = prepare(model, make_batch(task, raw, masker, rng(5))).x
    c = prepare(model, make_batch(task, raw, masker, rng(6))).x
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_training_with_every_objective_resumes_bit_exactly(tmp_path):
    """MLM + TLM + CAMLM + BTMLM (sampled pseudo tokens, dropout on): 8 steps straight equal 4 + 4 resumed."""
    data = synthetic_folder(tmp_path / "data", n_train=120, n_eval=16)
    overrides = ["objectives.mlm=[en,fr,en-fr]", "objectives.camlm=[en-fr]", "objectives.btmlm=[en>fr,fr>en]",
                 "objectives.btmlm_generation=sample", "objectives.lambda_btmlm=0:0,3:0,4:1",
                 "train.eval_every=100", "train.save_every=4", "train.eval_at_start=false"]

    def run(name, steps):
        trainer = Trainer(tiny_config(data, tmp_path / name, [*overrides, f"train.max_steps={steps}"]))
        trainer.train()
        return trainer

    direct = run("direct", 8)
    run("resumed", 4)
    resumed = run("resumed", 8)
    assert resumed.state.step == 8
    for (k, a), b in zip(direct.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    metrics = resumed.evaluate()
    assert {"valid_en_fr_camlm_ppl", "valid_en_fr_btmlm_ppl", "valid_fr_en_btmlm_acc"} <= set(metrics)
