"""CAMLM, cross-attention masked language modeling (ERNIE-M, Ouyang et al., 2021, arXiv 2012.15674,
section 3.1 "Cross-attention Masked Language Modeling" and its Figure 2).

Configured as ``camlm: [en-fr]``. The batch is TLM's: a pair laid out ``[</s> s1 </s>][</s> s2 </s>]``
(positions restart for ``s2``, each half has its language id), BERT masking over both halves. The
difference is the attention: **a token of one side may attend only to the tokens of the other side**
(its own side's ``</s>`` included in "its side"), so a masked source token is restored from the
target sentence alone and a masked target token from the source alone -- the paper's
``p(x_i | x_{/M} of the other language)``::

    query \\ key   s1 side    s2 side
    s1 side         no         yes
    s2 side         yes        no

Exact rule: ``attn_mask[b, i, j] = side(i) != side(j)`` for real tokens ``i, j`` (padding is handled
by the model). With one layer a side's outputs depend on the other side only. **With two or more
layers a side sees its own context indirectly**: layer 2 of an ``s1`` token attends to ``s2`` states
that, in layer 1, attended to ``s1``. The paper's rule is per layer, as here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xlm.data.datasets import RawBatch
from xlm.objectives.batch import Batch, as_batch
from xlm.objectives.masking import Masker

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


def second_side(positions: np.ndarray) -> np.ndarray:
    """``(bs, slen)`` bool: True from the second segment on (where positions restart at 0), padding included."""
    col = np.arange(positions.shape[1])[None, :]
    return np.cumsum((positions == 0) & (col > 0), axis=1) > 0


def cross_attention_mask(second: np.ndarray) -> np.ndarray:
    """``(bs, slen, slen)`` bool, True where query ``i`` and key ``j`` lie on different sides."""
    return second[:, :, None] != second[:, None, :]


def camlm_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, train: bool = True) -> Batch:
    """TLM masking over a pair batch, attention across sides only."""
    if raw.positions is None:
        raise ValueError(f"{task.name}: CAMLM needs pair batches (positions restarting at the second sentence)")
    x, pred_mask, targets = masker(raw.x, gen, train)
    return as_batch(task, raw, x, pred_mask, targets, causal=False,
                    attn_mask=cross_attention_mask(second_side(raw.positions)))
