"""Tasks (one objective on one language, pair or direction) and the draw of a training step's tasks.

**One update per step.** The original runs a separate forward/backward/optimizer update for every
objective and language it draws in an iteration. Here a training step draws its tasks the same way
(per objective, ``min(5, n)`` monolingual and ``min(5, n)`` parallel tasks with replacement, by
``lg_sampling_factor``), backpropagates ``lambda_objective(step) * loss`` of each (one task at a time,
so memory stays that of one batch) and makes **one** optimizer update on the summed gradients. A
"step" is then always one update, schedules and checkpoints count the same thing, and the gradient
of a step is that of ``sum_tasks lambda * loss_task``. Objectives are visited in registry order
(CLM, MLM, then the later ones), so configs using only MLM/CLM draw exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from xlm.config import ObjectivesConfig, parse_schedule
from xlm.data.sampling import sampling_probs

if TYPE_CHECKING:
    from xlm.objectives.registry import Objective

MAX_TASKS_PER_DRAW = 5  # the original's min(5, len(steps)) per objective and data kind


@dataclass(frozen=True)
class Task:
    """One objective on one language, pair or direction: MLM ``en``, TLM ``en-fr``, BTMLM ``en>fr``."""

    objective: str  # a key of xlm.objectives.registry.OBJECTIVES
    lang1: str
    lang2: str | None = None

    @property
    def is_pair(self) -> bool:
        """Whether the task names two languages (a pair, or a direction for BTMLM)."""
        return self.lang2 is not None

    @property
    def spec(self) -> Objective:
        """The task's registry entry (imported late: the registry imports the objective modules)."""
        from xlm.objectives.registry import OBJECTIVES

        return OBJECTIVES[self.objective]

    @property
    def entry(self) -> str:
        """The config spelling: ``en``, ``en-fr``, ``en>fr``, back-translation ``en-fr-en``."""
        if self.lang2 is None:
            return self.lang1
        sep = self.spec.separator
        return f"{self.lang1}{sep}{self.lang2}" + (f"{sep}{self.lang1}" if self.spec.entries == "roundtrip" else "")

    @property
    def name(self) -> str:
        """Log name as the original's stats keys: ``MLM-en``, ``MLM-en-fr``, ``CLM-de``, ``BTMLM-en>fr``."""
        return f"{self.objective.upper()}-{self.entry}"

    @property
    def data(self) -> str:
        """What the task reads: ``"stream"``, ``"pairs"`` or ``"sentences"`` (declared by its objective)."""
        return self.spec.data(self)

    def metric(self, split: str, what: str) -> str:
        """Original names: ``valid_en_mlm_ppl``, TLM ``valid_en_fr_mlm_ppl``, CLM pair ``valid_en-fr_clm_ppl``."""
        langs = self.lang1 if self.lang2 is None else f"{self.lang1}{self.spec.metric_separator}{self.lang2}"
        return f"{split}_{langs}_{self.objective}_{what}"


def parse_tasks(cfg: ObjectivesConfig) -> list[Task]:
    """``clm: [en]``, ``mlm: [en, fr, en-fr]``, ``btmlm: [en>fr]`` -> tasks in registry order (CLM first)."""
    from xlm.objectives.registry import OBJECTIVES

    tasks = []
    for name, spec in OBJECTIVES.items():
        for entry in getattr(cfg, name):
            parts = entry.split(spec.separator)  # a round trip l1-l2-l1 is kept as (l1, l2)
            tasks.append(Task(name, parts[0], parts[1] if len(parts) > 1 else None))
    return tasks


def eval_tasks(tasks: list[Task]) -> list[Task]:
    """What evaluation scores for these training tasks, in order, without repeats (BT ``en-fr-en``
    is scored as MT ``fr-en``; AE is not scored), as the original's evaluator."""
    out: list[Task] = []
    for task in tasks:
        e = task.spec.eval_task(task)
        if e is not None and e not in out:
            out.append(e)
    return out


def schedule_value(points: Sequence[tuple[int, float]], step: int) -> float:
    """Piecewise-linear schedule (``parse_schedule`` output) at ``step``; flat outside its points."""
    if step <= points[0][0]:
        return points[0][1]
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if step < s1:
            return v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    return points[-1][1]


@dataclass
class TaskDrawer:
    """Draws the tasks of a training step and their lambda weights (identical on every rank)."""

    tasks: list[Task]
    sizes: dict[Task, int]  # training examples per task (windows / pairs / sentences) for lg_sampling_factor
    lg_sampling_factor: float
    lambdas: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: ObjectivesConfig, sizes: dict[Task, int], lg_sampling_factor: float) -> TaskDrawer:
        from xlm.objectives.registry import OBJECTIVES

        lambdas = {name: parse_schedule(getattr(cfg, f"lambda_{name}")) for name in OBJECTIVES}
        return cls(parse_tasks(cfg), sizes, lg_sampling_factor, lambdas)

    def _objectives(self) -> list[str]:
        from xlm.objectives.registry import OBJECTIVES

        return list(OBJECTIVES)

    def never_drawn(self) -> list[str]:
        """Objectives with tasks whose lambda schedule is 0 at every step."""
        used = {t.objective for t in self.tasks}
        return [o for o in self._objectives() if o in used and all(v == 0 for _, v in self.lambdas[o])]

    def _groups(self, objective: str) -> list[list[Task]]:
        out = []
        for pair in (False, True):
            group = [t for t in self.tasks if t.objective == objective and t.is_pair == pair]
            if group:
                out.append(group)
        return out

    def _draws_all(self, objective: str) -> bool:
        from xlm.objectives.registry import OBJECTIVES

        return OBJECTIVES[objective].draw_all

    def expected_tokens(self, tokens: dict[Task, float], step: int = 0) -> float:
        """Expected input tokens of one draw at ``step``, given each task's tokens per batch."""
        total = 0.0
        for objective in self._objectives():
            groups = self._groups(objective)
            if not groups or schedule_value(self.lambdas[objective], step) == 0:
                continue
            for group in groups:
                probs = sampling_probs([self.sizes[t] for t in group], self.lg_sampling_factor)
                if self._draws_all(objective):
                    total += sum(tokens[t] for t in group)
                else:
                    total += min(MAX_TASKS_PER_DRAW, len(group)) * sum(p * tokens[t] for p, t in zip(probs, group))
        return total

    def draw(self, step: int, gen: np.random.Generator) -> list[tuple[Task, float]]:
        out: list[tuple[Task, float]] = []
        for objective in self._objectives():
            groups = self._groups(objective)
            if not groups:
                continue
            weight = schedule_value(self.lambdas[objective], step)
            if weight == 0:
                continue  # as the original: a zero coefficient skips the objective entirely
            for group in groups:
                if self._draws_all(objective):  # every entry once, in a random order (the original's AE, BT)
                    out += [(group[i], weight) for i in gen.permutation(len(group))]
                    continue
                probs = sampling_probs([self.sizes[t] for t in group], self.lg_sampling_factor)
                picks = gen.choice(len(group), size=min(MAX_TASKS_PER_DRAW, len(group)), replace=True, p=probs)
                out += [(group[i], weight) for i in picks]
        return out
