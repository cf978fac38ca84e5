"""The objective registry: what each objective reads, how its batch is built, how its metrics are named.

An objective is one module (its batch builder, attention mask, pending model step) plus one entry
in :data:`OBJECTIVES`, plus its config keys in :class:`xlm.config.ObjectivesConfig` (the task list
``<name>: [...]``, ``lambda_<name>``, and any option of its own). The trainer, the evaluator, config
validation and the data loader only go through this table. Registry order is the draw order of a
training step (CLM, then MLM, as the original; later objectives after them).

Fields of :class:`Objective`:

- ``separator``: how a config entry names two languages (``en-fr`` pairs, ``en>fr`` directions);
  ``entries`` says which forms are allowed: ``"both"`` (language or pair), ``"pair"``;
- ``data(task)``: ``"stream"`` (bptt windows of one language), ``"pairs"`` (aligned sentence pairs),
  ``"sentences"`` (single sentences of ``lang1``, with ``lang2`` as the language to generate);
- ``build(task, raw, masker, gen, context_size, train) -> Batch`` (attention mask and any pending
  model step included); the loss is always the mean cross-entropy of :mod:`xlm.objectives.batch`;
- ``metric_separator``: between the languages of a metric name (``valid_en_fr_mlm_ppl``,
  ``valid_en-fr_clm_ppl``); ``averaged``: whether ``{split}_{name}_ppl/acc`` average its
  one-language tasks (MLM, CLM, as the original);
- ``original_protocol``: whether ``train.eval_protocol: original`` can evaluate it (the original has
  only MLM/TLM/CLM); ``generates``: the batch needs the model before the loss (exempt from
  static-shape rules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xlm.config import OBJECTIVE_KEYS
from xlm.data.datasets import RawBatch
from xlm.objectives.batch import Batch
from xlm.objectives.btmlm import btmlm_batch
from xlm.objectives.camlm import camlm_batch
from xlm.objectives.clm import clm_batch
from xlm.objectives.masking import Masker
from xlm.objectives.mlm import mlm_batch, mlm_data

if TYPE_CHECKING:
    from xlm.objectives.tasks import Task

Builder = Callable[["Task", RawBatch, Masker, np.random.Generator, int, bool], Batch]


@dataclass(frozen=True)
class Objective:
    name: str
    data: Callable[[Task], str]
    build: Builder
    entries: str = "both"  # "both": a language or a pair; "pair": a pair (direction) only
    separator: str = "-"
    metric_separator: str = "_"
    averaged: bool = False
    original_protocol: bool = False
    generates: bool = False
    description: str = ""


OBJECTIVES: dict[str, Objective] = {
    "clm": Objective(
        "clm", mlm_data, lambda task, raw, masker, gen, context_size, train: clm_batch(task, raw, context_size),
        metric_separator="-", averaged=True, original_protocol=True,
        description="causal LM on streams or pairs (Lample & Conneau 2019, 3.2)"),
    "mlm": Objective(
        "mlm", mlm_data, lambda task, raw, masker, gen, context_size, train: mlm_batch(task, raw, masker, gen, train),
        averaged=True, original_protocol=True,
        description="MLM on streams; TLM on pairs (Lample & Conneau 2019, 3.3 and 3.4)"),
    "camlm": Objective(
        "camlm", lambda task: "pairs",
        lambda task, raw, masker, gen, context_size, train: camlm_batch(task, raw, masker, gen, train),
        entries="pair", description="cross-attention MLM on pairs (ERNIE-M 3.1)"),
    "btmlm": Objective(
        "btmlm", lambda task: "sentences",
        lambda task, raw, masker, gen, context_size, train: btmlm_batch(task, raw, masker, gen, train),
        entries="pair", separator=">", generates=True,
        description="back-translation MLM on monolingual sentences (ERNIE-M 3.2)"),
}


def make_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, context_size: int = 0,
               train: bool = True) -> Batch:
    """The batch of ``task`` from raw token ids (step 1 of generating objectives left pending)."""
    return OBJECTIVES[task.objective].build(task, raw, masker, gen, context_size, train)


if tuple(OBJECTIVES) != OBJECTIVE_KEYS:
    raise ImportError(f"xlm.config.OBJECTIVE_KEYS {OBJECTIVE_KEYS} must list the registry's objectives "
                      f"{tuple(OBJECTIVES)} in order")
