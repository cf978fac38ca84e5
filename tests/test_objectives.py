"""Masking statistics, TLM/CLM batches, the loss on predicted positions, task draws and lambda schedules."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from training_data import write_corpus

from xlm.config import ModelConfig, ObjectivesConfig
from xlm.data.datasets import ParallelDataset, RawBatch
from xlm.data.dictionary import EOS_INDEX, MASK_INDEX, N_SPECIAL, PAD_INDEX, Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.data.sampling import rng
from xlm.model.transformer import TransformerModel
from xlm.objectives import (
    Masker,
    Task,
    TaskDrawer,
    clm_batch,
    loss,
    make_batch,
    mlm_batch,
    parse_tasks,
    predict,
    schedule_value,
)

N_WORDS = 300


def _tokens(gen: np.random.Generator, shape=(64, 48)) -> np.ndarray:
    """Real words with </s>, <unk>, other specials and right padding mixed in."""
    x = gen.integers(N_SPECIAL, N_WORDS, size=shape)
    x[gen.random(shape) < 0.1] = EOS_INDEX
    x[gen.random(shape) < 0.05] = 3  # <unk>
    x[gen.random(shape) < 0.03] = 7  # another special
    for r in range(shape[0]):
        x[r, gen.integers(shape[1] // 2, shape[1] + 1):] = PAD_INDEX
    return x


def test_mlm_masking_statistics():
    masker = Masker(ObjectivesConfig(), N_WORDS)
    gen = np.random.default_rng(0)
    n_real = n_sel = 0
    outcome = Counter()
    for i in range(40):
        x = _tokens(gen)
        y, pred, targets = masker(x, rng(0, i))
        assert not pred[x < N_SPECIAL].any()  # never padding, </s>, <unk> or any special token
        np.testing.assert_array_equal(targets, x[pred])
        assert (y[~pred] == x[~pred]).all()  # nothing else changes
        n_real += int((x >= N_SPECIAL).sum())
        n_sel += int(pred.sum())
        new = y[pred]
        outcome["mask"] += int((new == MASK_INDEX).sum())
        outcome["keep"] += int((new == targets).sum())
        rand = (new != MASK_INDEX) & (new != targets)
        outcome["rand"] += int(rand.sum())
        assert (new[rand] >= N_SPECIAL).all() and (new[rand] < N_WORDS).all()  # random ids are real words
    assert abs(n_sel / n_real - 0.15) < 0.005, n_sel / n_real
    assert abs(outcome["mask"] / n_sel - 0.8) < 0.015
    # "keep" also absorbs random draws that hit the original word (1/286 of them).
    assert abs(outcome["keep"] / n_sel - 0.1) < 0.01
    assert abs(outcome["rand"] / n_sel - 0.1) < 0.01


def test_sample_alpha_selects_exact_count_and_favours_rare_words():
    counts = [0] * N_SPECIAL + [10_000] * 143 + [10] * 143  # ids 14..156 frequent, 157.. rare
    masker = Masker(ObjectivesConfig(sample_alpha=0.5), N_WORDS, counts)
    gen = np.random.default_rng(1)
    freq = rare = 0
    for i in range(20):
        x = _tokens(gen)
        _, pred, targets = masker(x, rng(1, i))
        assert pred.sum() == math.ceil(0.15 * (x >= N_SPECIAL).sum())
        assert not pred[x < N_SPECIAL].any()
        freq += int((targets < 157).sum())
        rare += int((targets >= 157).sum())
    assert rare > 3 * freq  # weights differ by (10000/10)^0.5 ~ 32


def test_at_least_one_prediction_and_none_when_no_real_word():
    masker = Masker(ObjectivesConfig(word_pred=1e-9), N_WORDS)
    x = np.full((2, 5), 20)
    assert masker(x, rng(0))[1].sum() == 1
    specials = np.array([[EOS_INDEX, 5, PAD_INDEX]])
    assert masker(specials, rng(0))[1].sum() == 0


def test_eval_masking_is_deterministic_and_all_mask():
    masker = Masker(ObjectivesConfig(), N_WORDS)
    x = _tokens(np.random.default_rng(2))
    y1, p1, _ = masker(x, rng(7, 1), train=False)
    y2, p2, _ = masker(x, rng(7, 1), train=False)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(p1, p2)
    assert (y1[p1] == MASK_INDEX).all()


def test_tlm_batch_keeps_pair_positions_and_languages(tmp_path):
    dico = Dictionary([f"w{i}" for i in range(N_WORDS - N_SPECIAL)])
    write_corpus(tmp_path / "p.en", dico, [[20, 21, 22], [30]])
    write_corpus(tmp_path / "p.fr", dico, [[40], [50, 51]])
    ds = ParallelDataset(IndexedDataset(tmp_path / "p.en"), IndexedDataset(tmp_path / "p.fr"), N_WORDS, 0, 1)
    raw = ds.pairs(np.array([0, 1]))
    batch = mlm_batch(Task("mlm", "en", "fr"), raw, Masker(ObjectivesConfig(), N_WORDS), rng(0))
    assert batch.positions[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert batch.langs[0].tolist() == [0] * 5 + [1] * 3
    assert batch.positions[1, :7].tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert batch.langs[1, :7].tolist() == [0] * 3 + [1] * 4
    assert not batch.causal and batch.pred_mask.sum() >= 1
    assert not batch.pred_mask[torch.from_numpy(raw.x) < N_SPECIAL].any()


@pytest.fixture
def model() -> TransformerModel:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_dim=32, n_layers=2, n_heads=4, dropout=0.0, attention_dropout=0.0)
    return TransformerModel(cfg, N_WORDS, n_langs=2).eval()


def test_clm_targets_and_causality_through_the_batch_path(model):
    x = np.random.default_rng(3).integers(N_SPECIAL, N_WORDS, size=(3, 12))
    raw = RawBatch(x, np.full(3, 12), 0)
    batch = clm_batch(Task("clm", "en"), raw, context_size=2)
    assert batch.causal
    assert batch.pred_mask[:, :2].sum() == 0 and batch.pred_mask[:, 2:11].all() and not batch.pred_mask[:, 11].any()
    np.testing.assert_array_equal(batch.targets.numpy(), x[:, 3:].reshape(-1))  # t predicts t+1, row-major
    k = 6
    x2 = x.copy()
    x2[:, k:] = np.random.default_rng(4).integers(N_SPECIAL, N_WORDS, size=(3, 12 - k))
    b2 = clm_batch(Task("clm", "en"), RawBatch(x2, np.full(3, 12), 0))
    b1 = clm_batch(Task("clm", "en"), raw)
    with torch.no_grad():
        s1 = predict(model, b1).view(3, 11, -1)
        s2 = predict(model, b2).view(3, 11, -1)
    torch.testing.assert_close(s1[:, :k], s2[:, :k])  # outputs before k ignore tokens from k on
    assert not torch.allclose(s1[:, k:], s2[:, k:])


def test_loss_is_mean_over_predicted_tokens_only(model):
    x = _tokens(np.random.default_rng(5), (4, 20))
    raw = RawBatch(x, (x != PAD_INDEX).sum(1), 1)
    batch = make_batch(Task("mlm", "fr"), raw, Masker(ObjectivesConfig(), N_WORDS), rng(3))
    logits = predict(model, batch)
    assert logits.shape == (batch.n_pred, N_WORDS)
    with torch.no_grad():
        h = model(batch.x, lengths=batch.lengths, langs=1)
        full = model.predict(h)[batch.pred_mask]
        expected = F.cross_entropy(full, batch.targets)
    torch.testing.assert_close(loss(model, batch), expected)


def test_task_names_and_metrics():
    tasks = parse_tasks(ObjectivesConfig(mlm=["en", "en-fr"], clm=["de", "de-en"]))
    assert [t.name for t in tasks] == ["CLM-de", "CLM-de-en", "MLM-en", "MLM-en-fr"]
    assert [t.metric("valid", "ppl") for t in tasks] == [
        "valid_de_clm_ppl", "valid_de-en_clm_ppl", "valid_en_mlm_ppl", "valid_en_fr_mlm_ppl"]


def test_task_drawer_follows_sampling_factor_and_lambdas():
    cfg = ObjectivesConfig(mlm=["en", "fr", "en-fr"], clm=["en"], lambda_clm="0:1,10:0", lambda_mlm="0.5")
    tasks = parse_tasks(cfg)
    sizes = {t: {"CLM-en": 100, "MLM-en": 100, "MLM-fr": 900, "MLM-en-fr": 50}[t.name] for t in tasks}
    drawer = TaskDrawer.from_config(cfg, sizes, lg_sampling_factor=1.0)
    counts = Counter()
    for step in range(2000):
        drawn = drawer.draw(step + 10, rng(9, step))
        assert [t.name for t, _ in drawn if t.is_pair] == ["MLM-en-fr"]
        assert all(w == 0.5 and t.objective == "mlm" for t, w in drawn)  # lambda_clm is 0 from step 10
        counts.update(t.lang1 for t, _ in drawn if not t.is_pair)
    assert abs(counts["en"] / (counts["en"] + counts["fr"]) - 0.1) < 0.02  # p ~ size with alpha=1
    first = drawer.draw(0, rng(9, 0))
    assert first[0][0].name == "CLM-en" and first[0][1] == 1.0


def test_schedule_value_is_piecewise_linear():
    pts = [(0, 1.0), (100, 0.1), (300, 0.0)]
    assert schedule_value(pts, 0) == 1.0
    assert schedule_value(pts, 50) == pytest.approx(0.55)
    assert schedule_value(pts, 200) == pytest.approx(0.05)
    assert schedule_value(pts, 10_000) == 0.0
    assert schedule_value([(10, 2.0), (20, 4.0)], 3) == 2.0
