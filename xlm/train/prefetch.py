"""The data path of a training step, run ahead of the device: task draw, batch reads, masking, tensors.

:class:`StepBuilder` makes every micro-batch of step ``s`` on the host (numpy, then tensors; pinned
memory when the device is CUDA, so the copies in the step are ``non_blocking``). What it draws depends
only on ``(seed, rank, step)`` and the samplers' position, so building step ``s`` in a background
thread gives exactly the batches and masks the step would have built itself.

:class:`Prefetcher` runs the builder in one background thread, at most ``depth`` steps ahead (a
bounded queue). The samplers then run ahead of training: each built step carries the samplers'
state *after* its batches were read, and checkpoints store the state of the last step trained
(:attr:`StepBatches.samplers`), so a resumed run replays the same batches (exact resume).
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from xlm.data.packing import PackedPairSampler, pack_pairs, packed
from xlm.data.sampling import TAG_MASK, TAG_OBJECTIVES, rng
from xlm.objectives import Batch, Masker, Task, TaskDrawer, make_batch

IGNORE_INDEX = -100  # targets of the padding of a fixed-capacity prediction index (cross_entropy's default)


@dataclass
class MicroBatch:
    """One task's batch of a step, with what the step needs to know about it without a device sync."""

    j: int  # index of the task in the step's draw
    task: Task
    weight: float  # the objective's lambda at this step
    batch: Batch
    pred_index: Tensor  # (n_pred or capacity,) int64: row-major flat indices of the predicted positions (pred_mask)
    padded: bool  # some row is shorter than the batch's sequence length
    n_tokens: int  # input tokens (sum of lengths)
    n_pred: int  # predicted positions
    segments: Tensor | None = None  # (bs, slen) int64 packed rows' example ids (0: padding); None: unpacked

    def to(self, device: torch.device) -> tuple[Batch, Tensor, Tensor | None]:
        """Batch, prediction index and segments on ``device`` (asynchronous copies from pinned memory)."""
        if device.type == "cpu":
            return self.batch, self.pred_index, self.segments
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return self.batch.to(device), move(self.pred_index), move(self.segments)


@dataclass
class StepBatches:
    step: int
    drawn: list[tuple[Task, float]]
    micro: list[MicroBatch]  # accumulate_gradients rounds of the drawn tasks, in the order they run
    samplers: dict[str, dict[str, int]]  # every task's sampler state once this step's batches are read


class StepBuilder:
    """Builds the micro-batches of a step (see the module docstring); not thread-safe: one user at a time."""

    def __init__(self, drawer: TaskDrawer, sources: dict, masker: Masker, seed: int, rank: int,
                 accumulate: int, context_size: int, pin: bool, pack_len: int = 0,
                 warn: Callable[[str], None] = warnings.warn):
        """``pack_len > 0``: MLM pair batches (TLM) are packed into rows of that many tokens, as many rows as
        the task's sampler cuts batches for (``pack_rows``, :class:`xlm.data.packing.PackedPairSampler`)
        (:mod:`xlm.data.packing`; a batch needing more rows takes them, and ``warn`` says so), and every
        MLM batch's prediction index has a fixed capacity (:func:`pred_capacity`), padded with the ignore
        index."""
        self.drawer, self.sources, self.masker, self.pack_len = drawer, sources, masker, pack_len
        self.seed, self.rank, self.accumulate, self.context_size, self.pin = seed, rank, accumulate, context_size, pin
        self.warn = warn
        self.pack_rows = {t: s.sampler.rows for t, s in sources.items() if isinstance(s.sampler, PackedPairSampler)}

    def build(self, step: int) -> StepBatches:
        drawn = self.drawer.draw(step, rng(self.seed, TAG_OBJECTIVES, step))  # same on every rank
        micro = []
        for m in range(self.accumulate):
            for j, (task, weight) in enumerate(drawn):
                raw = self.sources[task].next()
                segments = None
                if self.pack_len and packed(task):
                    n_pairs = len(raw.lengths)
                    rows = self.pack_rows.get(task, 0)
                    raw, seg = pack_pairs(raw, self.pack_len, rows)
                    if len(seg) != rows:  # not cut by PackedPairSampler: never in training
                        self.warn(f"data.pack: step {step}: {n_pairs} pairs of task {task.name} need more than "
                                  f"{rows} rows of {self.pack_len} tokens: this batch takes {len(seg)} "
                                  "rows (another shape: a recompilation under train.compile)")
                    segments = torch.from_numpy(seg).pin_memory() if self.pin else torch.from_numpy(seg)
                gen = rng(self.seed, TAG_MASK, self.rank, step, m, j)
                batch = make_batch(task, raw, self.masker, gen, self.context_size)
                if isinstance(batch.langs, int):  # a tensor: torch.compile would specialize on the id
                    batch.langs = torch.tensor(batch.langs)
                pred = np.flatnonzero(batch.pred_mask.numpy())
                n_pred = len(pred)
                if self.pack_len and task.objective == "mlm":
                    cap = max(n_pred, pred_capacity(self.masker.word_pred, batch.x.numel()))
                    pred = np.concatenate([pred, np.zeros(cap - n_pred, dtype=pred.dtype)])
                    targets = torch.cat([batch.targets, torch.full((cap - n_pred,), IGNORE_INDEX)])
                    batch = dataclasses.replace(batch, targets=targets)
                if self.pin:
                    batch = _pinned(batch)
                index = torch.from_numpy(pred)
                micro.append(MicroBatch(j, task, weight, batch, index.pin_memory() if self.pin else index,
                                        # packed: always "padded" (the same values when no row is: one graph)
                                        segments is not None or bool(raw.lengths.min() < raw.x.shape[1]),
                                        int(raw.lengths.sum()), n_pred,
                                        segments))
        samplers = {t.name: s.sampler.state_dict() for t, s in self.sources.items()}
        return StepBatches(step, drawn, micro, samplers)


def pred_capacity(word_pred: float, n_positions: int) -> int:
    """Predicted positions a batch of ``n_positions`` has room for: the expected count of Bernoulli(
    ``word_pred``) selection plus 4 standard deviations, in a multiple of 8 (32 x 256 tokens at 0.15:
    1,360; 16 x 64: 200), so the output layer's input keeps one shape. A batch selecting more (about
    3 in 100,000) keeps them all and takes a larger shape."""
    mean = word_pred * n_positions
    return max(8, math.ceil((mean + 4 * math.sqrt(mean * (1 - word_pred))) / 8) * 8)


def _pinned(b: Batch) -> Batch:
    return b.map(Tensor.pin_memory)


class Prefetcher:
    """Builds steps ``start, start+1, ...`` in a background thread, at most ``depth`` ahead.

    ``depth == 0`` builds each step on demand in the calling thread (no thread). An error raised while
    building (e.g. a corrupt corpus) is raised again by :meth:`get`.
    """

    def __init__(self, builder: StepBuilder, start: int, depth: int):
        self.builder, self.next_step, self.depth = builder, start, depth
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = None
        if depth > 0:
            self._thread = threading.Thread(target=self._run, args=(start,), name="xlm-prefetch", daemon=True)
            self._thread.start()

    def _run(self, step: int) -> None:
        while not self._stop.is_set():
            try:
                item: StepBatches | BaseException = self.builder.build(step)
            except BaseException as e:  # handed to the training thread
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            step += 1

    def get(self, step: int) -> StepBatches:
        if step != self.next_step:
            raise RuntimeError(f"prefetcher asked for step {step}, next built step is {self.next_step}")
        self.next_step += 1
        if self._thread is None:
            return self.builder.build(step)
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
