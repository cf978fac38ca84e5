"""Stream and parallel datasets, samplers (state, sharding, batching) and language sampling."""

from __future__ import annotations

import numpy as np
import pytest
from training_data import write_corpus

from xlm.data.datasets import ParallelDataset, ParallelSampler, StreamDataset, StreamSampler, open_corpus
from xlm.data.dictionary import EOS_INDEX, PAD_INDEX, UNK_INDEX, Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.data.sampling import sampling_probs
from xlm.errors import XLMError


def _dico(n: int = 50) -> Dictionary:
    return Dictionary([f"w{i}" for i in range(n)], list(range(1000, 1000 - n, -1)))


def _sentences(gen: np.random.Generator, n: int, lo: int = 1, hi: int = 12, n_words: int = 64) -> list[np.ndarray]:
    return [gen.integers(14, n_words, size=int(gen.integers(lo, hi))) for _ in range(n)]


@pytest.fixture
def corpus(tmp_path):
    dico = _dico()
    sents = _sentences(np.random.default_rng(0), 57)
    write_corpus(tmp_path / "train.en", dico, sents)
    return IndexedDataset(tmp_path / "train.en"), sents, dico


# -- streams --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bptt", [1, 7, 16, 1000])
def test_stream_windows_cover_every_token_once_including_the_last(corpus, bptt):
    data, sents, dico = corpus
    ds = StreamDataset(data, bptt, len(dico), lang_id=1)
    flat = np.concatenate([ds.windows(np.array([i])).x[0] for i in range(len(ds))])
    expected = np.concatenate([[EOS_INDEX]] + [np.append(s, EOS_INDEX) for s in sents])
    assert len(flat) % bptt == 0 and len(flat) - ds.pad == len(expected)
    assert (flat[: ds.pad] == EOS_INDEX).all()  # front padding only
    np.testing.assert_array_equal(flat[ds.pad :], expected)
    assert flat[-1] == EOS_INDEX and flat[-2] == sents[-1][-1]  # the last token is kept


def test_stream_batch_layout_and_memmap(corpus):
    data, _, dico = corpus
    ds = StreamDataset(data, 8, len(dico), lang_id=3)
    raw = ds.windows(np.array([2, 0, 5]))
    assert raw.x.shape == (3, 8) and raw.x.dtype == np.int64
    assert (raw.lengths == 8).all() and raw.langs == 3 and raw.positions is None
    assert isinstance(data.tokens, np.memmap)  # read from disk pages, not loaded


def test_stream_max_sentences_and_vocab_trimming(corpus):
    data, sents, dico = corpus
    ds = StreamDataset(data, 4, n_words=20, lang_id=0, max_sentences=5)
    assert ds.n_stream_tokens == 1 + sum(len(s) + 1 for s in sents[:5])
    x = np.concatenate([ds.windows(np.array([i])).x[0] for i in range(len(ds))])
    assert x.max() < 20 and (x[ds.pad + 1 :][np.concatenate([np.append(s, 1) for s in sents[:5]]) >= 20]
                             == UNK_INDEX).all()


# -- pairs ----------------------------------------------------------------------------------------
@pytest.fixture
def pairs(tmp_path):
    dico = _dico()
    gen = np.random.default_rng(1)
    s1, s2 = _sentences(gen, 40, 0, 9), _sentences(gen, 40, 0, 9)
    s1[0], s2[0] = np.array([20, 21]), np.array([30])  # first sentence: offset 0 edge case
    s1[5] = np.arange(14, 14 + 30)  # too long for max_len=20
    write_corpus(tmp_path / "train.en-fr.en", dico, s1)
    write_corpus(tmp_path / "train.en-fr.fr", dico, s2)
    return IndexedDataset(tmp_path / "train.en-fr.en"), IndexedDataset(tmp_path / "train.en-fr.fr"), s1, s2, dico


def test_parallel_layout_positions_and_langs(pairs):
    d1, d2, s1, s2, dico = pairs
    ds = ParallelDataset(d1, d2, len(dico), lang1_id=0, lang2_id=1, max_len=20)
    rows = np.arange(len(ds))
    raw = ds.pairs(rows)
    for r, i in enumerate(ds.indices[rows]):
        a, b = s1[i], s2[i]
        n1, n2 = len(a) + 2, len(b) + 2
        expect = np.concatenate([[EOS_INDEX], a, [EOS_INDEX, EOS_INDEX], b, [EOS_INDEX]])
        assert raw.lengths[r] == n1 + n2
        np.testing.assert_array_equal(raw.x[r, : n1 + n2], expect)
        assert (raw.x[r, n1 + n2 :] == PAD_INDEX).all()
        np.testing.assert_array_equal(raw.positions[r, : n1 + n2], np.concatenate([np.arange(n1), np.arange(n2)]))
        np.testing.assert_array_equal(raw.langs[r, : n1 + n2], [0] * n1 + [1] * n2)


