"""Whitespace other than ' ' and '\\n': fastBPE keeps it inside words, the original's binarize splits on it.

Goldens in tests/golden/whitespace (scripts/make_whitespace_golden.py): fastBPE's learnbpe, applybpe
and getvocab, and the original XLM preprocess.py, on a text holding every such kind of character.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from xlm.data import whitespace
from xlm.data.binarize import binarize_file
from xlm.data.bpe import apply_bpe_file, get_vocab, learn_bpe, read_codes
from xlm.data.indexed import IndexedDataset
from xlm.errors import XLMError

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "whitespace"
SLICE = ROOT / "data" / "msgcorpus"
ALL_CHARS = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]  # every code point UTF-8 can hold
SAMPLES = {  # one character of each kind
    whitespace.CR: "\r", whitespace.TAB: "\t", whitespace.VT_FF: "\x0c", whitespace.FS_US: "\x1e",
    whitespace.NEL: "\x85", whitespace.NBSP: "\xa0", whitespace.LS_PS: "\u2028", whitespace.OTHER: "\u3000",
}  # fmt: skip


def preprocess(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "preprocess.py"), *map(str, args)], capture_output=True, text=True, env=env
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def expected_counts(text: str) -> str:
    """The warning's counts, computed here with str methods (independently of the census)."""
    counts = Counter(whitespace.CLASS_OF[c] for c in text if c.isspace() and c not in " \n")
    crlf = text.count("\r\n")
    parts = []
    for name in whitespace.CLASS_ORDER:
        if name == whitespace.CR and counts[name]:
            lone = counts[name] - crlf
            parts.append(f"CR {counts[name]} ({crlf} before LF: CRLF line ends" + (f", {lone} alone)" if lone else ")"))
        elif counts[name]:
            parts.append(f"{name} {counts[name]}")
    return ", ".join(parts)


def warnings(stderr: str) -> list[str]:
    """The warning lines of a step, but the provenance one (text files here come with no record of how they
    were made: tests/test_provenance.py covers that warning)."""
    return [line for line in stderr.splitlines()
            if line.startswith("warning: ") and "no record of how this text was prepared" not in line]


# -- the census --------------------------------------------------------------------------------------


def test_python_only_is_every_separator_of_str_split_but_space_and_newline() -> None:
    assert set(whitespace.PYTHON_ONLY) == {c for c in ALL_CHARS if c.isspace()} - {" ", "\n"}
    assert len(whitespace.PYTHON_ONLY) == 27 and set(whitespace.CLASS_OF) == set(whitespace.PYTHON_ONLY)
    assert set(whitespace.CLASS_OF.values()) == set(whitespace.CLASS_ORDER) == set(SAMPLES)


def test_census_is_exact_on_every_code_point_in_any_neighbourhood() -> None:
    """Every code point once, in order, shuffled, and each one next to a separator of each kind."""
    shuffled = ALL_CHARS[:]
    random.Random(0).shuffle(shuffled)
    separators = whitespace.PYTHON_ONLY
    mixed = "".join(c + separators[i % len(separators)] for i, c in enumerate(shuffled))
    for text in ("".join(ALL_CHARS), "".join(shuffled), mixed):
        result = whitespace.census(text.encode("utf-8"))
        want = Counter(whitespace.CLASS_OF[c] for c in text if c in separators)
        assert result is not None and result.counts == want
    assert whitespace.census("no such character: « é ’ — 、。 ｡ 𝄞 »\n".encode()) is None


def test_census_first_line_and_crlf() -> None:
    result = whitespace.census(b"a b\nc d\r\ne\rf\n", first_line=40)
    assert result.first_line == 41 and result.crlf == 1 and result.lone_cr == 1
    assert result.describe() == "CR 2 (1 before LF: CRLF line ends, 1 alone)"


# -- every kind through the real commands: goldens from fastBPE and the original -----------------------


