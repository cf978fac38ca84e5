"""Binarized format: round trip, memory mapping, dtype choice, and corruption detection."""

from __future__ import annotations

import numpy as np
import pytest

from xlm.data.indexed import IndexedDataset, IndexedWriter, bin_path, dtype_for_vocab, idx_path
from xlm.errors import XLMError


def build(prefix, sentences, vocab_size=100):
    with IndexedWriter(prefix, vocab_size, "fp") as w:
        for s in sentences:
            w.add(s)
    return IndexedDataset(prefix)


def test_round_trip_layout_matches_the_original_flat_array(tmp_path):
    ds = build(tmp_path / "train.en", [[5, 20, 30], [], [99]])
    assert len(ds) == 3 and ds.n_tokens == 7
    assert ds[0].tolist() == [5, 20, 30] and ds[1].tolist() == [] and ds[-1].tolist() == [99]
    assert ds.tokens.tolist() == [5, 20, 30, 1, 1, 99, 1]  # each sentence followed by one </s>
    assert ds.sizes.tolist() == [3, 0, 1]
    assert isinstance(ds.tokens, np.memmap) and ds.dtype == np.uint16
    assert ds.vocab_fingerprint == "fp"
    ds.validate()
    with pytest.raises(IndexError):
        ds[3]


def test_dtype_is_the_smallest_that_fits():
    assert dtype_for_vocab(65535) == np.uint16 and dtype_for_vocab(65536) == np.int32


def test_large_vocab_uses_int32_and_many_sentences_stream(tmp_path):
    rng = np.random.default_rng(0)
    sents = [rng.integers(14, 70000, rng.integers(0, 40)) for _ in range(3000)]
    ds = build(tmp_path / "big", sents, vocab_size=70000)
    assert ds.dtype == np.int32
    assert all(np.array_equal(ds[i], s) for i, s in enumerate(sents))


def test_out_of_range_id_is_rejected_and_leaves_no_file(tmp_path):
    with pytest.raises(XLMError, match="out of range"), IndexedWriter(tmp_path / "x", 50) as w:
        w.add([10, 60])
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_files(tmp_path):
    build(tmp_path / "x", [[5, 6]])
    before = bin_path(tmp_path / "x").read_bytes(), idx_path(tmp_path / "x").read_bytes()
    with pytest.raises(RuntimeError), IndexedWriter(tmp_path / "x", 100) as w:
        w.add([7, 8, 9])
        raise RuntimeError("disk on fire")
    assert (bin_path(tmp_path / "x").read_bytes(), idx_path(tmp_path / "x").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.idx"]


def test_truncated_bin_is_detected(tmp_path):
    build(tmp_path / "x", [[5, 6, 7], [8]])
    b = bin_path(tmp_path / "x")
    b.write_bytes(b.read_bytes()[:-2])
    with pytest.raises(XLMError, match="x.bin: holds 10 bytes, index says 6 tokens"):
        IndexedDataset(tmp_path / "x")


def test_index_pointing_past_the_end_is_detected(tmp_path):
    build(tmp_path / "x", [[5, 6, 7], [8]])
    i = idx_path(tmp_path / "x")
    raw = bytearray(i.read_bytes())
    raw[-8:] = np.array([99], dtype="<i8").tobytes()
    i.write_bytes(bytes(raw))
    with pytest.raises(XLMError, match="index points past the end"):
        IndexedDataset(tmp_path / "x")


def test_bad_magic_and_missing_files(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"garbage!" * 4)
    with pytest.raises(XLMError, match="bad magic"):
        IndexedDataset(tmp_path / "x")
    with pytest.raises(XLMError, match="cannot read index"):
        IndexedDataset(tmp_path / "nothing")


def test_validate_catches_ids_beyond_the_vocabulary(tmp_path):
    ds = build(tmp_path / "x", [[5, 6], [7]])
    raw = bytearray(bin_path(tmp_path / "x").read_bytes())
    raw[0:2] = np.array([150], dtype="<u2").tobytes()
    bin_path(tmp_path / "x").write_bytes(bytes(raw))
    with pytest.raises(XLMError, match="outside the vocabulary"):
        IndexedDataset(tmp_path / "x").validate()
    assert ds is not None
