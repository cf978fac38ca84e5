"""CLM (Lample & Conneau, 2019, section 3.2): causal attention, position ``t`` predicts token ``t+1``.

On streams (``clm: [en]``) or pairs (``clm: [en-fr]``, the TLM layout read left to right); no
position before ``objectives.context_size`` is predicted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xlm.data.datasets import RawBatch
from xlm.objectives.batch import Batch, as_batch

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


def clm_batch(task: Task, raw: RawBatch, context_size: int = 0) -> Batch:
    """Next-token prediction: position ``t`` (``context_size <= t < length-1``) predicts ``x[t+1]``."""
    col = np.arange(raw.x.shape[1])[None, :]
    pred_mask = (col < raw.lengths[:, None] - 1) & (col >= context_size)
    targets = raw.x[:, 1:][pred_mask[:, :-1]]
    return as_batch(task, raw, raw.x, pred_mask, targets, causal=True)
