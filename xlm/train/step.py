"""One training step: micro-batches of the drawn tasks, backward, clipping, the update, divergence."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch

from xlm.data.sampling import TAG_DROPOUT, TAG_MASK, TAG_OBJECTIVES, rng, torch_seed
from xlm.distributed import (
    all_reduce_sums,
    no_grad_sync,
)
from xlm.errors import XLMError
from xlm.objectives import Batch, Task, make_batch
from xlm.optim import clip_grad_norm


class StepMixin:
    """Part of :class:`xlm.train.trainer.Trainer` (split for size; it uses the trainer's attributes)."""

    def train_step(self) -> dict[str, Any]:
        """One optimizer update (``accumulate_gradients`` micro-batches of every drawn task, on every rank)."""
        cfg, st = self.cfg, self.state
        torch.manual_seed(torch_seed(cfg.run.seed, TAG_DROPOUT, self.dist.rank, st.step))  # dropout
        drawn = self.drawer.draw(st.step, rng(cfg.run.seed, TAG_OBJECTIVES, st.step))  # same on every rank
        self.optimizer.zero_grad(set_to_none=True)
        out = self._forward_backward(drawn)
        finite = out["finite"]
        out["grad_norm"] = float("nan")
        if finite and out["tasks"]:  # (no task at all when every lambda is 0 at this step)
            out["grad_norm"] = self._update()
            finite = math.isfinite(out["grad_norm"]) or self.scaler.is_enabled()
        self._check_divergence(finite)
        st.step += 1
        st.tokens += out["tokens"]
        out["tasks"] = {k: sum(v) / len(v) for k, v in out["tasks"].items()}
        return out

    def _forward_backward(self, drawn: list[tuple[Task, float]]) -> dict[str, Any]:
        """Backpropagate ``lambda * (sum of cross-entropies) / (predicted tokens of the task, all ranks)``.

        Every micro-batch of the step is built first (cheap: token ids), the predicted-token count of
        each drawn task is summed over micro-batches and ranks (one all-reduce), then the batches are
        run one at a time, gradients reduced across ranks only on the last backward. DDP/FSDP average
        gradients over ranks, hence the factor ``world_size``. Losses, token counts, the non-finite
        flag and the stop flag are then summed over ranks in a second single all-reduce.
        """
        cfg, step = self.cfg, self.state.step
        world = self.dist.world_size
        plan: list[tuple[int, Task, float, Batch]] = []
        local = defaultdict(float)
        for micro in range(cfg.train.accumulate_gradients):
            for j, (task, weight) in enumerate(drawn):
                raw = self.data.sources[task].next()
                gen = rng(cfg.run.seed, TAG_MASK, self.dist.rank, step, micro, j)
                batch = make_batch(task, raw, self.train_masker, gen, cfg.objectives.context_size).to(self.device)
                plan.append((j, task, weight, batch))
                local[f"n{j}"] += batch.n_pred
                local["tokens"] += batch.n_tokens
        counts = all_reduce_sums(dict(local), self.device)
        runnable = [p for p in plan if counts[f"n{p[0]}"] > 0]
        xent = defaultdict(float)
        for i, (j, _task, weight, batch) in enumerate(runnable):
            with no_grad_sync(self.wrapped, sync=i == len(runnable) - 1):
                with self.autocast():
                    value = self.train_model(batch)
                self.scaler.scale(value * (weight * world / counts[f"n{j}"])).backward()
            xent[f"x{j}"] += float(value.detach())
        sums = {**{f"x{j}": xent[f"x{j}"] for j in range(len(drawn))},
                "bad": float(not all(math.isfinite(v) for v in xent.values())),
                "stop": float(self.stop_signal.received is not None)}
        sums = all_reduce_sums(sums, self.device)
        out: dict[str, Any] = {"loss": None, "tasks": defaultdict(list), "tokens": int(counts.get("tokens", 0)),
                               "predicted": 0, "finite": sums["bad"] == 0, "stop": sums["stop"] > 0}
        weighted = total_weight = 0.0
        for j, (task, weight) in enumerate(drawn):
            n = counts[f"n{j}"]
            if n > 0:
                v = sums[f"x{j}"] / n
                out["tasks"][task.name].append(v)
                weighted, total_weight = weighted + weight * v, total_weight + weight
                out["predicted"] += int(n)
        if total_weight > 0:  # the lambda-weighted mean: what is minimized is the weighted sum
            out["loss"] = weighted / total_weight
        return out

    def _clip(self) -> float:
        if not self.fsdp:
            return clip_grad_norm(self.params, self.cfg.optim.clip_grad_norm)
        max_norm = self.cfg.optim.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm if max_norm > 0 else float("inf"))
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # DTensor under FSDP2

    def _update(self) -> float:
        """Clip and step; returns the gradient norm before clipping (the update is skipped if not finite).

        The norm is that of the reduced gradients, identical on every rank, so all ranks skip together.
        """
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip()
        if not (math.isfinite(grad_norm) or self.scaler.is_enabled()):
            return grad_norm
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(self.optimizer)  # with fp16, skips the update itself when gradients overflowed
        self.scaler.update()
        if not self.scaler.is_enabled() or self.scaler.get_scale() >= scale:  # the update happened
            self.scheduler.step()
            self.state.updates += 1
        else:
            self.state.overflow_steps += 1
        return grad_norm

    def _check_divergence(self, finite: bool) -> None:
        st, tolerance = self.state, self.cfg.train.nan_tolerance
        if finite:
            st.nan_streak = 0
            return
        self.optimizer.zero_grad(set_to_none=True)
        st.nan_streak += 1
        self.log.warning(f"step {st.step}: non-finite loss or gradient, update skipped "
                         f"({st.nan_streak} in a row; tolerance {tolerance})")
        if st.nan_streak > tolerance:
            raise XLMError(f"training diverged: {st.nan_streak} consecutive steps with a non-finite loss or "
                           "gradient (lower optim.lr, raise optim.warmup_updates, or use fp32)")
