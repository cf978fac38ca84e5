"""Vocabulary files: special ids, strict parsing with file:line errors, truncation."""

from __future__ import annotations

import pytest

from xlm.data.dictionary import MASK_INDEX, N_SPECIAL, SPECIAL_WORDS, UNK_INDEX, Dictionary
from xlm.errors import XLMError


def test_special_ids_are_the_originals():
    d = Dictionary(["the", "de@@"], [10, 5])
    assert d.id2word[:4] == ["<s>", "</s>", "<pad>", "<unk>"]
    assert d.index("<special1>") == MASK_INDEX == 5 and d.index("<special9>") == 13
    assert d.index("the") == N_SPECIAL == 14 and d.index("de@@") == 15
    assert d.index("absent") == UNK_INDEX and d.encode(["the", "x"]) == [14, 3]
    assert d.counts[:N_SPECIAL] == [0] * N_SPECIAL and d.counts[14:] == [10, 5]


def test_read_vocab_keeps_file_order_and_odd_tokens(tmp_path):
    f = tmp_path / "vocab"
    f.write_bytes("the 10\ntab\there 7\nnb\u00a0sp 7\n\u2028 3\n".encode())
    d = Dictionary.read_vocab(f)
    assert d.id2word[14:] == ["the", "tab\there", "nb\u00a0sp", "\u2028"]  # split on '\n' and the last ' ' only
    assert Dictionary.read_vocab(f, max_vocab=16).id2word[14:] == ["the", "tab\there"]
    assert Dictionary.read_vocab(f, min_count=7).id2word[14:] == ["the", "tab\there", "nb\u00a0sp"]


@pytest.mark.parametrize(("text", "line", "what"), [
    ("a 3\nb\n", 2, "expected 'TOKEN COUNT'"),
    ("a 3\nb x\n", 2, "count .x. is not a non-negative integer"),
    ("a 3\nb 2\na 1\n", 3, "duplicate token 'a' \\(first on line 1\\)"),
    ("a 3\nb 4\n", 2, "counts must not increase"),
    ("a 3\n<unk> 2\n", 2, "special token '<unk>'"),
    ("a 3\nb c 2\n", 2, "expected 'TOKEN COUNT'"),
    ("a 3\r\n", 1, "CRLF"),
])
def test_malformed_vocab_names_file_and_line(tmp_path, text, line, what):
    f = tmp_path / "vocab.txt"
    f.write_text(text)
    with pytest.raises(XLMError, match=f"vocab.txt:{line}: {what}"):
        Dictionary.read_vocab(f)


def test_invalid_utf8_and_missing_file(tmp_path):
    f = tmp_path / "v"
    f.write_bytes(b"a 3\n\xff\xfe 2\n")
    with pytest.raises(XLMError, match="v:2: invalid UTF-8"):
        Dictionary.read_vocab(f)
    with pytest.raises(XLMError, match="cannot read vocabulary"):
        Dictionary.read_vocab(tmp_path / "nope")


def test_write_read_round_trip_and_fingerprint(tmp_path):
    d = Dictionary(["x", "y@@", "z"], [9, 9, 1])
    d.write(tmp_path / "vocab")
    assert (tmp_path / "vocab").read_text() == "x 9\ny@@ 9\nz 1\n"
    back = Dictionary.read_vocab(tmp_path / "vocab")
    assert back == d and back.fingerprint() == d.fingerprint()
    assert Dictionary(["x", "z", "y@@"]).fingerprint() != d.fingerprint()


def test_from_id2word_checks_special_tokens():
    words = SPECIAL_WORDS + ["a"]
    assert Dictionary.from_id2word(dict(enumerate(words)), {"a": 4}).counts[14] == 4
    with pytest.raises(XLMError, match="special tokens"):
        Dictionary.from_id2word(["<s>", "</s>", "a"])
