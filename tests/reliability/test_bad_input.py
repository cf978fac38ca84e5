"""Bad input across the pipeline: each case exits non-zero with one line naming the file and line
(or the config key), and leaves any existing output exactly as it was."""

from __future__ import annotations

import json
import resource
import signal

import numpy as np
import pytest
import torch

from tests.reliability.conftest import assert_clean_error, run, snapshot
from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedWriter

CODES = "e s 9\nt h 8\nth e</w> 7\nes t</w> 6\n"
VOCAB = "the 9\nt@@ 8\nest 7\na 3\n"


@pytest.fixture
def work(tmp_path):
    (tmp_path / "codes").write_text(CODES)
    (tmp_path / "vocab").write_text(VOCAB)
    (tmp_path / "good.txt").write_text("the test\na test\n")
    (tmp_path / "bad.txt").write_bytes(b"the test\na test\nthe \xff\xfe test\n")
    (tmp_path / "out.txt").write_text("PREVIOUS OUTPUT\n")
    return tmp_path


# -- corpora ------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["tokenize", "--lang", "en", "{bad}", "{out}"],
    ["apply-bpe", "--codes", "{codes}", "{bad}", "{out}"],
    ["learn-bpe", "--n-codes", "5", "--output", "{out}", "{bad}"],
    ["get-vocab", "--output", "{out}", "{bad}"],
    ["binarize", "--vocab", "{vocab}", "{bad}", "{prefix}"],
])
def test_invalid_utf8_names_file_and_line(work, command):
    prefix = work / "data" / "train.en"
    paths = {"bad": work / "bad.txt", "out": work / "out.txt", "codes": work / "codes", "vocab": work / "vocab",
             "prefix": prefix}
    before = snapshot(work / "out.txt", prefix.with_suffix(".en.bin"))
    proc = run("preprocess.py", *[a.format(**paths) for a in command])
    assert_clean_error(proc, "bad.txt:3", "UTF-8")
    assert snapshot(work / "out.txt", prefix.with_suffix(".en.bin")) == before


def test_invalid_utf8_replace_policy_is_explicit(work):
    proc = run("preprocess.py", "apply-bpe", "--codes", work / "codes", "--errors", "replace", work / "bad.txt",
               work / "out.txt")
    assert proc.returncode == 0, proc.stderr
    assert "\ufffd" in (work / "out.txt").read_text()


def test_nul_crlf_tabs_nbsp_stay_inside_words_as_in_fastbpe(work):
    (work / "odd.txt").write_bytes("the\x00test a\tthe\r\nthe\u00a0test\n".encode())
    proc = run("preprocess.py", "apply-bpe", "--codes", work / "codes", work / "odd.txt", work / "out.txt")
    assert proc.returncode == 0, proc.stderr
    # fastBPE splits words on ' ' and '\n' only: NUL, tab, CR and NBSP are characters of their word
    out = (work / "out.txt").read_bytes().decode()
    assert out.count("\n") == 2 and "\r" in out and "\t" in out and "\u00a0" in out and "\x00" in out


def test_ten_megabyte_line_and_empty_file(work):
    (work / "long.txt").write_text("the test " * 1_200_000 + "\n")
    proc = run("preprocess.py", "apply-bpe", "--codes", work / "codes", work / "long.txt", work / "out.txt")
    assert proc.returncode == 0, proc.stderr
    assert (work / "out.txt").read_text() == "the t@@ est " * 1_200_000 + "\n"  # spaces copied through
    (work / "empty.txt").write_bytes(b"")
    for cmd in (["apply-bpe", "--codes", work / "codes", work / "empty.txt", work / "out.txt"],
                ["binarize", "--vocab", work / "vocab", work / "empty.txt", work / "data" / "e"]):
        proc = run("preprocess.py", *cmd)
        assert proc.returncode == 0, proc.stderr
    assert (work / "out.txt").read_bytes() == b""
    assert (work / "data" / "e.bin").read_bytes() == b""


