"""Packing TLM pairs into rows (data.pack): every example as computed alone, training only."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from training_data import synthetic_folder, tiny_config

from xlm.config import ModelConfig
from xlm.data.packing import PackedPairSampler, first_fit, pack_pairs, pack_rows, set_pack_rows
from xlm.errors import XLMError
from xlm.model import TransformerModel
from xlm.model.attention_mask import AttentionMask
from xlm.train.prefetch import pred_capacity
from xlm.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")  # (tests/conftest.py)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_folder(tmp_path_factory.mktemp("pack") / "data", n_train=300)


def _pairs(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path / "r", ["data.bptt=48"]))
    (task,) = [t for t in trainer.data.sources if t.is_pair]
    return trainer, trainer.data.sources[task].next()


def test_packed_rows_hold_every_example_once_with_its_positions_and_languages(data, tmp_path):
    _, raw = _pairs(data, tmp_path)
    packed, seg = pack_pairs(raw, 48)
    assert packed.x.shape == seg.shape and packed.x.shape[1] == 48 and packed.x.shape[0] % 8 == 0
    assert packed.lengths.sum() == raw.lengths.sum() and (packed.lengths <= 48).all()
    found = []
    for r in range(len(seg)):
        assert (seg[r, packed.lengths[r]:] == 0).all() and (seg[r, :packed.lengths[r]] > 0).all()
        for k in range(1, seg[r].max() + 1):
            cols = np.flatnonzero(seg[r] == k)
            assert (np.diff(cols) == 1).all()  # contiguous
            found.append((tuple(packed.x[r, cols]), tuple(packed.positions[r, cols]), tuple(packed.langs[r, cols])))
    expected = [(tuple(raw.x[i, :n]), tuple(raw.positions[i, :n]), tuple(raw.langs[i, :n]))
                for i, n in enumerate(raw.lengths)]
    assert sorted(found) == sorted(expected)
    with pytest.raises(XLMError, match="does not fit rows of data.bptt=8"):
        pack_pairs(raw, 8)


@pytest.mark.parametrize("backend", ["sdpa", "flex", "flex-inductor"])
def test_a_packed_row_computes_each_example_as_unpacked(data, tmp_path, backend):
    """Block-diagonal attention (an AttentionMask of segments): outputs equal the unpacked batch's (fp32),
    through SDPA with a dense mask and through flex_attention (eager: unfused; inductor: its fused CPU
    kernel). CPU: forward only (torch has no flex_attention backward on CPU)."""
    trainer, raw = _pairs(data, tmp_path)
    torch.manual_seed(0)
    model = TransformerModel(ModelConfig(emb_dim=32, n_layers=2, n_heads=2), 200, 2).eval()
    model.attention_backend = backend.split("-")[0]
    run = torch.compile(model, fullgraph=True, backend="inductor") if backend.endswith("inductor") else model
    packed, seg = pack_pairs(raw, 48)
    t = torch.from_numpy
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "flex_attention called without torch.compile")
        alone = model(t(raw.x), lengths=t(raw.lengths), langs=t(raw.langs), positions=t(raw.positions))
        together = run(t(packed.x), lengths=t(packed.lengths), langs=t(packed.langs), positions=t(packed.positions),
                       attn_mask=AttentionMask(segments=t(seg)), padded=True)
    checked = 0
    for r in range(len(seg)):
        for k in range(1, seg[r].max() + 1):
            cols = np.flatnonzero(seg[r] == k)
            tokens = tuple(packed.x[r, cols])
            i = next(i for i, n in enumerate(raw.lengths) if n == len(cols) and tuple(raw.x[i, :n]) == tokens)
            torch.testing.assert_close(together[r, cols], alone[i, :len(cols)], rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked == len(raw.lengths)


def test_packed_training_has_one_shape_per_task_and_evaluation_does_not_pack(data, tmp_path):
    packed = Trainer(tiny_config(data, tmp_path / "p", ["data.pack=true", "data.bptt=48", "train.max_steps=6",
                                                        "train.eval_every=6", "train.eval_at_start=false"]))
    plain = Trainer(tiny_config(data, tmp_path / "u", ["data.bptt=48"]))
    assert packed.evaluate() == plain.evaluate()  # same initial model, evaluation never packs
    assert pack_rows(packed.cfg.data, 20.0) == 5  # ceil(tokens_per_batch 200 / bptt 48)
    assert pack_rows(dataclasses.replace(packed.cfg.data, tokens_per_batch=-1), 20.0) == 4  # ceil(8 pairs * 20 / 48)
    warned: list[str] = []
    packed.builder.warn = warned.append
    micro = [m for s in range(60) for m in packed.builder.build(s).micro]  # more than an epoch of pairs
    tlm = [m for m in micro if m.segments is not None]
    assert len(tlm) > 20 and {m.task.name for m in tlm} == {"MLM-en-fr"}
    assert {(tuple(m.batch.x.shape), tuple(m.segments.shape), m.pred_index.numel()) for m in tlm} == {
        ((5, 48), (5, 48), pred_capacity(0.15, 5 * 48))}
    assert not warned
    for task, src in packed.data.sources.items():  # (the builds above read ahead)
        src.sampler.load_state_dict(packed.sampler_states[task.name])
    packed.train()
    assert packed.state.step == 6 and packed.state.nan_streak == 0


def test_the_packed_sampler_cuts_an_epoch_into_batches_that_fill_the_rows(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path / "s", ["data.pack=true", "data.bptt=48"]))
    (task,) = [t for t in trainer.data.sources if t.is_pair]
    sampler = trainer.data.sources[task].sampler
    assert isinstance(sampler, PackedPairSampler) and sampler.rows == 5
    lengths = sampler.lengths
    batches = sampler.make_epoch(np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == sampler.shard.tolist()  # every pair once: nothing dropped
    assert max(first_fit(lengths[b], 48)[2] for b in batches) == 5  # every batch fits its rows
    assert lengths.sum() / (5 * 48 * len(batches)) > 0.85  # rows well filled (0.89 measured)
    sampler.max_batch_size = 3
    assert max(len(b) for b in sampler.make_epoch(np.random.default_rng(0))) == 3
    with pytest.raises(XLMError, match="does not fit rows of data.bptt=8"):
        PackedPairSampler(lengths, 8, 5)
    short, long = PackedPairSampler(np.full(30, 10), 48, 0), PackedPairSampler(np.full(10, 30), 48, 0)
    set_pack_rows([short, long], dataclasses.replace(trainer.cfg.data, tokens_per_batch=-1))
    assert short.rows == long.rows == 3  # all packed tasks one shape: ceil(8 pairs * mean 15 / 48)


def test_a_batch_that_does_not_fit_takes_more_rows_and_warns(data, tmp_path):
    trainer = Trainer(tiny_config(data, tmp_path / "w", ["data.pack=true", "data.bptt=48"]))
    (task,) = [t for t in trainer.data.sources if t.is_pair]
    raw = trainer.data.sources[task].next()
    packed, seg = pack_pairs(raw, 48, rows=1)
    assert len(seg) == 8 and packed.lengths.sum() == raw.lengths.sum()  # nothing dropped or truncated
    warned: list[str] = []
    (task,) = trainer.builder.pack_rows
    trainer.builder.warn, trainer.builder.pack_rows[task] = warned.append, 1
    micro = [m for s in range(4) for m in trainer.builder.build(s).micro]
    shapes = {tuple(m.batch.x.shape) for m in micro if m.segments is not None}
    assert shapes == {(8, 48)} and warned
    assert "pairs of task MLM-en-fr need more than 1 rows of 48 tokens: this batch takes 8 rows" in warned[0]


def test_fixed_capacity_prediction_index_is_padded_with_the_ignore_index(data, tmp_path):

    trainer = Trainer(tiny_config(data, tmp_path / "c", ["data.pack=true", "data.bptt=48"]))
    trainer.model.eval()
    for m in trainer.builder.build(0).micro:
        n, cap = m.n_pred, m.pred_index.numel()
        assert cap % 8 == 0 and cap >= n and (m.batch.targets[n:] == -100).all()
        assert torch.equal(m.pred_index[:n], m.batch.pred_mask.flatten().nonzero().flatten())
        with torch.no_grad():
            padded = trainer.wrapped(m.batch, m.pred_index, m.padded, m.segments)
            exact = trainer.wrapped(dataclasses.replace(m.batch, targets=m.batch.targets[:n]), m.pred_index[:n],
                                    m.padded, m.segments)
        torch.testing.assert_close(padded, exact)  # the padding adds nothing to the summed loss


def test_a_packed_run_resumes_exactly(data, tmp_path):
    """The packed sampler's epochs are a function of (seed, rank, epoch): a resumed run reads the same rows."""
    def run(name, steps):
        cfg = tiny_config(data, tmp_path / name, ["data.pack=true", "data.bptt=48", "train.eval_every=100",
                                                   "train.save_every=30", "train.eval_at_start=false", steps])
        trainer = Trainer(cfg)
        trainer.train()
        return trainer

    direct = run("direct", "train.max_steps=60")  # more than an epoch of packed batches
    run("resumed", "train.max_steps=30")
    resumed = run("resumed", "train.max_steps=60")
    assert resumed.state.step == 60
    (task,) = [t for t in resumed.data.sources if t.is_pair]
    assert resumed.sampler_states[task.name]["epoch"] >= 1  # the packed sampler started a new epoch
    for (k, a), b in zip(direct.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
