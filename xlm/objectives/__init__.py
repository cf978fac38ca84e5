"""Training objectives: a registry of MLM, TLM, CLM (XLM), CAMLM, BTMLM (ERNIE-M) and the translation
objectives AE, MT, BT (encoder-decoder models).

Each objective lives in its own module (:mod:`.mlm` with TLM, :mod:`.clm`, :mod:`.camlm`,
:mod:`.btmlm`, :mod:`.ae`, :mod:`.mt`, :mod:`.bt`; :mod:`.seq2seq` their shared layout) and one
entry of :data:`.registry.OBJECTIVES`; :mod:`.tasks` draws a step's tasks, :mod:`.masking` is the BERT
corruption they share, :mod:`.batch` the batch and the loss. Evaluation masking is deterministic (a
generator fixed per split and task) and, as the original, replaces every selected token by ``<mask>``
and guarantees at least one prediction per batch. See docs/objectives.md.
"""

from xlm.objectives.batch import Batch, Source, as_batch, loss, predict, prepare, score
from xlm.objectives.btmlm import btmlm_batch
from xlm.objectives.camlm import camlm_batch, cross_attention_mask
from xlm.objectives.clm import clm_batch
from xlm.objectives.masking import Masker
from xlm.objectives.mlm import mlm_batch
from xlm.objectives.registry import OBJECTIVES, Objective, make_batch
from xlm.objectives.tasks import MAX_TASKS_PER_DRAW, Task, TaskDrawer, eval_tasks, parse_tasks, schedule_value

__all__ = [
    "MAX_TASKS_PER_DRAW", "OBJECTIVES", "Batch", "Masker", "Objective", "Source", "Task", "TaskDrawer", "as_batch",
    "btmlm_batch", "camlm_batch", "clm_batch", "cross_attention_mask", "eval_tasks", "loss", "make_batch", "mlm_batch",
    "parse_tasks", "predict", "prepare", "schedule_value", "score",
]