# -- codes and vocabulary files -----------------------------------------------------------------
@pytest.mark.parametrize(("codes", "line", "what"), [
    ("e s 9\nt h\n", 2, "codes:2"),
    ("e s 9\nt h x\n", 2, "codes:2"),
    ("e s 9\ne s 8\n", 2, "codes:2"),
])
def test_malformed_codes(work, codes, line, what):
    (work / "codes").write_text(codes)
    before = snapshot(work / "out.txt")
    assert_clean_error(run("preprocess.py", "apply-bpe", "--codes", work / "codes", work / "good.txt",
                           work / "out.txt"), what)
    assert snapshot(work / "out.txt") == before


@pytest.mark.parametrize(("vocab", "what"), [
    ("the 9\nt@@ many\n", "vocab:2"),             # non-numeric count
    ("the 9\nt@@ 10\na 1\n", "vocab"),            # counts out of order (the original asserts)
])
def test_malformed_vocabulary(work, vocab, what):
    (work / "vocab").write_text(vocab)
    prefix = work / "data" / "train.en"
    assert_clean_error(run("preprocess.py", "binarize", "--vocab", work / "vocab", work / "good.txt", prefix), what)
    assert not prefix.parent.exists() or not any(prefix.parent.iterdir())


@pytest.mark.parametrize(("vocab", "what"), [
    ("the 9\nt@@\n", "vocab:2"),                  # wrong number of fields
    ("the 9\nt@@ 8\nthe 3\n", "vocab:3"),         # duplicate entry
    ("the 9\n<pad> 8\n", "vocab:2"),              # a special token where words belong
])
def test_vocabulary_lines_the_original_skips_are_skipped_with_a_warning_and_refused_by_check(work, vocab, what):
    (work / "vocab").write_text(vocab)
    prefix = work / "data" / "train.en"
    proc = run("preprocess.py", "binarize", "--vocab", work / "vocab", work / "good.txt", prefix)
    assert proc.returncode == 0, proc.stderr
    assert "warning: " in proc.stderr and "skipped 1 lines as the original does" in proc.stderr
    assert_clean_error(run("preprocess.py", "check", prefix, "--vocab", work / "vocab"), what)


