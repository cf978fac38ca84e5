"""binarize: ids decode back to the text, unknown and special words, empty lines, atomic streaming output."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from xlm.data.binarize import binarize_file
from xlm.data.dictionary import EOS_INDEX, UNK_INDEX, Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.errors import XLMError


def write_vocab(path: Path, text: str) -> Dictionary:
    """A fastBPE-style vocabulary (count descending, ties by token) of the ' '-separated words of text."""
    counts = Counter(w for line in text.split("\n") for w in line.split(" ") if w)
    path.write_text(
        "".join(f"{w} {c}\n" for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), encoding="utf-8"
    )
    return Dictionary.read_vocab(path)


def sentences(prefix: Path) -> list[list[int]]:
    ds = IndexedDataset(prefix)
    ds.validate()
    return [ds[i].tolist() for i in range(len(ds))]


def test_round_trip_on_corpus_text_in_parallel_chunks(tmp_path, slice_dir):
    text = (slice_dir / "mono" / "train.en").read_text(encoding="utf-8")
    lines = text.split("\n")[:3000]
    dico = write_vocab(tmp_path / "vocab.txt", "\n".join(lines))
    src = tmp_path / "train.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = binarize_file(tmp_path / "vocab.txt", src, tmp_path / "out" / "train.en", workers=2, chunk_bytes=8192)
    got = sentences(tmp_path / "out" / "train.en")
    assert [" ".join(dico.decode(s)) for s in got] == [" ".join(w for w in line.split(" ") if w) for line in lines]
    assert stats.n_sentences == len(lines) and stats.n_unk == 0
    ds = IndexedDataset(tmp_path / "out" / "train.en")
    assert ds.tokens.dtype == np.uint16 and ds.vocab_fingerprint == dico.fingerprint()
    assert (tmp_path / "out" / "vocab").read_text() == (tmp_path / "vocab.txt").read_text()
    one = binarize_file(tmp_path / "vocab.txt", src, tmp_path / "one" / "train.en", workers=1)
    assert (tmp_path / "one" / "train.en.bin").read_bytes() == (tmp_path / "out" / "train.en.bin").read_bytes()
    assert one.n_words == stats.n_words


def test_unknown_words_special_words_empty_lines_and_spacing(tmp_path):
    (tmp_path / "vocab").write_text("the 5\ncat 3\nsat@@ 2\n")
    src = tmp_path / "in.txt"
    # line 2 empty; line 3: double space, unknown words, a literal <unk>, specials to drop; CRLF;
    # a tab between tokens (the original splits with str.split); last line without newline
    src.write_bytes(b"the cat\n\nthe  dog <s> sat@@ </s> <unk> <special3> dog\r\nthe\tcat cat\nsat@@")
    stats = binarize_file(tmp_path / "vocab", src, tmp_path / "train.en")
    the, cat, sat = 14, 15, 16
    assert sentences(tmp_path / "train.en") == [
        [the, cat],
        [],
        [the, UNK_INDEX, sat, UNK_INDEX, UNK_INDEX],
        [the, cat, cat],
        [sat],
    ]
    assert stats.unk_words == Counter({"dog": 2, "<unk>": 1})
    assert stats.dropped == Counter({"<s>": 1, "</s>": 1, "<special3>": 1})
    assert stats.n_empty == 1 and stats.n_sentences == 5 and stats.n_words == 11
    header = IndexedDataset(tmp_path / "train.en").header
    assert header["n_unk"] == 3 and header["n_dropped_special"] == 3 and header["n_empty"] == 1
    ds = IndexedDataset(tmp_path / "train.en")
    assert ds.tokens[-1] == EOS_INDEX and int((np.asarray(ds.tokens) == EOS_INDEX).sum()) == 5


def test_empty_input_gives_an_empty_dataset(tmp_path):
    (tmp_path / "vocab").write_text("a 1\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    stats = binarize_file(tmp_path / "vocab", tmp_path / "empty.txt", tmp_path / "valid.en")
    assert stats.n_sentences == 0 and len(IndexedDataset(tmp_path / "valid.en")) == 0


def test_failure_leaves_existing_output_untouched(tmp_path):
    (tmp_path / "vocab").write_text("a 2\nb 1\n")
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("a b\nb a\n")
    binarize_file(tmp_path / "vocab", good, tmp_path / "train.en")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("train.en")}
    # the bad byte sits in a later chunk: earlier chunks are already written to temporary files
    bad.write_bytes(b"a b\n" * 5000 + b"a \xc3\x28 b\n")
    with pytest.raises(XLMError, match=r"bad\.txt:5001: invalid UTF-8"):
        binarize_file(tmp_path / "vocab", bad, tmp_path / "train.en", workers=2, chunk_bytes=4096)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("train.en")}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_replace_policy_turns_invalid_bytes_into_unknown_words(tmp_path):
    (tmp_path / "vocab").write_text("a 1\n")
    (tmp_path / "bad.txt").write_bytes(b"a \xff\n")
    stats = binarize_file(tmp_path / "vocab", tmp_path / "bad.txt", tmp_path / "x", errors="replace")
    assert sentences(tmp_path / "x") == [[14, UNK_INDEX]] and stats.unk_words == Counter({"\ufffd": 1})


def test_a_different_vocabulary_in_the_folder_is_refused(tmp_path):
    (tmp_path / "v1").write_text("a 2\nb 1\n")
    (tmp_path / "v2").write_text("b 2\na 1\n")
    (tmp_path / "in.txt").write_text("a b\n")
    out = tmp_path / "data"
    binarize_file(tmp_path / "v1", tmp_path / "in.txt", out / "train.en")
    binarize_file(tmp_path / "v1", tmp_path / "in.txt", out / "valid.en")  # same vocabulary: fine
    with pytest.raises(XLMError, match=r"data/vocab: holds a different vocabulary"):
        binarize_file(tmp_path / "v2", tmp_path / "in.txt", out / "test.en")
    assert not (out / "test.en.bin").exists()
    assert (out / "vocab").read_text() == "a 2\nb 1\n"


def test_large_vocabulary_uses_int32(tmp_path):
    words = [f"w{i}" for i in range(70_000)]
    (tmp_path / "vocab").write_text("".join(f"{w} 1\n" for w in words))
    (tmp_path / "in.txt").write_text("w0 w69999\n")
    binarize_file(tmp_path / "vocab", tmp_path / "in.txt", tmp_path / "train.en")
    ds = IndexedDataset(tmp_path / "train.en")
    assert ds.tokens.dtype == np.int32 and ds[0].tolist() == [14, 14 + 69_999]


def test_lines_longer_than_a_chunk(tmp_path):
    (tmp_path / "vocab").write_text("a 2\nb 1\n")
    (tmp_path / "in.txt").write_text("a b " * 3000 + "\nb\n" + "b a " * 2000)  # 12 kB lines, 1 kB chunks
    stats = binarize_file(tmp_path / "vocab", tmp_path / "in.txt", tmp_path / "x", workers=2, chunk_bytes=1024)
    assert sentences(tmp_path / "x") == [[14, 15] * 3000, [15], [15, 14] * 2000]
    assert stats.n_words == 10_001
