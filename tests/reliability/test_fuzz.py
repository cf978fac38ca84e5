"""Property-based fuzzing: random input never crashes a reader or the BPE, it only raises XLMError."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlm.config import load_config
from xlm.data.bpe import BPE, read_bpe_vocab, read_codes
from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedDataset, IndexedWriter
from xlm.errors import XLMError

# derandomize: CI explores the same examples every run, so a red build always reproduces
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
CODES = [("e", "s", 9), ("t", "h", 8), ("th", "e</w>", 7), ("es", "t</w>", 6), ("中", "文</w>", 5), ("é", "t", 4)]
BPE_MODEL = BPE(CODES)


def debpe(text: str) -> str:
    return text.replace("@@ ", "")


@FUZZ
# Any Unicode text a file can hold: lone surrogates (category Cs) cannot be encoded in UTF-8 at all.
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \n"), min_size=1,
                        max_size=12), max_size=10))
def test_bpe_apply_on_random_unicode_round_trips(words):
    line = " ".join(words)
    (out,) = BPE_MODEL.apply([line])
    assert debpe(out) == line  # removing the continuation markers gives the input words back
    assert all(BPE_MODEL.apply_word(w) for w in words)


def _in_tmp(data: bytes, name: str) -> Path:
    d = Path(tempfile.mkdtemp())
    (d / name).write_bytes(data)
    return d / name


@FUZZ
@given(st.binary(max_size=300))
@pytest.mark.filterwarnings("ignore::xlm.errors.XLMWarning")  # lines the original skips: counted, not errors
def test_vocabulary_readers_only_raise_xlm_errors(data):
    path = _in_tmp(data, "vocab")
    for reader in (Dictionary.read_vocab, read_bpe_vocab):
        try:
            reader(path)
        except XLMError as e:
            assert "vocab" in str(e) and "\n" not in str(e)


@FUZZ
@given(st.binary(max_size=300))
def test_codes_reader_only_raises_xlm_errors(data):
    path = _in_tmp(data, "codes")
    try:
        codes = read_codes(path)
    except XLMError as e:
        assert "codes" in str(e) and "\n" not in str(e)
    else:
        BPE(codes).apply(["the test 中文"])


@FUZZ
@given(st.text(max_size=300))
def test_config_loader_only_raises_xlm_errors(text):
    path = _in_tmp(text.encode("utf-8", "surrogatepass"), "c.yaml")
    try:
        load_config(path)
    except XLMError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.sampled_from(["bin", "idx"]), st.integers(0, 400), st.binary(min_size=1, max_size=64), st.booleans())
def test_binarized_reader_on_damaged_files_only_raises_xlm_errors(which, offset, junk, truncate):
    d = Path(tempfile.mkdtemp())
    with IndexedWriter(d / "x", 100, "fp") as w:
        for s in ([5, 6, 7], [], [20, 30], [99] * 20):
            w.add(s)
    path = d / f"x.{which}"
    raw = bytearray(path.read_bytes())
    offset = min(offset, len(raw))
    raw = raw[:offset] if truncate else raw[:offset] + junk + raw[offset + len(junk):]
    path.write_bytes(bytes(raw))
    try:
        ds = IndexedDataset(d / "x")
        ds.validate()
        for i in range(len(ds)):
            ds[i]
    except XLMError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.binary(min_size=0, max_size=2000))
def test_random_bytes_as_index_only_raise_xlm_errors(data):
    d = Path(tempfile.mkdtemp())
    (d / "x.idx").write_bytes(b"XLMIDX1\n" + data)
    (d / "x.bin").write_bytes(data[:64])
    with contextlib.suppress(XLMError):
        IndexedDataset(d / "x").validate()
