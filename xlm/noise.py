"""The denoising auto-encoder's input noise (Lample et al. 2018, "Unsupervised Machine Translation Using
Monolingual Corpora Only", section 2.3), exactly as the original XLM's ``Trainer.add_noise``:
``word_shuffle`` (each word moves by less than k positions), then ``word_dropout`` (each word dropped
with probability p, at least one word kept), then ``word_blank`` (each word replaced by ``<mask>`` with
probability p). The start symbol never moves, drops or blanks; the closing ``</s>`` stays last.

Random draws are the original's, in its order and shapes (``(seq - 1, batch)`` arrays, time-first), so
a ``numpy.random.RandomState`` seeded as the original's global ``np.random`` gives the very same
noisy batch; a ``numpy.random.Generator`` works too. Batches are batch-first here: ``x`` ``(batch,
seq)`` framed ``</s> w1 .. wn </s>``, right-padded; ``lengths`` ``(batch,)``.
"""

from __future__ import annotations

import numpy as np

from xlm.errors import XLMError

Rng = np.random.Generator | np.random.RandomState


def _randint(rng: Rng, low: int, high: int) -> int:
    return int(rng.integers(low, high)) if isinstance(rng, np.random.Generator) else int(rng.randint(low, high))


def _check(x: np.ndarray, lengths: np.ndarray, eos: int) -> None:
    rows = np.arange(len(lengths))
    if (x[:, 0] != eos).any() or (x[rows, lengths - 1] != eos).any():
        raise XLMError("noise: every sentence must be framed </s> w1 .. wn </s> (the original's layout)")


def word_shuffle(x: np.ndarray, lengths: np.ndarray, k: float, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle words locally: word ``j`` is sorted by ``j + U(0, k)`` (k > 1; 0 turns it off)."""
    if k == 0:
        return x, lengths
    if k <= 1:
        raise XLMError(f"word_shuffle: must be 0 (off) or > 1, got {k}")
    noise = rng.uniform(0, k, size=(x.shape[1] - 1, x.shape[0]))
    noise[0] = -1  # the start symbol stays first
    out = x.copy()
    for i, n in enumerate(lengths.tolist()):
        order = (np.arange(n - 1) + noise[: n - 1, i]).argsort()
        out[i, : n - 1] = x[i, : n - 1][order]
    return out, lengths


def _kept(x: np.ndarray, p: float, rng: Rng, name: str) -> np.ndarray:
    """The original's draw for dropout and blanking: ``(seq - 1, batch)`` bool, each word kept with
    probability ``1 - p``, the start symbol always. Raises XLMError unless ``0 < p < 1``."""
    if not 0 < p < 1:
        raise XLMError(f"{name}: must be in [0, 1), got {p}")
    keep = rng.random((x.shape[1] - 1, x.shape[0])) >= p
    keep[0] = True
    return keep


def word_dropout(x: np.ndarray, lengths: np.ndarray, p: float, rng: Rng, eos: int,
                 pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop each word with probability ``p``; a sentence left empty gets one of its words back."""
    if p == 0:
        return x, lengths
    keep = _kept(x, p, rng, "word_dropout")
    sentences = []
    for i, n in enumerate(lengths.tolist()):
        words = x[i, : n - 1].tolist()
        kept = [w for j, w in enumerate(words) if keep[j, i]]
        if len(kept) == 1:
            kept.append(words[_randint(rng, 1, len(words))])
        sentences.append(kept + [eos])
    return _pad(sentences, pad)


def word_blank(x: np.ndarray, lengths: np.ndarray, p: float, rng: Rng, eos: int, pad: int,
               mask: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace each word by ``mask`` with probability ``p``."""
    if p == 0:
        return x, lengths
    keep = _kept(x, p, rng, "word_blank")
    sentences = []
    for i, n in enumerate(lengths.tolist()):
        words = x[i, : n - 1].tolist()
        sentences.append([w if keep[j, i] else mask for j, w in enumerate(words)] + [eos])
    return _pad(sentences, pad)


def _pad(sentences: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    out = np.full((len(sentences), int(lengths.max())), pad, dtype=np.int64)
    for i, s in enumerate(sentences):
        out[i, : len(s)] = s
    return out, lengths


def add_noise(x: np.ndarray, lengths: np.ndarray, rng: Rng, *, shuffle: float = 3.0, dropout: float = 0.1,
              blank: float = 0.1, eos: int = 1, pad: int = 2, mask: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle, drop, blank (the original's order; its ``--word_shuffle 3 --word_dropout 0.1
    --word_blank 0.1`` of the unsupervised MT recipe are the defaults). Returns new arrays.

    Raises :class:`XLMError` for a sentence not framed by ``</s>`` or an out-of-range setting.
    """
    x, lengths = np.asarray(x), np.asarray(lengths)
    _check(x, lengths, eos)
    x, lengths = word_shuffle(x, lengths, shuffle, rng)
    x, lengths = word_dropout(x, lengths, dropout, rng, eos, pad)
    return word_blank(x, lengths, blank, rng, eos, pad, mask)
