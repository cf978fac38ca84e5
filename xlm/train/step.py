"""One training step, with as few host synchronizations as the precision and optimizer allow.

A step takes its micro-batches from the prefetcher (:mod:`xlm.train.prefetch`), sums each drawn
task's predicted-token count over micro-batches and ranks (host numbers, reduced over a gloo group:
no device work), runs the batches one at a time (gradients reduced across ranks only on the last
backward) with loss ``lambda * (sum of cross-entropies) / (predicted tokens of the task, all
ranks)``; DDP/FSDP average gradients over ranks, hence the factor ``world_size``. It then clips and
makes one optimizer update.

**Host synchronizations** (``docs/performance.md`` has the list and the test that counts them).
Losses accumulate on the device; the per-step statistics (losses, gradient norm, finite flag) are
kept as device tensors and read on the host once per log interval (:meth:`StepMixin.resolve`), with
the stop flag (SIGTERM/SIGUSR1) all-reduced in the same collective. The update of a step whose loss or
gradient norm is not finite is skipped on the device when the optimizer is fused (its ``found_inf``
input, as the loss scaler uses it); the host learns it at the next resolve, then takes the update
back from the counters and the schedule and applies the divergence rule (``train.nan_tolerance``)
with the same messages. Steps after a skipped one within that log interval have used the schedule
one update ahead. Without a fused optimizer (the default on CPU, where a sync costs nothing) or
with fp16's loss scaler the decision is read on the host every step, and the step is resolved at
once: the behaviour of earlier versions, exactly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from xlm.data.sampling import TAG_DROPOUT, torch_seed
from xlm.distributed import all_reduce_sums, no_grad_sync
from xlm.errors import XLMError
from xlm.objectives import Task, prepare
from xlm.train.loss import mark_dynamic


@dataclass
class Pending:
    """A step whose statistics are still on the device."""

    step: int
    drawn: list[tuple[Task, float]]
    counts: list[float]  # predicted tokens per draw, all ranks
    tokens: int  # input tokens, all ranks
    xent: Tensor | None  # (len(drawn),) float64: sums of cross-entropies (this rank); None: nothing ran
    grad: Tensor | None  # (2,) float64: [gradient norm, update made (1) or skipped (0)], same on every rank
    assumed: bool  # counters and schedule already advanced as if the update was made


class StepMixin:
    """Part of :class:`xlm.train.trainer.Trainer` (split for size; it uses the trainer's attributes)."""

    def train_step(self) -> None:
        """One optimizer update (``accumulate_gradients`` micro-batches of every drawn task, on every rank).

        Its statistics reach ``self.interval`` when :meth:`resolve` reads them (at once when
        ``self.resolve_every_step``)."""
        cfg, st = self.cfg, self.state
        sb = self.prefetcher.get(st.step)
        self.sampler_states = sb.samplers
        torch.manual_seed(torch_seed(cfg.run.seed, TAG_DROPOUT, self.dist.rank, st.step))  # dropout
        self.optimizer.zero_grad(set_to_none=True)
        k = len(sb.drawn)
        local = {f"n{j}": 0.0 for j in range(k)} | {"tokens": 0.0}
        for m in sb.micro:
            local[f"n{m.j}"] += m.n_pred
            local["tokens"] += m.n_tokens
        sums = all_reduce_sums(local, torch.device("cpu"), self.host_group)
        counts = [sums[f"n{j}"] for j in range(k)]
        runnable = [m for m in sb.micro if counts[m.j] > 0]
        world = self.dist.world_size
        xent = torch.zeros(k, dtype=torch.float64, device=self.device) if runnable else None
        for i, m in enumerate(runnable):
            batch, index, segments = m.to(self.device)
            batch = prepare(self.eval_model, batch)  # an objective's model step without gradients (BTMLM generation)
            if self.train_model is not self.wrapped and segments is None:  # whole-model compile; packed: static
                mark_dynamic(batch, index)
            with no_grad_sync(self.wrapped, sync=i == len(runnable) - 1):
                with self.autocast():
                    value = self.train_model(batch, index, m.padded, segments)
                self.scaler.scale(value * (m.weight * world / counts[m.j])).backward()
            xent[m.j] += value.detach().double()
        grad, assumed = (self._update(xent) if runnable else (None, False))
        self.pending.append(Pending(st.step, sb.drawn, counts, int(sums["tokens"]), xent, grad, assumed))
        st.step += 1
        st.tokens += int(sums["tokens"])

    def _grad_norm(self) -> Tensor:
        """Clip in place; the total norm before clipping, a device tensor (no sync)."""
        max_norm = self.cfg.optim.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm if max_norm > 0 else float("inf"),
                                              foreach=None if self.fsdp else True)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # DTensor under FSDP2

    def _update(self, xent: Tensor) -> tuple[Tensor, bool]:
        """Clip and step unless the loss or the gradient norm is not finite; ``([norm, made], assumed)``.

        The norm is that of the reduced gradients and the loss flag is all-reduced, so every rank
        decides the same. With a fused optimizer and no loss scaler the decision stays on the device.
        """
        finite_loss = torch.isfinite(xent).all()
        if self.dist.distributed:
            bad = (~finite_loss).to(torch.float32)
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)  # a device collective, no host sync
            finite_loss = bad == 0
        if self.scaler.is_enabled():  # fp16: the scaler's own host logic (documented syncs)
            if not bool(finite_loss):
                return torch.tensor([math.nan, 0.0], dtype=torch.float64), False
            self.scaler.unscale_(self.optimizer)
            norm = self._grad_norm()
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skips the update itself when gradients overflowed
            self.scaler.update()
            if self.scaler.get_scale() >= scale:  # the update happened
                self.scheduler.step()
                self.state.updates += 1
            else:
                self.state.overflow_steps += 1
            return torch.stack([norm.double(), torch.ones((), dtype=torch.float64, device=norm.device)]), False
        norm = self._grad_norm()
        made = finite_loss & torch.isfinite(norm)
        grad = torch.stack([torch.where(finite_loss, norm.double(), math.nan), made.double()])
        if self.device_skip:
            self.optimizer.found_inf = (~made).to(torch.float32)  # the fused kernel skips the update on the device
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        elif bool(made):  # one host sync per step (free on CPU)
            self.optimizer.step()
        else:
            return grad, False
        self.scheduler.step()
        self.state.updates += 1
        return grad, True

    def resolve(self) -> bool:
        """Read the pending steps' statistics (one device-to-host copy; with several processes one
        all-reduce that carries the stop flag too), add them to ``self.interval``, apply the
        divergence rule; returns True when some rank received a stop signal."""
        pending, self.pending = self.pending, []
        stop = float(self.stop_signal.received is not None)
        parts = [p.xent for p in pending if p.xent is not None]
        device = parts[0].device if parts else self.device
        summed = torch.cat([*parts, torch.tensor([stop], dtype=torch.float64, device=device)])
        if self.dist.distributed:
            dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        grads = [p.grad.to(device) for p in pending if p.grad is not None]
        values = torch.cat([summed, *grads]).tolist()  # the one device-to-host copy
        xents, grad_values = values[:len(summed) - 1], values[len(summed):]
        for p in pending:
            x: list[float] = []
            g = [math.nan, 0.0]
            if p.xent is not None:
                x, xents = xents[:len(p.drawn)], xents[len(p.drawn):]
                g, grad_values = grad_values[:2], grad_values[2:]
            self.interval.add(self._outcome(p, x, g))
        return values[len(summed) - 1] > 0

    def _outcome(self, p: Pending, x: list[float], g: list[float]) -> dict[str, Any]:
        out: dict[str, Any] = {"loss": None, "tasks": defaultdict(list), "tokens": p.tokens, "predicted": 0,
                               "grad_norm": g[0]}
        weighted = total_weight = 0.0
        for j, (task, weight) in enumerate(p.drawn):
            n = p.counts[j]
            if n > 0:
                v = x[j] / n
                out["tasks"][task.name].append(v)
                weighted, total_weight = weighted + weight * v, total_weight + weight
                out["predicted"] += int(n)
        if total_weight > 0:  # the lambda-weighted mean: what is minimized is the weighted sum
            out["loss"] = weighted / total_weight
        out["tasks"] = {k: sum(v) / len(v) for k, v in out["tasks"].items()}
        finite = p.xent is None or g[1] > 0
        if not finite and p.assumed:  # skipped on the device: take the update back
            self.state.updates -= 1
            self.scheduler.undo()
        self._check_divergence(finite, p.step)
        return out

    def _check_divergence(self, finite: bool, step: int) -> None:
        st, tolerance = self.state, self.cfg.train.nan_tolerance
        if finite:
            st.nan_streak = 0
            return
        st.nan_streak += 1
        self.log.warning(f"step {step}: non-finite loss or gradient, update skipped "
                         f"({st.nan_streak} in a row; tolerance {tolerance})")
        if st.nan_streak > tolerance:
            raise XLMError(f"training diverged: {st.nan_streak} consecutive steps with a non-finite loss or "
                           "gradient (lower optim.lr, raise optim.warmup_updates, or use fp32)")
