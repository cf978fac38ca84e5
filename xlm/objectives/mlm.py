"""MLM on streams of one language and TLM on pairs (Lample & Conneau, 2019, section 3.3).

- **MLM** (``mlm: [en]``): BERT masking (see :mod:`xlm.objectives.masking`) over ``bptt``-token
  windows of the language's stream, full bidirectional attention.
- **TLM** (``mlm: [en-fr]``, as the original writes it): the same masking over a concatenated pair
  ``[</s> s1 </s>][</s> s2 </s>]`` (positions restart for ``s2``, each half has its language id),
  full attention across both halves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xlm.data.datasets import RawBatch
from xlm.objectives.batch import Batch, as_batch
from xlm.objectives.masking import Masker

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


def mlm_data(task: Task) -> str:
    return "pairs" if task.is_pair else "stream"


def mlm_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, train: bool = True) -> Batch:
    """MLM on a stream batch or TLM on a pair batch."""
    x, pred_mask, targets = masker(raw.x, gen, train)
    return as_batch(task, raw, x, pred_mask, targets, causal=False)
