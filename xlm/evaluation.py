"""Perplexity and accuracy per split, language and objective, with the original's metric names.

For each split (``valid``, ``test``) and task: ``ppl = exp(sum xent / n_predicted)``,
``acc = 100 * correct / n_predicted`` (``ppl`` 1e9 and ``acc`` 0 when nothing was predicted).
Names: ``valid_en_mlm_ppl``, ``valid_en_fr_mlm_acc`` (TLM, underscore), ``valid_de_clm_ppl``,
``valid_en-fr_clm_ppl`` (CLM on pairs, dash), ``valid_en-fr_mt_ppl`` / ``_mt_acc`` (translation,
teacher-forced) and, with ``train.eval_bleu``, ``valid_en-fr_mt_bleu`` (:mod:`xlm.eval_mt`), and the
averages over *monolingual* tasks ``valid_mlm_ppl`` / ``valid_mlm_acc`` / ``valid_clm_ppl`` /
``valid_clm_acc`` (arithmetic means). The tasks evaluated are :func:`xlm.objectives.eval_tasks` of
the trained ones (back-translation is scored as MT in the reverse direction; AE is not scored).

Masks are a pure function of ``(seed, split, task, batch index)``: every evaluation of a run scores
the same positions, whatever the number of processes. Batches are dealt round-robin to ranks
and the sums go through one all-reduce.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xlm.data.sampling import TAG_EVAL, name_key, rng
from xlm.distributed import all_reduce_sums
from xlm.eval_mt import BleuEvaluator
from xlm.objectives import OBJECTIVES, Masker, Task, eval_tasks, make_batch, prepare, score

SPLITS = ("valid", "test")


def averaged_objectives() -> list[str]:
    """Objectives whose one-language tasks are averaged (``valid_mlm_ppl``), in report order."""
    return [o for o in ("mlm", "clm") if OBJECTIVES[o].averaged] + sorted(
        o for o, spec in OBJECTIVES.items() if spec.averaged and o not in ("mlm", "clm"))


def metric_names(tasks: list[Task], splits: tuple[str, ...] = SPLITS, bleu: bool = False) -> list[str]:
    """Every metric an evaluation of these (training) tasks reports, in report order."""
    names = []
    tasks = eval_tasks(tasks)
    for split in splits:
        for task in tasks:
            names += [task.metric(split, "ppl"), task.metric(split, "acc")]
            if bleu and task.objective == "mt":
                names.append(task.metric(split, "bleu"))
        for objective in averaged_objectives():
            if any(t.objective == objective and not t.is_pair for t in tasks):
                names += [f"{split}_{objective}_ppl", f"{split}_{objective}_acc"]
    return names


@dataclass
class Evaluator:
    tasks: list[Task]  # the evaluated tasks (eval_tasks of the trained ones)
    datasets: dict[tuple[str, Task], Any]  # (split, task) -> a dataset with eval_batches()
    masker: Masker
    batch_size: int
    seed: int
    context_size: int = 0
    rank: int = 0
    world_size: int = 1
    log: Callable[[str], None] | None = None  # progress lines during long evaluations
    progress_every: float = 30.0  # seconds between progress lines
    bleu: BleuEvaluator | None = None  # {split}_{l1}-{l2}_mt_bleu for MT tasks (train.eval_bleu)
    protocol = "xlm"  # what metrics.jsonl and ``python -m xlm.evaluate lm`` report (see xlm.eval_original)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 ) -> dict[str, float]:
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        bleu: dict[str, float] = {}
        start = last = time.monotonic()
        try:
            for (split, task), data in self.datasets.items():
                xent = n = correct = 0.0
                n_batches = math.ceil(len(data) / self.batch_size)
                for i, raw in enumerate(data.eval_batches(self.batch_size)):
                    if i % self.world_size != self.rank:
                        continue
                    if self.log is not None and time.monotonic() - last > self.progress_every:
                        last = time.monotonic()
                        self.log(f"evaluating {split} {task.name}: batch {i + 1}/{n_batches} "
                                 f"({last - start:.0f} s so far)")
                    gen = rng(self.seed, TAG_EVAL, name_key(split), name_key(task.name), i)
                    batch = make_batch(task, raw, self.masker, gen, self.context_size, train=False).to(device)
                    if batch.n_pred == 0:
                        continue
                    with autocast():
                        s, k, c = score(model, prepare(model, batch))
                    xent, n, correct = xent + s, n + k, correct + c
                key = f"{split}|{task.name}"
                sums.update({f"{key}|xent": xent, f"{key}|n": n, f"{key}|correct": correct})
                if self.bleu is not None and task.objective == "mt":
                    bleu[task.metric(split, "bleu")] = self.bleu.score(model, data, device, autocast)
        finally:
            model.train(was_training)
        sums = all_reduce_sums(sums, device)
        return self._metrics(sums) | bleu

    def _metrics(self, sums: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for split in SPLITS:
            per_objective: dict[str, list[tuple[float, float]]] = {o: [] for o in averaged_objectives()}
            for task in self.tasks:
                key = f"{split}|{task.name}"
                if f"{key}|n" not in sums:
                    continue
                n = sums[f"{key}|n"]
                ppl = math.exp(min(sums[f"{key}|xent"] / n, 700)) if n else 1e9
                acc = 100.0 * sums[f"{key}|correct"] / n if n else 0.0
                out[task.metric(split, "ppl")] = ppl
                out[task.metric(split, "acc")] = acc
                if not task.is_pair and task.objective in per_objective:
                    per_objective[task.objective].append((ppl, acc))
            for objective, values in per_objective.items():
                if values:
                    out[f"{split}_{objective}_ppl"] = sum(v[0] for v in values) / len(values)
                    out[f"{split}_{objective}_acc"] = sum(v[1] for v in values) / len(values)
        return out
