"""MLM, TLM and CLM: which tokens to predict, how inputs are corrupted, and the loss.

- **MLM** (streams of one language): select ``word_pred`` (15%) of the positions, never padding,
  ``</s>`` or any other special token (ids < 14); replace 80% of them by ``<mask>``, keep 10% and
  put a random *real* word (id >= 14) in 10%. With ``sample_alpha > 0`` exactly
  ``ceil(word_pred * n_candidates)`` positions are drawn without replacement with probability
  proportional to ``count(word)^-sample_alpha`` (rare words predicted more often).
  ``mlm_targets: original`` selects as ``Trainer.mask_out`` of the original's ``xlm/trainer.py``:
  any position but padding and the first of each row, random words from the whole vocabulary.
- **TLM**: the same masking over a concatenated pair ``[</s> s1 </s>][</s> s2 </s>]`` (positions
  restart for ``s2``, each half has its language id); configured as a pair in ``mlm: [en-fr]``.
- **CLM**: causal attention, position ``t`` predicts token ``t+1`` (not before ``context_size``).

Every loss is the mean cross-entropy over the predicted tokens, computed by scoring only those
positions (``model.predict(h[pred_mask])``), never full-vocabulary logits everywhere.

**One update per step.** The original runs a separate forward/backward/optimizer update for every
objective and language it draws in an iteration. Here a training step draws its tasks the same way
(per objective, ``min(5, n)`` monolingual and ``min(5, n)`` parallel tasks with replacement, by
``lg_sampling_factor``), backpropagates ``lambda_objective(step) * loss`` of each (one task at a time,
so memory stays that of one batch) and makes **one** optimizer update on the summed gradients. A
"step" is then always one update, schedules and checkpoints count the same thing, and the gradient
of a step is that of ``sum_tasks lambda * loss_task``.

Evaluation masking is deterministic (a generator fixed per split and task) and, as the original,
replaces every selected token by ``<mask>`` and guarantees at least one prediction per batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xlm.config import ObjectivesConfig, parse_schedule
from xlm.data.datasets import RawBatch
from xlm.data.dictionary import MASK_INDEX, N_SPECIAL, PAD_INDEX
from xlm.data.sampling import sampling_probs

MAX_TASKS_PER_DRAW = 5  # the original's min(5, len(steps)) per objective and data kind


# -- tasks ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One objective on one language or language pair, e.g. MLM on ``en`` or TLM on ``en-fr``."""

    objective: str  # "mlm" | "clm"
    lang1: str
    lang2: str | None = None

    @property
    def is_pair(self) -> bool:
        return self.lang2 is not None

    @property
    def name(self) -> str:
        """Log name as the original's stats keys: ``MLM-en``, ``MLM-en-fr``, ``CLM-de``."""
        langs = self.lang1 if self.lang2 is None else f"{self.lang1}-{self.lang2}"
        return f"{self.objective.upper()}-{langs}"

    def metric(self, split: str, what: str) -> str:
        """Original names: ``valid_en_mlm_ppl``, TLM ``valid_en_fr_mlm_ppl``, CLM pair ``valid_en-fr_clm_ppl``."""
        if self.lang2 is None:
            langs = self.lang1
        elif self.objective == "mlm":
            langs = f"{self.lang1}_{self.lang2}"
        else:
            langs = f"{self.lang1}-{self.lang2}"
        return f"{split}_{langs}_{self.objective}_{what}"