def test_parallel_filters_empty_and_long_pairs(pairs):
    d1, d2, s1, s2, dico = pairs
    ds = ParallelDataset(d1, d2, len(dico), 0, 1, max_len=20)
    kept = set(ds.indices.tolist())
    for i in range(len(s1)):
        ok = 0 < len(s1[i]) <= 20 and 0 < len(s2[i]) <= 20
        assert (i in kept) == ok
    assert ds.n_dropped == len(s1) - len(kept) and 5 not in kept
    assert (ds.lengths == np.array([len(s1[i]) + len(s2[i]) + 4 for i in ds.indices])).all()


def test_reversed_pair_puts_requested_first_language_first(pairs):
    d1, d2, s1, s2, dico = pairs
    ds = ParallelDataset(d2, d1, len(dico), lang1_id=1, lang2_id=0)  # fr-en
    raw = ds.pairs(np.array([0]))
    np.testing.assert_array_equal(raw.x[0], [EOS_INDEX, 30, EOS_INDEX, EOS_INDEX, 20, 21, EOS_INDEX])
    assert raw.langs[0, 0] == 1 and raw.langs[0, -1] == 0


def test_misaligned_parallel_files_and_wrong_vocabulary_are_clear_errors(tmp_path):
    dico = _dico()
    write_corpus(tmp_path / "a", dico, [[20]] * 3)
    write_corpus(tmp_path / "b", dico, [[20]] * 4)
    with pytest.raises(XLMError, match="3 sentences"):
        ParallelDataset(IndexedDataset(tmp_path / "a"), IndexedDataset(tmp_path / "b"), len(dico), 0, 1)
    with pytest.raises(XLMError, match="another vocabulary"):
        open_corpus(tmp_path / "a", len(dico), _dico(49).fingerprint())
    with pytest.raises(XLMError, match="missing"):
        open_corpus(tmp_path / "nope", len(dico), "")


# -- samplers -------------------------------------------------------------------------------------
def test_stream_sampler_epochs_cover_shard_and_reshuffle():
    s = StreamSampler(23, 5, seed=0)
    epoch0 = [next(s) for _ in range(5)]
    assert [len(b) for b in epoch0] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(epoch0).tolist()) == list(range(23))
    epoch1 = np.concatenate([next(s) for _ in range(5)])
    assert s.epoch == 1 and sorted(epoch1.tolist()) == list(range(23))
    assert not np.array_equal(np.concatenate(epoch0), epoch1)


def test_samplers_shard_by_rank():
    shards = [np.concatenate([next(s) for _ in range(3)])  # 10 windows each: batches of 4, 4, 2
              for s in (StreamSampler(30, 4, seed=3, rank=r, world_size=3) for r in range(3))]
    assert all(len(x) == 10 for x in shards)
    assert sorted(np.concatenate(shards).tolist()) == list(range(30))
    with pytest.raises(XLMError, match="processes"):
        StreamSampler(2, 4, seed=0, rank=2, world_size=3)


@pytest.mark.parametrize("make", [
    lambda: StreamSampler(37, 4, seed=5, rank=1, world_size=2, name="MLM-en"),
    lambda: ParallelSampler(np.random.default_rng(0).integers(4, 60, 200), 8, tokens_per_batch=300, seed=5),
])
def test_sampler_state_round_trip_continues_exactly(make):
    a = make()
    for _ in range(13):  # past an epoch boundary
        next(a)
    state = a.state_dict()
    expected = [next(a) for _ in range(30)]
    b = make()
    b.load_state_dict(dict(state))
    assert all(np.array_equal(x, y) for x, y in zip(expected, [next(b) for _ in range(30)]))


def test_parallel_sampler_token_budget_grouping_and_max_batch_size():
    lengths = np.random.default_rng(2).integers(4, 80, 500)
    s = ParallelSampler(lengths, 32, tokens_per_batch=400, max_batch_size=12, seed=1)
    batches = s.make_epoch(np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for b in batches:
        assert len(b) <= 12
        assert lengths[b].sum() <= 400 + lengths.max()
        assert lengths[b].max() - lengths[b].min() <= 10  # grouped by length
    by_count = ParallelSampler(lengths, 32, seed=1).make_epoch(np.random.default_rng(0))
    assert max(len(b) for b in by_count) == 32 and len(by_count) == 16


# -- language sampling ----------------------------------------------------------------------------
def test_sampling_probs():
    np.testing.assert_allclose(sampling_probs([10, 1000, 5], -1), [1 / 3] * 3)
    np.testing.assert_allclose(sampling_probs([100, 300], 1.0), [0.25, 0.75])
    q = sampling_probs([100, 300], 0.7)
    np.testing.assert_allclose(q, np.array([0.25, 0.75]) ** 0.7 / (np.array([0.25, 0.75]) ** 0.7).sum())
    assert 0.25 < q[0] < 0.5  # alpha < 1 up-samples the small language
    np.testing.assert_allclose(sampling_probs([1, 9], 0.0), [0.5, 0.5])