# -- binarized data and configs (train.py) -------------------------------------------------------
def make_data(folder, vocab_words=30, n=40, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    dico = Dictionary([f"w{i}" for i in range(vocab_words)], list(range(1000, 1000 - vocab_words, -1)))
    dico.write(folder / "vocab")
    rng = np.random.default_rng(seed)
    for split in ("train", "valid", "test"):
        with IndexedWriter(folder / f"{split}.en", len(dico), dico.fingerprint()) as w:
            for _ in range(n):
                w.add(rng.integers(14, len(dico), rng.integers(3, 12)))
    return dico


def train(tmp_path, *overrides):
    base = [f"data.path={tmp_path / 'data'}", "data.langs=[en]", "objectives.mlm=[en]", f"run.dir={tmp_path / 'run'}",
            "model.emb_dim=16", "model.n_heads=2", "model.n_layers=1", "data.bptt=16", "data.batch_size=4",
            "train.max_steps=2", "train.eval_every=2", "train.save_every=2", "run.tensorboard=false"]
    return run("train.py", "--config", "configs/tiny.yaml", *base, *overrides)


def test_truncated_bin(tmp_path):
    make_data(tmp_path / "data")
    b = tmp_path / "data" / "train.en.bin"
    b.write_bytes(b.read_bytes()[:-6])
    assert_clean_error(train(tmp_path), "train.en.bin", "truncated")


def test_index_past_the_end(tmp_path):
    make_data(tmp_path / "data")
    i = tmp_path / "data" / "valid.en.idx"
    raw = bytearray(i.read_bytes())
    raw[-8:] = np.array([10**6], dtype="<i8").tobytes()
    i.write_bytes(bytes(raw))
    assert_clean_error(train(tmp_path), "valid.en.idx", "past the end")


def test_dtype_does_not_match_vocabulary_size(tmp_path):
    make_data(tmp_path / "data")
    i = tmp_path / "data" / "train.en.idx"
    i.write_bytes(i.read_bytes().replace(b'"vocab_size": 44', b'"vocab_size": 99999'.ljust(19)[:19]))
    assert_clean_error(train(tmp_path), "train.en.idx")


def test_data_binarized_with_another_vocabulary(tmp_path):
    make_data(tmp_path / "data")
    other = Dictionary([f"x{i}" for i in range(30)])
    other.write(tmp_path / "data" / "vocab")
    assert_clean_error(train(tmp_path), "another vocabulary")


@pytest.mark.parametrize(("overrides", "needle"), [
    (["model.emb_dimm=16"], "model.emb_dimm"),
    (["train.max_steps=ten"], "train.max_steps"),
    (["data.path=/nonexistent/xlm-data"], "data.path"),
    (["data.langs=[en,fr]", "objectives.mlm=[en,fr]"], "fr"),
    (["objectives.mlm=[de]"], "objectives.mlm: language 'de'"),
    (["data.batch_size=0"], "data.batch_size"),
    (["data.bptt=1024"], "data.bptt"),
])
def test_bad_configs_name_the_key(tmp_path, overrides, needle):
    make_data(tmp_path / "data")
    assert_clean_error(train(tmp_path, *overrides), needle)
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- checkpoints ------------------------------------------------------------------------------------
def small_checkpoint(path):
    import xlm
    from xlm.config import ModelConfig

    model = xlm.TransformerModel(ModelConfig(emb_dim=16, n_heads=2, n_layers=1, max_positions=32), 40, 2)
    return xlm.save_pretrained(xlm.Pretrained(model, Dictionary([f"w{i}" for i in range(26)]), {"en": 0, "fr": 1}),
                               path)


def test_truncated_checkpoint(tmp_path):
    path = small_checkpoint(tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[:1000])
    assert_clean_error(run("scripts/convert_checkpoint.py", path, tmp_path / "out", "--format", "hf"),
                       "m.pt", "truncated or corrupt")
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_architecture_names_the_parameter(tmp_path):
    from xlm.serialization import safe_load

    ckpt = safe_load(small_checkpoint(tmp_path / "m.pt"))
    ckpt["model_config"]["n_layers"] = 2
    torch.save(ckpt, tmp_path / "other.pt")
    assert_clean_error(run("scripts/convert_checkpoint.py", tmp_path / "other.pt", tmp_path / "o", "--format", "hf"),
                       "other.pt", "missing parameter 'attentions.1.q_lin.weight'")


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    script = (f"import os, torch\nclass E:\n    def __reduce__(self): return (os.system, ('touch {marker}',))\n"
              f"torch.save({{'format': 'xlm', 'model': E()}}, '{tmp_path / 'evil.pt'}')\n")
    assert run("-c", script).returncode == 0
    assert_clean_error(run("scripts/convert_checkpoint.py", tmp_path / "evil.pt", tmp_path / "o", "--format", "xlm"),
                       "evil.pt", "refusing to load")
    assert not marker.exists()


# -- disk full ----------------------------------------------------------------------------------
def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_disk_full_is_a_clear_error_and_corrupts_nothing(work):
    (work / "big.txt").write_text("the test a test the test\n" * 40_000)  # ~1 MB of output
    before = snapshot(work / "out.txt")
    proc = run("preprocess.py", "apply-bpe", "--codes", work / "codes", work / "big.txt", work / "out.txt",
               preexec_fn=_limit_file_size)
    assert_clean_error(proc, "File too large")
    assert snapshot(work / "out.txt") == before
    assert sorted(p.name for p in work.iterdir()) == sorted(["big.txt", "bad.txt", "codes", "good.txt", "out.txt",
                                                             "vocab"])


def test_vocabulary_json_for_hf_must_hold_special_tokens(tmp_path):
    import xlm

    folder = xlm.save_pretrained(xlm.load_pretrained(small_checkpoint(tmp_path / "m.pt")), tmp_path / "hf", "hf")
    vocab = json.loads((folder / "vocab.json").read_text())
    del vocab["<unk>"]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    assert_clean_error(run("scripts/convert_checkpoint.py", folder, tmp_path / "x.pt", "--format", "xlm"),
                       "vocab.json", "'<unk>'")


def test_resuming_a_model_on_data_of_another_vocabulary(tmp_path):
    make_data(tmp_path / "data")
    assert train(tmp_path).returncode == 0
    make_data(tmp_path / "data", vocab_words=31)  # same path, new vocabulary and data
    assert_clean_error(train(tmp_path, "train.max_steps=4"), "model was built for another vocabulary (44 words)")