def parse_tasks(cfg: ObjectivesConfig) -> list[Task]:
    """``clm: [en]``, ``mlm: [en, fr, en-fr]`` -> tasks in the original's order (CLM first)."""
    tasks = []
    for objective in ("clm", "mlm"):
        for entry in getattr(cfg, objective):
            l1, _, l2 = entry.partition("-")
            tasks.append(Task(objective, l1, l2 or None))
    return tasks


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
    sizes: dict[Task, int]  # training examples per task (sentences / pairs) for lg_sampling_factor
    lg_sampling_factor: float
    lambdas: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: ObjectivesConfig, sizes: dict[Task, int], lg_sampling_factor: float) -> TaskDrawer:
        lambdas = {"mlm": parse_schedule(cfg.lambda_mlm), "clm": parse_schedule(cfg.lambda_clm)}
        return cls(parse_tasks(cfg), sizes, lg_sampling_factor, lambdas)

    def never_drawn(self) -> list[str]:
        """Objectives with tasks whose lambda schedule is 0 at every step."""
        used = {t.objective for t in self.tasks}
        return [o for o in ("clm", "mlm") if o in used and all(v == 0 for _, v in self.lambdas[o])]

    def expected_tokens(self, tokens: dict[Task, float], step: int = 0) -> float:
        """Expected input tokens of one draw at ``step``, given each task's tokens per batch."""
        total = 0.0
        for objective in ("clm", "mlm"):
            if schedule_value(self.lambdas[objective], step) == 0:
                continue
            for pair in (False, True):
                group = [t for t in self.tasks if t.objective == objective and t.is_pair == pair]
                if group:
                    probs = sampling_probs([self.sizes[t] for t in group], self.lg_sampling_factor)
                    total += min(MAX_TASKS_PER_DRAW, len(group)) * sum(p * tokens[t] for p, t in zip(probs, group))
        return total

    def draw(self, step: int, gen: np.random.Generator) -> list[tuple[Task, float]]:
        out: list[tuple[Task, float]] = []
        for objective in ("clm", "mlm"):
            weight = schedule_value(self.lambdas[objective], step)
            if weight == 0:
                continue  # as the original: a zero coefficient skips the objective entirely
            for pair in (False, True):
                group = [t for t in self.tasks if t.objective == objective and t.is_pair == pair]
                if not group:
                    continue
                probs = sampling_probs([self.sizes[t] for t in group], self.lg_sampling_factor)
                picks = gen.choice(len(group), size=min(MAX_TASKS_PER_DRAW, len(group)), replace=True, p=probs)
                out += [(group[i], weight) for i in picks]
        return out


# -- batches --------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Model inputs and the prediction targets of one task (tensors, batch-first)."""

    task: Task
    x: Tensor  # (bs, slen) corrupted input ids
    lengths: Tensor  # (bs,)
    langs: Tensor | int
    positions: Tensor | None
    pred_mask: Tensor  # (bs, slen) bool: positions whose output is scored
    targets: Tensor  # (n_pred,) ids to predict, in row-major order of pred_mask
    causal: bool

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def n_pred(self) -> int:
        return int(self.targets.numel())

    def to(self, device: torch.device) -> Batch:
        if device.type == "cpu":
            return self
        move = lambda t: t.to(device, non_blocking=True) if isinstance(t, Tensor) else t
        return Batch(self.task, move(self.x), move(self.lengths), move(self.langs), move(self.positions),
                     move(self.pred_mask), move(self.targets), self.causal)


def _as_batch(task: Task, raw: RawBatch, x: np.ndarray, pred_mask: np.ndarray, targets: np.ndarray,
              causal: bool) -> Batch:
    t = torch.from_numpy
    langs = raw.langs if isinstance(raw.langs, int) else t(raw.langs)
    positions = None if raw.positions is None else t(raw.positions)
    return Batch(task, t(x), t(raw.lengths), langs, positions, t(pred_mask), t(targets), causal)


