"""Pretraining objectives: a registry of MLM, TLM, CLM (XLM) and CAMLM, BTMLM (ERNIE-M).

Each objective lives in its own module (:mod:`.mlm` with TLM, :mod:`.clm`, :mod:`.camlm`,
:mod:`.btmlm`) and one entry of :data:`.registry.OBJECTIVES`; :mod:`.tasks` draws a step's tasks,
:mod:`.masking` is the BERT corruption they share, :mod:`.batch` the batch and the loss. Evaluation
masking is deterministic (a generator fixed per split and task) and, as the original, replaces every
selected token by ``<mask>`` and guarantees at least one prediction per batch. See docs/objectives.md.
"""

from xlm.objectives.batch import Batch, as_batch, loss, predict, prepare, score
from xlm.objectives.btmlm import btmlm_batch
from xlm.objectives.camlm import camlm_batch, cross_attention_mask
from xlm.objectives.clm import clm_batch
from xlm.objectives.masking import Masker
from xlm.objectives.mlm import mlm_batch
from xlm.objectives.registry import OBJECTIVES, Objective, make_batch
from xlm.objectives.tasks import MAX_TASKS_PER_DRAW, Task, TaskDrawer, parse_tasks, schedule_value

__all__ = [
    "MAX_TASKS_PER_DRAW", "OBJECTIVES", "Batch", "Masker", "Objective", "Task", "TaskDrawer", "as_batch",
    "btmlm_batch", "camlm_batch", "clm_batch", "cross_attention_mask", "loss", "make_batch", "mlm_batch",
    "parse_tasks", "predict", "prepare", "schedule_value", "score",
]
