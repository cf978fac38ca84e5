"""convert-original: original XLM .pth data -> .bin/.idx + vocab, without running pickled code."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import xlm.data.dictionary
from xlm.data.dictionary import SPECIAL_WORDS
from xlm.data.indexed import IndexedDataset
from xlm.data.original import convert_original, load_original
from xlm.errors import XLMError

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["le", "chat", "dort", "bien"]
SENTENCES = [[14, 15, 16], [], [17, 3, 14], [15]]


class FakeDictionary:
    """Shaped like the original ``Dictionary``: the attributes its pickle carries."""

    def __init__(self, words: list[str]):
        id2word = SPECIAL_WORDS + words
        self.id2word = dict(enumerate(id2word))
        self.word2id = {w: i for i, w in enumerate(id2word)}
        self.counts = {w: (0 if i < 14 else 100 - i) for i, w in enumerate(id2word)}
        self.bos_index, self.eos_index, self.pad_index, self.unk_index = 0, 1, 2, 3


@pytest.fixture
def original_module(monkeypatch):
    """Make ``src.data.dictionary.Dictionary`` importable, as it was where the original ran."""
    module = types.ModuleType("src.data.dictionary")
    cls = type("Dictionary", (FakeDictionary,), {"__module__": "src.data.dictionary"})
    module.Dictionary = cls
    for name in ("src", "src.data"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "src.data.dictionary", module)
    return cls


def original_data(dico_cls, sentences=SENTENCES, dtype=np.uint16) -> dict:
    flat, positions = [], []
    for s in sentences:
        positions.append([len(flat), len(flat) + len(s)])
        flat += s + [1]
    return {
        "dico": dico_cls(WORDS),
        "positions": np.int64(positions),
        "sentences": np.array(flat, dtype=dtype),
        "unk_words": {"chien": 1},
    }


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_values_survive_the_conversion(tmp_path, original_module, zip_format):
    path = tmp_path / "train.fr.pth"
    torch.save(original_data(original_module), path, pickle_protocol=4, _use_new_zipfile_serialization=zip_format)
    convert_original(path, tmp_path / "data" / "train.fr")
    ds = IndexedDataset(tmp_path / "data" / "train.fr")
    ds.validate()
    assert [ds[i].tolist() for i in range(len(ds))] == SENTENCES
    assert ds.header["n_unk"] == 1 and ds.vocab_size == 14 + len(WORDS)
    assert (tmp_path / "data" / "vocab").read_text() == "le 86\nchat 85\ndort 84\nbien 83\n"


def test_int32_sentences_and_non_contiguous_positions(tmp_path, original_module):
    data = original_data(original_module, dtype=np.int32)
    data["positions"] = data["positions"][[2, 0, 3]]  # a subset, out of order
    path = tmp_path / "x.pth"
    torch.save(data, path, pickle_protocol=4)
    convert_original(path, tmp_path / "out" / "valid.fr")
    ds = IndexedDataset(tmp_path / "out" / "valid.fr")
    assert [ds[i].tolist() for i in range(len(ds))] == [SENTENCES[2], SENTENCES[0], SENTENCES[3]]


def test_dictionary_pickled_under_the_new_package_name(tmp_path, monkeypatch):
    cls = type("Dictionary", (FakeDictionary,), {"__module__": "xlm.data.dictionary"})
    monkeypatch.setattr(xlm.data.dictionary, "Dictionary", cls)  # only while saving the fixture
    path = tmp_path / "test.fr.pth"
    torch.save(original_data(cls), path, pickle_protocol=4)
    monkeypatch.undo()
    assert load_original(path).dico.id2word[14:] == WORDS


class Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path, original_module):
    marker = tmp_path / "pwned"
    data = original_data(original_module)
    data["unk_words"] = Exploit(str(marker))
    path = tmp_path / "evil.pth"
    torch.save(data, path, pickle_protocol=4)
    with pytest.raises(XLMError, match=r"evil\.pth: refusing to load: the pickle references (posix|os)\.system"):
        convert_original(path, tmp_path / "out" / "train.fr")
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    proc = subprocess.run(
        [sys.executable, "preprocess.py", "convert-original", str(path), str(tmp_path / "o" / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and not marker.exists()
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "refusing to load" in proc.stderr


def test_inconsistent_data_is_refused(tmp_path, original_module):
    data = original_data(original_module)
    data["sentences"][3] = 15  # the first sentence no longer ends with </s>
    torch.save(data, tmp_path / "a.pth", pickle_protocol=4)
    with pytest.raises(XLMError, match="does not end with </s>"):
        load_original(tmp_path / "a.pth")
    data = original_data(original_module)
    data["sentences"][0] = 99
    torch.save(data, tmp_path / "b.pth", pickle_protocol=4)
    with pytest.raises(XLMError, match="outside the dictionary"):
        load_original(tmp_path / "b.pth")
    (tmp_path / "c.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(XLMError, match=r"c\.pth: not a readable XLM data file"):
        load_original(tmp_path / "c.pth")