class Masker:
    """MLM/TLM corruption; all randomness from the generator passed in."""

    def __init__(self, cfg: ObjectivesConfig, n_words: int, counts: Sequence[int] | None = None):
        if n_words <= N_SPECIAL:
            raise ValueError(f"vocabulary of {n_words} ids has no real words to predict")
        self.word_pred = cfg.word_pred
        self.p_mask, self.p_keep, _ = cfg.word_mask_keep_rand
        self.n_words = n_words
        self.sample_alpha = cfg.sample_alpha
        self.original = cfg.mlm_targets == "original"
        self.weights = None
        if self.sample_alpha > 0:
            raw = np.zeros(n_words) if counts is None else np.asarray(counts[:n_words], dtype=np.float64)
            c = np.ones(n_words) if counts is None else np.maximum(raw, 1)
            self.weights = c**-self.sample_alpha
            self.weights[:N_SPECIAL] = 0
            if self.original and counts is not None:  # the original's mask_scores: 0 for words never counted
                self.weights[raw == 0] = 0

    def select(self, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """Boolean mask of the positions to predict (only real words; at least one if any exists)."""
        if self.original:
            return self.select_original(x, gen)
        candidates = x >= N_SPECIAL  # excludes <pad>, </s>, <unk>, <mask> and the other specials
        if self.weights is None:
            sel = candidates & (gen.random(x.shape) < self.word_pred)
        else:
            flat = np.flatnonzero(candidates)
            k = math.ceil(self.word_pred * len(flat))
            sel = np.zeros(x.shape, dtype=bool)
            if k:
                # Weighted sampling without replacement (Efraimidis-Spirakis keys u^(1/w), top k).
                keys = np.log(gen.random(len(flat))) / self.weights[x.flat[flat]]
                sel.flat[flat[np.argpartition(-keys, k - 1)[:k]]] = True
        if not sel.any():
            flat = np.flatnonzero(candidates)
            if len(flat):
                sel.flat[flat[gen.integers(len(flat))]] = True
        return sel

    def select_original(self, x: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """The original trainer's ``mask_out`` selection: Bernoulli(``word_pred``) on every position
        (``</s>`` and ``<unk>`` included), or with ``sample_alpha`` exactly ``ceil(word_pred * x.size)``
        positions drawn in proportion to ``count^-sample_alpha`` (0 for specials); then padding and
        the first position of every row are unset. A batch may end up with no target."""
        if self.weights is None:
            sel = gen.random(x.shape) <= self.word_pred
        else:
            p = self.weights[x.ravel()]
            k = min(math.ceil(self.word_pred * x.size), int((p > 0).sum()))
            sel = np.zeros(x.size, dtype=bool)
            if k:
                sel[gen.choice(x.size, size=k, replace=False, p=p / p.sum())] = True
            sel = sel.reshape(x.shape)
        sel[x == PAD_INDEX] = False
        sel[:, 0] = False
        return sel

    def __call__(self, x: np.ndarray, gen: np.random.Generator,
                 train: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(corrupted x, pred_mask, targets)``; evaluation masks 100% of the selected tokens."""
        pred_mask = self.select(x, gen)
        targets = x[pred_mask]
        x = x.copy()
        if not train:
            x[pred_mask] = MASK_INDEX
            return x, pred_mask, targets
        u = gen.random(len(targets))
        noise = np.where(u < self.p_mask, MASK_INDEX, targets)
        rand = u >= self.p_mask + self.p_keep
        noise[rand] = gen.integers(0 if self.original else N_SPECIAL, self.n_words, size=int(rand.sum()))
        x[pred_mask] = noise
        return x, pred_mask, targets


def mlm_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, train: bool = True) -> Batch:
    """MLM on a stream batch or TLM on a pair batch."""
    x, pred_mask, targets = masker(raw.x, gen, train)
    return _as_batch(task, raw, x, pred_mask, targets, causal=False)


def clm_batch(task: Task, raw: RawBatch, context_size: int = 0) -> Batch:
    """Next-token prediction: position ``t`` (``context_size <= t < length-1``) predicts ``x[t+1]``."""
    col = np.arange(raw.x.shape[1])[None, :]
    pred_mask = (col < raw.lengths[:, None] - 1) & (col >= context_size)
    targets = raw.x[:, 1:][pred_mask[:, :-1]]
    return _as_batch(task, raw, raw.x, pred_mask, targets, causal=True)


def make_batch(task: Task, raw: RawBatch, masker: Masker, gen: np.random.Generator, context_size: int = 0,
               train: bool = True) -> Batch:
    if task.objective == "clm":
        return clm_batch(task, raw, context_size)
    return mlm_batch(task, raw, masker, gen, train)


# -- loss -----------------------------------------------------------------------------------------
def predict(model: nn.Module, batch: Batch) -> Tensor:
    """Scores ``(n_pred, n_words)`` for the predicted positions only."""
    h = model(batch.x, lengths=batch.lengths, langs=batch.langs, positions=batch.positions, causal=batch.causal)
    return getattr(model, "module", model).predict(h[batch.pred_mask])  # through a DDP wrapper too


def loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean cross-entropy over the predicted tokens (computed in fp32 under autocast)."""
    return F.cross_entropy(predict(model, batch).float(), batch.targets)


@torch.no_grad()
def score(model: nn.Module, batch: Batch) -> tuple[float, int, int]:
    """``(sum of cross-entropy, predicted tokens, correct argmax predictions)`` for evaluation."""
    logits = predict(model, batch).float()
    xent = F.cross_entropy(logits, batch.targets, reduction="sum")
    correct = (logits.argmax(-1) == batch.targets).sum()
    return float(xent), batch.n_pred, int(correct)
