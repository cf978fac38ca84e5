"""AE, denoising auto-encoding (Lample et al. 2018, "Unsupervised Machine Translation Using Monolingual
Corpora Only", section 2.3; the original's ``ae_steps``).

Configured as ``ae: [en, fr]``: a monolingual sentence is corrupted by :func:`xlm.noise.add_noise`
(``objectives.word_shuffle``, ``word_dropout``, ``word_blank``; the original's defaults are 0, its
unsupervised recipe uses 3, 0.1, 0.1) and the decoder restores it, in the same language. The noise
is drawn from the batch's generator, so resume replays it. Not evaluated (as the original).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xlm.data.datasets import RawBatch
from xlm.data.dictionary import EOS_INDEX, MASK_INDEX, PAD_INDEX
from xlm.noise import add_noise
from xlm.objectives.batch import Batch
from xlm.objectives.masking import Masker
from xlm.objectives.seq2seq import seq2seq_batch

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


def ae_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, train: bool = True) -> Batch:
    """Source: the noisy sentence (no noise outside training); target: the sentence."""
    lang = raw.first_lang
    opts = masker.options
    src, src_len = raw.x, raw.lengths
    if train:
        src, src_len = add_noise(raw.x, raw.lengths, gen, shuffle=opts.word_shuffle, dropout=opts.word_dropout,
                                 blank=opts.word_blank, eos=EOS_INDEX, pad=PAD_INDEX, mask=MASK_INDEX)
    return seq2seq_batch(task, src, src_len, lang, raw.x, raw.lengths, lang)
