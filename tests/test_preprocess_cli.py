"""``python preprocess.py ...`` as users run it: exit codes, one-line errors, stdin/stdout, BPE wrappers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedDataset

ROOT = Path(__file__).resolve().parents[1]


def run(*args, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "preprocess.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, input=input
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr


def test_bad_utf8_is_one_line_naming_file_and_line_and_debug_shows_traceback(tmp_path):
    (tmp_path / "vocab").write_text("a 1\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a\na\n\xe9t\xe9\n")  # latin-1, not UTF-8
    proc = run("binarize", "--vocab", tmp_path / "vocab", bad, tmp_path / "out" / "train.en")
    assert_one_line_error(proc, f"{bad}:3: invalid UTF-8")
    assert not (tmp_path / "out" / "train.en.bin").exists()
    proc = run("binarize", "--vocab", tmp_path / "vocab", bad, tmp_path / "out" / "train.en", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and f"{bad}:3: invalid UTF-8" in proc.stderr


def test_bad_vocab_line_and_missing_input(tmp_path):
    (tmp_path / "vocab").write_text("a 2\nb three\n")
    proc = run("binarize", "--vocab", tmp_path / "vocab", tmp_path / "missing.txt", tmp_path / "x")
    assert_one_line_error(proc, f"{tmp_path / 'vocab'}:2:", "count")
    (tmp_path / "vocab").write_text("a 2\n")
    proc = run("binarize", "--vocab", tmp_path / "vocab", tmp_path / "missing.txt", tmp_path / "x")
    assert_one_line_error(proc, f"{tmp_path / 'missing.txt'}: cannot read")


def test_full_chain_through_stdin_and_stdout(tmp_path):
    raw = "Le chat « dort » sur l’Étagère.\nDeux phrases, ici !\n"
    proc = run("tokenize", "--lang", "fr", "--lower-remove-accent", "-", "-", input=raw)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'le chat " dort " sur l\' etagere .\ndeux phrases , ici !\n'
    tok = tmp_path / "tok.fr"
    tok.write_text(proc.stdout * 20, encoding="utf-8")
    assert run("learn-bpe", "--n-codes", 30, "--output", tmp_path / "codes", tok).returncode == 0
    proc = run("apply-bpe", "--codes", tmp_path / "codes", tok, "-")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 40
    assert proc.stdout.replace("@@ ", "") == tok.read_text(encoding="utf-8")
    (tmp_path / "bpe.fr").write_text(proc.stdout, encoding="utf-8")
    assert run("get-vocab", "--output", tmp_path / "vocab", tmp_path / "bpe.fr").returncode == 0
    proc = run("binarize", "--vocab", tmp_path / "vocab", "-", tmp_path / "data" / "train.fr", input=proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert "40 sentences" in proc.stderr and "0 unknown" in proc.stderr
    dico = Dictionary.read_vocab(tmp_path / "data" / "vocab")
    ds = IndexedDataset(tmp_path / "data" / "train.fr")
    assert " ".join(dico.decode(ds[1])).replace("@@ ", "") == "deux phrases , ici !"
    proc = run("check", tmp_path / "data" / "train.fr")
    assert proc.returncode == 0 and '"n_sentences": 40' in proc.stdout and "vocabulary" in proc.stderr


def test_check_detects_a_truncated_file_and_usage_errors_exit_2(tmp_path):
    (tmp_path / "vocab").write_text("a 1\n")
    (tmp_path / "in.txt").write_text("a a a\n" * 10)
    assert run("binarize", "--vocab", tmp_path / "vocab", tmp_path / "in.txt", tmp_path / "train.en").returncode == 0
    bin_file = tmp_path / "train.en.bin"
    bin_file.write_bytes(bin_file.read_bytes()[:-2])
    assert_one_line_error(run("check", tmp_path / "train.en"), "train.en.bin", "truncated")
    proc = run("binarize", "--vocab")
    assert proc.returncode == 2 and "usage:" in proc.stderr
