"""The objective registry: what each objective reads, how its batch is built, how its metrics are named.

An objective is one module (its batch builder, attention mask, pending model step) plus one entry
in :data:`OBJECTIVES`, plus its config keys in :class:`xlm.config.ObjectivesConfig` (the task list
``<name>: [...]``, ``lambda_<name>``, and any option of its own). The trainer, the evaluator, config
validation and the data loader only go through this table. Registry order is the draw order of a
training step (CLM, then MLM, as the original; later objectives after them).

Fields of :class:`Objective`:

- ``separator``: how a config entry names two languages (``en-fr`` pairs, ``en>fr`` directions);
  ``entries`` says which forms are allowed: ``"both"`` (language or pair), ``"pair"``, ``"lang"``,
  ``"roundtrip"`` (``en-fr-en``, back-translation);
- ``data(task)``: ``"stream"`` (bptt windows of one language), ``"pairs"`` (aligned sentence pairs),
  ``"sentences"`` (single sentences of ``lang1``, with ``lang2`` as the language to generate);
- ``build(task, raw, masker, gen, context_size, train) -> Batch`` (attention mask and any pending
  model step included); the loss is always the mean cross-entropy of :mod:`xlm.objectives.batch`;
- ``metric_separator``: between the languages of a metric name (``valid_en_fr_mlm_ppl``,
  ``valid_en-fr_clm_ppl``); ``averaged``: whether ``{split}_{name}_ppl/acc`` average its
  one-language tasks (MLM, CLM, as the original);
- ``original_protocol``: whether ``train.eval_protocol: original`` can evaluate it (the original has
  only MLM/TLM/CLM); ``generates``: the batch needs the model before the loss (exempt from
  static-shape rules); ``draw_all``: a step runs every entry once (the original permutes AE and BT
  steps) instead of drawing ``min(5, n)`` with replacement;
- ``decoder``: trains an encoder-decoder's decoder (needs ``model.encoder_only: false``);
  ``encoder_decoder``: usable on an encoder-decoder at all (MLM/CLM run on its encoder);
- ``evaluates(task)``: the task evaluation scores in its place (BT ``en-fr-en`` -> MT ``fr-en`` on
  parallel data, as the original), None for none (AE); default: the task itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xlm.config import OBJECTIVE_KEYS
from xlm.data.datasets import RawBatch
from xlm.objectives.ae import ae_batch
from xlm.objectives.batch import Batch
from xlm.objectives.bt import bt_batch
from xlm.objectives.btmlm import btmlm_batch
from xlm.objectives.camlm import camlm_batch
from xlm.objectives.clm import clm_batch
from xlm.objectives.masking import Masker
from xlm.objectives.mlm import mlm_batch, mlm_data
from xlm.objectives.mt import mt_batch

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
    draw_all: bool = False
    decoder: bool = False
    encoder_decoder: bool = True
    evaluates: Callable[[Task], Task | None] | None = None
    description: str = ""

    def eval_task(self, task: Task) -> Task | None:
        return task if self.evaluates is None else self.evaluates(task)


def _reverse_mt(task: Task) -> Task:
    from xlm.objectives.tasks import Task

    assert task.lang2 is not None
    return Task("mt", task.lang2, task.lang1)


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
        entries="pair", encoder_decoder=False, description="cross-attention MLM on pairs (ERNIE-M 3.1)"),
    "btmlm": Objective(
        "btmlm", lambda task: "sentences",
        lambda task, raw, masker, gen, context_size, train: btmlm_batch(task, raw, masker, gen, train),
        entries="pair", separator=">", generates=True, encoder_decoder=False,
        description="back-translation MLM on monolingual sentences (ERNIE-M 3.2)"),
    "ae": Objective(
        "ae", lambda task: "sentences",
        lambda task, raw, masker, gen, context_size, train: ae_batch(task, raw, masker, gen, train),
        entries="lang", metric_separator="-", draw_all=True, decoder=True, evaluates=lambda task: None,
        description="denoising auto-encoding on monolingual sentences (Lample et al. 2018, 2.3)"),
    "mt": Objective(
        "mt", lambda task: "pairs", lambda task, raw, masker, gen, context_size, train: mt_batch(task, raw),
        entries="pair", metric_separator="-", decoder=True,
        description="supervised translation on pairs, l1 -> l2 (Lample & Conneau 2019, 5.2)"),
    "bt": Objective(
        "bt", lambda task: "sentences", lambda task, raw, masker, gen, context_size, train: bt_batch(task, raw),
        entries="roundtrip", metric_separator="-", generates=True, draw_all=True, decoder=True,
        evaluates=_reverse_mt,
        description="online back-translation l1 -> l2 -> l1 on monolingual sentences (Lample et al. 2018, 2.4)"),
}


def make_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, context_size: int = 0,
               train: bool = True) -> Batch:
    """The batch of ``task`` from raw token ids (step 1 of generating objectives left pending)."""
    return OBJECTIVES[task.objective].build(task, raw, masker, gen, context_size, train)


if tuple(OBJECTIVES) != OBJECTIVE_KEYS:
    raise ImportError(f"xlm.config.OBJECTIVE_KEYS {OBJECTIVE_KEYS} must list the registry's objectives "
                      f"{tuple(OBJECTIVES)} in order")
