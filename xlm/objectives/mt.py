"""MT, supervised translation (Lample & Conneau 2019, section 5.2; the original's ``mt_steps``).

Configured as ``mt: [en-fr, fr-en]`` (directions): the pairs of ``train.en-fr.{en,fr}`` with the
first language as the source. Evaluated as ``{split}_en-fr_mt_ppl``, ``_mt_acc`` and, with
``train.eval_bleu``, ``_mt_bleu`` (:mod:`xlm.eval_mt`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xlm.data.datasets import RawBatch
from xlm.objectives.batch import Batch
from xlm.objectives.seq2seq import seq2seq_batch, split_pairs

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task


def mt_batch(task: Task, raw: RawBatch) -> Batch:
    """Source ``lang1``, target ``lang2``, teacher-forced (nothing random)."""
    src, n1, tgt, n2, lang1, lang2 = split_pairs(raw)
    return seq2seq_batch(task, src, n1, lang1, tgt, n2, lang2)
