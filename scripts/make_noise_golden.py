"""Goldens of the ORIGINAL XLM's denoising noise (``Trainer.word_shuffle``, ``word_dropout``,
``word_blank``, ``add_noise`` of facebookresearch/XLM ``xlm/trainer.py``): tests/golden/original_noise.json.

The four methods are taken from the checkout's source as they are (parsed with ``ast``, nothing
edited) and run on a fixed batch with ``np.random.seed(s)``; the rest of trainer.py (apex, the data
loaders) is not needed. ``tests/test_noise.py`` checks that :func:`xlm.noise.add_noise` with
``RandomState(s)`` gives the same batches.

usage: XLM_ORIGINAL=/path/to/XLM-checkout python scripts/make_noise_golden.py
"""

from __future__ import annotations

import ast
import json
import os
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "original_noise.json"
METHODS = ("word_shuffle", "word_dropout", "word_blank", "add_noise")
SETTINGS = [(3.0, 0.1, 0.1), (0.0, 0.5, 0.0), (0.0, 0.0, 0.3), (5.0, 0.9, 0.5)]


def original_noiser(checkout: str, shuffle: float, dropout: float, blank: float) -> object:
    tree = ast.parse(Path(checkout, "xlm", "trainer.py").read_text(encoding="utf-8"))
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    body = [n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name in METHODS]
    cls = ast.Module(body=[ast.ClassDef(name="Noiser", bases=[], keywords=[], body=body, decorator_list=[])],
                     type_ignores=[])
    scope = {"np": np, "torch": torch}
    exec(compile(ast.fix_missing_locations(cls), "xlm/trainer.py", "exec"), scope)
    noiser = scope["Noiser"]()
    noiser.params = Namespace(word_shuffle=shuffle, word_dropout=dropout, word_blank=blank, eos_index=1,
                              pad_index=2, mask_index=5)
    return noiser


def batch() -> tuple[list[list[int]], list[int]]:
    g = np.random.RandomState(0)
    lengths = [9, 3, 12, 6, 4, 10]
    x = np.full((len(lengths), max(lengths)), 2)
    for i, n in enumerate(lengths):
        x[i, :n] = g.randint(14, 60, n)
        x[i, 0] = x[i, n - 1] = 1
    return x.tolist(), lengths


def main() -> None:
    checkout = os.environ["XLM_ORIGINAL"]
    x, lengths = batch()
    cases = []
    for shuffle, dropout, blank in SETTINGS:
        for seed in (0, 1, 2):
            noiser = original_noiser(checkout, shuffle, dropout, blank)
            np.random.seed(seed)
            words, lens = noiser.add_noise(torch.tensor(x).t().contiguous(), torch.tensor(lengths))
            cases.append({"shuffle": shuffle, "dropout": dropout, "blank": blank, "seed": seed,
                          "x": words.t().tolist(), "lengths": lens.tolist()})
    GOLDEN.write_text(json.dumps({"x": x, "lengths": lengths, "cases": cases}) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}: {len(cases)} cases")


if __name__ == "__main__":
    main()
