"""Denoising noise equal to the ORIGINAL XLM's Trainer.add_noise (goldens from its own methods, made by
scripts/make_noise_golden.py), and its invariants under numpy's Generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xlm.errors import XLMError
from xlm.noise import add_noise

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "tests" / "golden" / "original_noise.json").read_text())


def _name(c: dict) -> str:
    return f"{c['shuffle']}-{c['dropout']}-{c['blank']}-{c['seed']}"


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=_name)
def test_equal_to_the_original(case):
    x, lengths = add_noise(np.array(GOLDEN["x"]), np.array(GOLDEN["lengths"]), np.random.RandomState(case["seed"]),
                           shuffle=case["shuffle"], dropout=case["dropout"], blank=case["blank"])
    assert lengths.tolist() == case["lengths"]
    assert x.tolist() == case["x"]


def test_invariants_with_a_generator():
    x, lengths = np.array(GOLDEN["x"]), np.array(GOLDEN["lengths"])
    gen = np.random.default_rng(0)
    for _ in range(20):
        y, n = add_noise(x, lengths, gen, shuffle=3, dropout=0.3, blank=0.2)
        for i in range(len(n)):
            row, src = y[i, : n[i]].tolist(), x[i, : lengths[i]].tolist()
            assert row[0] == row[-1] == 1 and n[i] >= 3 and n[i] <= lengths[i]
            kept = [w for w in row[1:-1] if w != 5]
            assert all(w in src[1:-1] for w in kept)
        y, n = add_noise(x, lengths, gen, shuffle=3, dropout=0, blank=0)
        assert [sorted(r[: k].tolist()) for r, k in zip(y, n)] == [sorted(r[: k].tolist()) for r, k in zip(x, lengths)]
        for i, k in enumerate(lengths):  # no word moves by k or more positions (the original's guarantee)
            pos = {w: [j for j, v in enumerate(x[i, :k]) if v == w] for w in set(x[i, :k].tolist())}
            assert all(min(abs(j - p) for p in pos[w]) < 3 for j, w in enumerate(y[i, :k].tolist()))
    with pytest.raises(XLMError, match="word_shuffle"):
        add_noise(x, lengths, gen, shuffle=0.5)
    with pytest.raises(XLMError, match="framed"):
        add_noise(x[:, 1:], lengths - 1, gen)