def test_each_step_keeps_its_reference_and_warns_with_counts(tmp_path: Path) -> None:
    text = GOLDEN / "text.txt"
    content = text.read_bytes().decode("utf-8")  # not read_text: it would turn CRs into line ends
    counts = expected_counts(content)
    assert all(name in counts for name in whitespace.CLASS_ORDER)  # the golden text holds every kind

    codes = tmp_path / "codes"
    learned = preprocess("learn-bpe", "--n-codes", 40, "--output", codes, text)
    ours, theirs = read_codes(codes), read_codes(GOLDEN / "codes")
    # the same merges with the same counts, except the order among equal counts (see test_bpe.py)
    assert [c for *_, c in ours] == [c for *_, c in theirs]
    unique = {c for c, n in Counter(c for *_, c in theirs).items() if n == 1}
    assert [m for m in ours if m[2] in unique] == [m for m in theirs if m[2] in unique]
    applied = preprocess("apply-bpe", "--codes", GOLDEN / "codes", text, tmp_path / "text.bpe")
    assert (tmp_path / "text.bpe").read_bytes() == (GOLDEN / "text.bpe").read_bytes()
    counted = preprocess("get-vocab", "--output", tmp_path / "vocab", GOLDEN / "text.bpe")
    assert (tmp_path / "vocab").read_bytes() == (GOLDEN / "vocab").read_bytes()

    binarized = preprocess("binarize", "--vocab", GOLDEN / "clean.vocab", GOLDEN / "text.bpe", tmp_path / "d" / "t")
    original = json.loads((GOLDEN / "original.json").read_text(encoding="utf-8"))
    ds = IndexedDataset(tmp_path / "d" / "t")
    assert np.asarray(ds.tokens).tolist() == original["sentences"]  # ids, each sentence followed by </s>
    starts = np.cumsum([0] + [len(ds[i]) + 1 for i in range(len(ds))])[:-1]
    assert [[int(s), int(s) + len(ds[i])] for i, s in enumerate(starts)] == original["positions"]
    assert ds.header["n_unk"] == sum(original["unk_words"].values())

    n_lines = content.count("\n")
    assert len(original["positions"]) == n_lines + 1  # the lone CR: one more sentence than lines
    for step, proc, source in [("learn-bpe", learned, text), ("apply-bpe", applied, text),
                               ("get-vocab", counted, GOLDEN / "text.bpe"),
                               ("binarize", binarized, GOLDEN / "text.bpe")]:  # fmt: skip
        (line,) = warnings(proc.stderr)
        assert line.startswith(f"warning: {step}: {source}: {counts} (first at line 2): "), line
    assert "1 more sentences than the file has lines" in warnings(binarized.stderr)[0]


def test_counts_do_not_depend_on_chunks_workers_or_stdin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("xlm"), "propagate", True)  # a trainer test may have turned it off
    text = GOLDEN / "text.txt"
    counts = expected_counts(text.read_bytes().decode("utf-8"))
    with caplog.at_level("WARNING"):
        apply_bpe_file(GOLDEN / "codes", text, tmp_path / "bpe", workers=2, chunk_bytes=32, progress=False)
        get_vocab([GOLDEN / "text.bpe"], tmp_path / "vocab", workers=2, chunk_bytes=32, progress=False)
    assert (tmp_path / "bpe").read_bytes() == (GOLDEN / "text.bpe").read_bytes()
    assert (tmp_path / "vocab").read_bytes() == (GOLDEN / "vocab").read_bytes()
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(": ")[1] for m in messages] == ["apply-bpe", "get-vocab"]
    assert all(f": {counts} (first at line 2): " in m for m in messages), messages
    stats = binarize_file(GOLDEN / "clean.vocab", GOLDEN / "text.bpe", tmp_path / "d" / "t", workers=2, chunk_bytes=32)
    assert stats.whitespace.describe() == counts and stats.whitespace.first_line == 2
    # standard input cannot be read twice: its census is taken chunk by chunk
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "preprocess.py"), "get-vocab", "--output", tmp_path / "v2", "-"],
                          input=(GOLDEN / "text.bpe").read_bytes(), capture_output=True, env=env)  # fmt: skip
    assert proc.returncode == 0 and (tmp_path / "v2").read_bytes() == (GOLDEN / "vocab").read_bytes()
    assert warnings(proc.stderr.decode()) == [m.replace(str(GOLDEN / "text.bpe"), "<stdin>") for m in messages[1:]]


def test_clean_text_gives_no_warning(tmp_path: Path) -> None:
    src = tmp_path / "t"
    src.write_text("le chien noir\nla table\n")
    for proc in (preprocess("get-vocab", "--output", tmp_path / "v", src),
                 preprocess("binarize", "--vocab", tmp_path / "v", src, tmp_path / "d" / "t")):  # fmt: skip
        assert not warnings(proc.stderr)


# -- the CRLF case, end to end ----------------------------------------------------------------------------


