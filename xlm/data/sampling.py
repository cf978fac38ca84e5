"""Seeded randomness and language sampling.

Every random draw in training comes from a generator built from a tuple of integers such as
``(seed, rank, step, ...)``. Nothing depends on global random state or on how many draws came
before, so a run resumed at step ``n`` makes exactly the draws an uninterrupted run makes at ``n``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

# Stream tags keep generators for different purposes independent even with equal other keys.
TAG_SHUFFLE = 1
TAG_OBJECTIVES = 2
TAG_MASK = 3
TAG_DROPOUT = 4
TAG_EVAL = 5
TAG_BTMLM = 6  # BTMLM's step-1 sampling (xlm.objectives.btmlm)


def name_key(name: str) -> int:
    """A stable integer for a string (dataset or language name) to use in a seed tuple."""
    return zlib.crc32(name.encode("utf-8"))


def rng(*keys: int) -> np.random.Generator:
    """A numpy generator seeded from a tuple of non-negative integers (order matters)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in keys])))


def torch_seed(*keys: int) -> int:
    """A 63-bit seed for ``torch.manual_seed`` derived from a tuple of integers."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]) >> 1


def sampling_probs(sizes: Sequence[int], alpha: float) -> np.ndarray:
    """Probabilities ``q_i = p_i^alpha / sum_j p_j^alpha`` with ``p_i = n_i / sum n``; uniform when ``alpha == -1``.

    ``alpha < 1`` flattens the distribution (the XLM paper uses 0.7 to up-sample low-resource
    languages); ``alpha = 1`` samples in proportion to corpus size; ``alpha = 0`` is uniform.
    """
    n = np.asarray(sizes, dtype=np.float64)
    if len(n) == 0:
        raise ValueError("no datasets to sample from")
    if alpha == -1:
        return np.full(len(n), 1.0 / len(n))
    if (n <= 0).any():
        raise ValueError(f"cannot sample from empty datasets (sizes {list(sizes)})")
    p = n / n.sum()
    q = p**alpha
    return q / q.sum()
