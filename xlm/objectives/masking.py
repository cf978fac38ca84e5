"""MLM corruption shared by every masking objective (MLM, TLM, CAMLM, BTMLM).

Select ``word_pred`` (15%) of the positions, never padding, ``</s>`` or any other special token
(ids < 14); replace 80% of them by ``<mask>``, keep 10% and put a random *real* word (id >= 14) in
10%. With ``sample_alpha > 0`` exactly ``ceil(word_pred * n_candidates)`` positions are drawn without
replacement with probability proportional to ``count(word)^-sample_alpha`` (rare words predicted
more often). ``mlm_targets: original`` selects as ``Trainer.mask_out`` of the original's
``xlm/trainer.py``: any position but padding and the first of each row, random words from the whole
vocabulary. Evaluation replaces every selected token by ``<mask>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from xlm.config import ObjectivesConfig
from xlm.data.dictionary import MASK_INDEX, N_SPECIAL, PAD_INDEX


class Masker:
    """MLM/TLM corruption; all randomness from the generator passed in.

    ``options`` keeps the whole objectives config: objectives with settings of their own (BTMLM's
    ``btmlm_k``) read them from the masker their batch builder receives.
    """

    def __init__(self, cfg: ObjectivesConfig, n_words: int, counts: Sequence[int] | None = None):
        if n_words <= N_SPECIAL:
            raise ValueError(f"vocabulary of {n_words} ids has no real words to predict")
        self.options = cfg
        self.word_pred = cfg.word_pred
        self.p_mask, self.p_keep, _ = cfg.word_mask_keep_rand
        self.n_words = n_words
        self.sample_alpha = cfg.sample_alpha
        self.original = cfg.mlm_targets == "original"
        self.weights = None
        if self.sample_alpha > 0:
            raw = np.zeros(n_words) if counts is None else np.asarray(counts[:n_words], dtype=np.float64)
            c = np.ones(n_words) if counts is None else np.maximum(raw, 1)
            self.weights = c**-self.sample_alpha
            self.weights[:N_SPECIAL] = 0
            if self.original and counts is not None:  # the original's mask_scores: 0 for words never counted
                self.weights[raw == 0] = 0

    def select(self, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """Boolean mask of the positions to predict (only real words; at least one if any exists)."""
        if self.original:
            return self.select_original(x, gen)
        candidates = x >= N_SPECIAL  # excludes <pad>, </s>, <unk>, <mask> and the other specials
        if self.weights is None:
            sel = candidates & (gen.random(x.shape) < self.word_pred)
        else:
            flat = np.flatnonzero(candidates)
            k = math.ceil(self.word_pred * len(flat))
            sel = np.zeros(x.shape, dtype=bool)
            if k:
                # Weighted sampling without replacement (Efraimidis-Spirakis keys u^(1/w), top k).
                keys = np.log(gen.random(len(flat))) / self.weights[x.flat[flat]]
                sel.flat[flat[np.argpartition(-keys, k - 1)[:k]]] = True
        if not sel.any():
            flat = np.flatnonzero(candidates)
            if len(flat):
                sel.flat[flat[gen.integers(len(flat))]] = True
        return sel

    def select_original(self, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """The original trainer's ``mask_out`` selection: Bernoulli(``word_pred``) on every position
        (``</s>`` and ``<unk>`` included), or with ``sample_alpha`` exactly ``ceil(word_pred * x.size)``
        positions drawn in proportion to ``count^-sample_alpha`` (0 for specials); then padding and
        the first position of every row are unset. A batch may end up with no target."""
        if self.weights is None:
            sel = gen.random(x.shape) <= self.word_pred
        else:
            p = self.weights[x.ravel()]
            k = min(math.ceil(self.word_pred * x.size), int((p > 0).sum()))
            sel = np.zeros(x.size, dtype=bool)
            if k:
                sel[gen.choice(x.size, size=k, replace=False, p=p / p.sum())] = True
            sel = sel.reshape(x.shape)
        sel[x == PAD_INDEX] = False
        sel[:, 0] = False
        return sel

    def __call__(self, x: np.ndarray, gen: np.random.Generator,
                 train: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(corrupted x, pred_mask, targets)``; evaluation masks 100% of the selected tokens."""
        pred_mask = self.select(x, gen)
        targets = x[pred_mask]
        x = x.copy()
        if not train:
            x[pred_mask] = MASK_INDEX
            return x, pred_mask, targets
        u = gen.random(len(targets))
        noise = np.where(u < self.p_mask, MASK_INDEX, targets)
        rand = u >= self.p_mask + self.p_keep
        noise[rand] = gen.integers(0 if self.original else N_SPECIAL, self.n_words, size=int(rand.sum()))
        x[pred_mask] = noise
        return x, pred_mask, targets
