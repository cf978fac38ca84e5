"""SentencePiece alternative: train -> encode -> vocabulary -> binarize, and the CLI around it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xlm.data.binarize import binarize_file
from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedDataset
from xlm.data.sentencepiece import encode_file, load_model, train_spm, write_spm_vocab
from xlm.errors import XLMError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("spm")
    lines = (ROOT / "data" / "msgcorpus" / "mono" / "train.fr").read_text(encoding="utf-8").split("\n")[:1500]
    text = tmp / "train.fr"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train_spm([text], tmp / "spm.model", 400, threads=1)
    return text, tmp / "spm.model"


def test_train_encode_vocab_binarize_round_trip(tmp_path, trained):
    text, model = trained
    encoded = tmp_path / "train.spm"
    assert encode_file(model, text, encoded, workers=2, chunk_bytes=8192) == 1500
    sp = load_model(model)
    n_pieces = write_spm_vocab(model, [encoded], tmp_path / "vocab")
    dico = Dictionary.read_vocab(tmp_path / "vocab")
    assert len(dico) == 14 + n_pieces and n_pieces == sp.get_piece_size() - 1  # all but <unk>
    assert dico.counts[14] >= dico.counts[-1]  # sorted by count, as max_vocab expects
    stats = binarize_file(tmp_path / "vocab", encoded, tmp_path / "data" / "train.fr")
    assert stats.n_sentences == 1500
    # the only unknown words are the rare characters the model itself maps to its <unk>
    assert all(sp.piece_to_id(w) == sp.unk_id() for w in stats.unk_words)
    ds = IndexedDataset(tmp_path / "data" / "train.fr")
    originals = text.read_text(encoding="utf-8").split("\n")[:1500]
    for i, line in enumerate(originals):
        expected = [p if sp.piece_to_id(p) != sp.unk_id() else "<unk>" for p in sp.encode(line, out_type=str)]
        assert dico.decode(ds[i]) == expected


def test_training_is_deterministic(tmp_path, trained):
    text, model = trained
    train_spm([text], tmp_path / "again.model", 400, threads=1)
    assert (tmp_path / "again.model").read_bytes() == model.read_bytes()


def test_bad_model_and_bad_input_are_one_line_errors(tmp_path, trained):
    text, model = trained
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(XLMError, match=r"junk\.model: not a SentencePiece model"):
        encode_file(tmp_path / "junk.model", text, tmp_path / "out")
    (tmp_path / "bad.txt").write_bytes(b"ok\nbad \xff\n")
    with pytest.raises(XLMError, match=r"bad\.txt:2: invalid UTF-8"):
        train_spm([tmp_path / "bad.txt"], tmp_path / "m.model", 50)
    assert not (tmp_path / "m.model").exists()


def test_cli_train_encode_and_missing_package(tmp_path, trained):
    text, _ = trained
    run = lambda *args, **kw: subprocess.run(
        [sys.executable, "preprocess.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, **kw
    )
    proc = run("spm-train", "--vocab-size", 200, "--output", tmp_path / "m.model", "--workers", 1, text)
    assert proc.returncode == 0, proc.stderr
    proc = run("spm-encode", "--model", tmp_path / "m.model", "-", "-", input="Bonjour le monde\n")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1 and "▁" in proc.stdout
    blocked = (
        "import sys; sys.modules['sentencepiece'] = None; from xlm.cli.preprocess import main; "
        f"main(['spm-encode', '--model', {str(tmp_path / 'm.model')!r}, '-', '-'])"
    )
    proc = subprocess.run([sys.executable, "-c", blocked], cwd=ROOT, capture_output=True, text=True, input="x\n")
    assert proc.returncode == 1 and proc.stderr == (
        "error: sentencepiece is not installed: pip install sentencepiece (or pip install -e '.[spm]')\n"
    )
