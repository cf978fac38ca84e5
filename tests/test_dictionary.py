"""Vocabulary files: special ids, the original's reading rules (goldens), strict parsing, truncation."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from xlm.data.dictionary import MASK_INDEX, N_SPECIAL, SPECIAL_WORDS, UNK_INDEX, Dictionary
from xlm.errors import XLMError, XLMWarning

ROOT = Path(__file__).resolve().parents[1]


def test_special_ids_are_the_originals():
    d = Dictionary(["the", "de@@"], [10, 5])
    assert d.id2word[:4] == ["<s>", "</s>", "<pad>", "<unk>"]
    assert d.index("<special1>") == MASK_INDEX == 5 and d.index("<special9>") == 13
    assert d.index("the") == N_SPECIAL == 14 and d.index("de@@") == 15
    assert d.index("absent") == UNK_INDEX and d.encode(["the", "x"]) == [14, 3]
    assert d.counts[:N_SPECIAL] == [0] * N_SPECIAL and d.counts[14:] == [10, 5]


GOLDEN = json.loads((Path(__file__).parent / "golden" / "dictionary" / "read_vocab.json").read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_read_vocab_gives_the_original_ids(tmp_path, name):
    """Ids and counts equal those the original's Dictionary.read_vocab gave (tests/golden/dictionary)."""
    case = GOLDEN[name]
    f = tmp_path / "vocab"
    f.write_bytes(case["text"].encode("utf-8"))

    def ours(**kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XLMWarning)
            return Dictionary.read_vocab(f, **kw)

    def check(expected, **kw):
        if "error" in expected:
            with pytest.raises(XLMError, match="vocab"):
                ours(**kw)
        else:
            d = ours(**kw)
            assert d.id2word[N_SPECIAL:] == expected["words"] and d.counts[N_SPECIAL:] == expected["counts"]

    check(case)
    for n, expected in case["max_vocab"].items():
        check(expected, max_vocab=int(n))
    for n, expected in case["min_count"].items():
        check(expected, min_count=int(n))


def test_skipped_lines_are_counted_by_reason_in_one_warning(tmp_path):
    f = tmp_path / "vocab"
    f.write_bytes("the 10\nli\u2028ne 9\nnb\u00a0sp 9\ntab\there 8\nthe 8\n<s> 7\nchat 3\n".encode())
    with pytest.warns(XLMWarning) as record:
        d = Dictionary.read_vocab(f)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 5 lines" in message and "1 holding U+2028" in message
    assert "2 not two whitespace-separated fields" in message and "1 duplicate" in message
    assert "1 special words" in message
    assert d.id2word[N_SPECIAL:] == ["the", "chat"] and d.index("chat") == 15  # the original's id, not 20
    clean = tmp_path / "clean"
    clean.write_text("a 2\nb 1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(Dictionary.read_vocab(clean)) == N_SPECIAL + 2  # nothing skipped, no warning


@pytest.mark.parametrize(("text", "line", "what"), [
    ("a 3\nb\n", 2, "expected 'TOKEN COUNT'"),
    ("a 3\nb x\n", 2, "count .x. is not a non-negative integer"),
    ("a 3\nb 2\na 1\n", 3, "duplicate token 'a' \\(first on line 1\\)"),
    ("a 3\nb 4\n", 2, "counts must not increase"),
    ("a 3\n<unk> 2\n", 2, "special token '<unk>'"),
    ("a 3\nb c 2\n", 2, "expected 'TOKEN COUNT'"),
    ("a 3\r\n", 1, "CRLF"),
    ("a 3\nli\u2028ne 2\n", 2, "token .* holds whitespace or U\\+2028"),
    ("a 3\ntab\there 2\n", 2, "token .* holds whitespace or U\\+2028"),
    ("a 3\nnb\u00a0sp 2\n", 2, "token .* holds whitespace or U\\+2028"),
])
def test_strict_reading_refuses_what_the_original_skips_naming_file_and_line(tmp_path, text, line, what):
    f = tmp_path / "vocab.txt"
    f.write_bytes(text.encode())
    with pytest.raises(XLMError, match=f"vocab.txt:{line}: {what}"):
        Dictionary.read_vocab(f, strict=True)


def test_check_command_refuses_a_vocabulary_the_original_reads_differently(tmp_path):
    text = tmp_path / "train.bpe.en"
    text.write_text("the chat\n")
    vocab = tmp_path / "vocab.in"
    vocab.write_bytes(b"the 10\nchat 3\n")
    run = [sys.executable, str(ROOT / "preprocess.py")]
    subprocess.run(run + ["binarize", "--vocab", str(vocab), str(text), str(tmp_path / "data" / "train.en")],
                   check=True, capture_output=True)
    ok = subprocess.run(run + ["check", str(tmp_path / "data" / "train.en")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "data" / "vocab").write_bytes("the 10\nli\u2028ne 5\nchat 3\n".encode())
    bad = subprocess.run(run + ["check", str(tmp_path / "data" / "train.en")], capture_output=True, text=True)
    assert bad.returncode == 1 and "vocab:2: token" in bad.stderr and "holds whitespace or U+2028" in bad.stderr


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