def _crlf_corpus(tmp_path: Path) -> tuple[Path, Path]:
    lines = (SLICE / "mono" / "train.fr").read_text(encoding="utf-8").split("\n")[:1500]
    crlf, lf = tmp_path / "train.crlf", tmp_path / "train.lf"
    crlf.write_bytes("".join(line + "\r\n" for line in lines).encode())
    lf.write_bytes("".join(line + "\n" for line in lines).encode())
    return crlf, lf


def test_crlf_text_through_the_bpe_steps_is_refused_by_binarize_naming_file_and_line(tmp_path: Path) -> None:
    crlf, lf = _crlf_corpus(tmp_path)
    n_lines = crlf.read_bytes().count(b"\n")
    cr = f"CR {n_lines} ({n_lines} before LF: CRLF line ends) (first at line 1): "
    learned = preprocess("learn-bpe", "--n-codes", 300, "--output", tmp_path / "codes", crlf)
    applied = preprocess("apply-bpe", "--codes", tmp_path / "codes", crlf, tmp_path / "train.bpe")
    counted = preprocess("get-vocab", "--output", tmp_path / "vocab", tmp_path / "train.bpe")
    for step, proc, source in [("learn-bpe", learned, crlf), ("apply-bpe", applied, crlf),
                               ("get-vocab", counted, tmp_path / "train.bpe")]:  # fmt: skip
        assert warnings(proc.stderr) and warnings(proc.stderr)[0].startswith(f"warning: {step}: {source}: {cr}")
    vocab = (tmp_path / "vocab").read_bytes()
    assert re.search(rb"\r \d+\n", vocab)  # fastBPE's getvocab counts the words with their CR, as here

    refused = preprocess("binarize", "--vocab", tmp_path / "vocab", tmp_path / "train.bpe", tmp_path / "d" / "train",
                         check=False)  # fmt: skip
    assert refused.returncode == 1
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {tmp_path / 'train.bpe'}:1: ") and f"({tmp_path / 'vocab'}:" in error
    assert "Text with CRLF line ends?" in error and "--allow-split-vocab-words" in error
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())  # nothing written

    # asked for, the original's result: every word holding a CR is split, with a warning counting them
    allowed = preprocess("binarize", "--allow-split-vocab-words", "--vocab", tmp_path / "vocab",
                         tmp_path / "train.bpe", tmp_path / "d" / "train")  # fmt: skip
    skipped, line = warnings(allowed.stderr)  # the vocabulary reader skips those lines, as the original's does
    assert skipped.startswith(f"warning: {tmp_path / 'vocab'}: skipped")
    assert "not two whitespace-separated fields" in skipped
    assert "vocabulary words holding them" in line and "were split as asked" in line
    assert len(IndexedDataset(tmp_path / "d" / "train")) == n_lines

    # the fix the message gives: LF text through the same steps, then no <unk> at all
    learn_bpe([lf], 300, tmp_path / "codes.lf", progress=False)
    apply_bpe_file(tmp_path / "codes.lf", lf, tmp_path / "train.lf.bpe", progress=False)
    get_vocab([tmp_path / "train.lf.bpe"], tmp_path / "vocab.lf", progress=False)
    stats = binarize_file(tmp_path / "vocab.lf", tmp_path / "train.lf.bpe", tmp_path / "lf" / "train")
    assert stats.n_unk == 0 and stats.n_sentences == n_lines and not stats.whitespace


# -- each kind in a vocabulary word ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_a_vocabulary_word_holding_any_kind_is_refused_then_split_when_allowed(tmp_path: Path, kind: str) -> None:
    word = "chien" + SAMPLES[kind]  # e.g. chien\r, as getvocab counts it in a CRLF file
    (tmp_path / "vocab").write_bytes(f"le 3\nchien 2\n{word} 1\n".encode())  # last: no other id depends on it
    src = tmp_path / "t"
    src.write_bytes(f"le chien\nle {word}\n".encode())
    vocab_line = re.escape(f"({tmp_path / 'vocab'}:3)")
    with pytest.raises(XLMError, match=rf"^{re.escape(str(src))}:2: .* {vocab_line} holding {re.escape(kind)},"):
        binarize_file(tmp_path / "vocab", src, tmp_path / "d" / "t")
    stats = binarize_file(tmp_path / "vocab", src, tmp_path / "d" / "t", allow_split_vocab_words=True)
    assert stats.split_vocab_words == Counter({word: 1}) and stats.whitespace.counts == Counter({kind: 1})
    # as the original: the split yields "chien", which gets the id of the other vocabulary line
    ds = IndexedDataset(tmp_path / "d" / "t")
    assert [ds[i].tolist() for i in range(len(ds))] == [[14, 15], [14, 15]]
