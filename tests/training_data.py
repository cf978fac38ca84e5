"""Test data folders for the training tests, built directly with Dictionary + IndexedWriter.

Independent of the preprocessing pipeline on purpose: the bundled slice is split on spaces (no
BPE), which gives real text with a real frequency distribution in a second.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path

import numpy as np

from xlm.data.dictionary import Dictionary
from xlm.data.indexed import IndexedWriter

ROOT = Path(__file__).resolve().parents[1]
SLICE = ROOT / "data" / "msgcorpus"


def write_corpus(prefix: Path, dico: Dictionary, sentences: list[list[int]] | list[np.ndarray]) -> None:
    with IndexedWriter(prefix, len(dico), dico.fingerprint()) as w:
        for s in sentences:
            w.add(s)


def _lines(path: Path, n: int) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for _, line in zip(range(n), f)]


def slice_folder(folder: Path, langs: tuple[str, ...] = ("en", "fr"), n_train: int = 3000, n_eval: int = 200,
                 min_count: int = 2, pair: bool = True) -> Path:
    """Space-tokenized msgcorpus slice: mono ``{split}.{lang}`` for ``langs`` and ``{split}.en-fr.*``."""
    sizes = {"train": n_train, "valid": n_eval, "test": n_eval}
    text = {(s, lg): _lines(SLICE / "mono" / f"{s}.{lg}", n) for s, n in sizes.items() for lg in langs}
    if pair:
        for s, n in sizes.items():
            for lg in ("en", "fr"):
                text[(s, f"en-fr.{lg}")] = _lines(SLICE / "para" / f"{s}.en-fr.{lg}", n)
    counts = Counter(w for (s, _), lines in text.items() if s == "train" for line in lines for w in line)
    vocab = sorted(((w, c) for w, c in counts.items() if c >= min_count and w not in Dictionary([]).word2id),
                   key=lambda wc: (-wc[1], wc[0]))
    dico = Dictionary([w for w, _ in vocab], [c for _, c in vocab])
    folder.mkdir(parents=True, exist_ok=True)
    dico.write(folder / "vocab")
    for (split, name), lines in text.items():
        write_corpus(folder / f"{split}.{name}", dico, [dico.encode(line) for line in lines])
    return folder


def synthetic_folder(folder: Path, n_words: int = 60, n_train: int = 400, n_eval: int = 40, seed: int = 0,
                     langs: tuple[str, ...] = ("en", "fr")) -> Path:
    """Tiny learnable corpus: sentences follow a fixed random bigram chain over a small vocabulary."""
    gen = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n_words)]
    dico = Dictionary(words, list(range(10 * n_words, 9 * n_words, -1)))
    nxt = gen.integers(14, 14 + n_words, size=(14 + n_words, 2))

    def sentence() -> np.ndarray:
        n = int(gen.integers(3, 15))
        s = [int(gen.integers(14, 14 + n_words))]
        for _ in range(n - 1):
            s.append(int(nxt[s[-1], gen.integers(2)]))
        return np.array(s)

    folder.mkdir(parents=True, exist_ok=True)
    dico.write(folder / "vocab")
    for split, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        for lg in langs:
            write_corpus(folder / f"{split}.{lg}", dico, [sentence() for _ in range(n)])
        pairs = [sentence() for _ in range(n)]
        a, b = sorted(langs[:2])
        write_corpus(folder / f"{split}.{a}-{b}.{a}", dico, pairs)
        write_corpus(folder / f"{split}.{a}-{b}.{b}", dico, [np.minimum(p + 1, 13 + n_words) for p in pairs])
    return folder


def tiny_config_dict(data: Path, run: Path) -> dict:
    """A run small enough for a test: 1 layer, dim 32, short streams."""
    return {
        "run": {"dir": str(run), "seed": 0, "log_every": 5, "tensorboard": False},
        "data": {"path": str(data), "langs": ["en", "fr"], "bptt": 16, "batch_size": 8, "tokens_per_batch": 200},
        "model": {"emb_dim": 32, "n_layers": 1, "n_heads": 2, "dropout": 0.1, "attention_dropout": 0.1},
        "objectives": {"mlm": ["en", "fr", "en-fr"]},
        "optim": {"lr": 0.002, "warmup_updates": 10, "schedule": "inverse_sqrt"},
        "train": {"max_steps": 30, "eval_every": 10, "save_every": 10, "validation_metric": "_valid_mlm_ppl"},
    }


def write_config(path: Path, data: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def tiny_config(data: Path, run: Path, overrides: list[str] | None = None):
    from xlm.config import load_config

    return load_config(write_config(run.parent / f"{run.name}.yaml", tiny_config_dict(data, run)), overrides)


@contextlib.contextmanager
def one_thread():
    """Tiny models gain nothing from a second thread, and OpenMP threads collapse on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
