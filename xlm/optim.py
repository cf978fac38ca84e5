"""AdamW and the learning-rate schedules (the original's ``inverse_sqrt`` plus linear / cosine / constant).

Weight decay is decoupled (AdamW), as the original's custom Adam. With ``optimizer: adamw``
biases and LayerNorm weights (every 1-D parameter) are exempt from decay, the usual BERT recipe;
``optimizer: adam`` decays every parameter like the original. One difference in the arithmetic:
torch adds ``eps`` to the bias-corrected ``sqrt(v_hat)`` where the original adds it to ``sqrt(v)``;
with eps at 1e-6..1e-8 the two agree except in the very first updates of near-zero gradients.

Schedules are pure functions of ``n``, the number of optimizer updates already made (the update
``n + 1`` uses ``lr(n)``), so the scheduler's whole state is ``n``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from xlm.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float, decay_1d: bool) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():  # tied weights are yielded once
        if not p.requires_grad:
            continue
        (decay if decay_1d or p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def use_fused(cfg: OptimConfig, device: torch.device) -> bool:
    """``optim.implementation``: ``auto`` is torch's fused AdamW kernel on CUDA (one kernel for every
    parameter, and updates skipped on the device), ``foreach`` elsewhere (the CPU's exact numbers)."""
    return cfg.implementation == "fused" or (cfg.implementation == "auto" and device.type == "cuda")


def build_optimizer(model: nn.Module | list[tuple[nn.Module, float]], cfg: OptimConfig,
                    device: torch.device | None = None) -> torch.optim.Optimizer:
    """AdamW over ``model``; a list of ``(module, lr_scale)`` gives each module its own learning rate
    (``lr_scale`` times the schedule's), as fine-tuning does for the encoder and the task head.
    ``device``: where the parameters are, for ``optim.implementation: auto`` (None: CPU)."""
    if isinstance(model, nn.Module):
        groups = param_groups(model, cfg.weight_decay, decay_1d=cfg.optimizer == "adam")
    else:
        groups = [{**g, "lr_scale": scale} for module, scale in model
                  for g in param_groups(module, cfg.weight_decay, decay_1d=cfg.optimizer == "adam") if g["params"]]
    fused = use_fused(cfg, device or torch.device("cpu"))
    return torch.optim.AdamW(groups, lr=lr_at(0, cfg, 1), betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=True if fused else None)


def lr_at(n: int, cfg: OptimConfig, max_steps: int) -> float:
    """Learning rate of update ``n + 1`` (``n`` updates done).

    Warmup (``n < W``): ``init + n * (lr - init) / W`` for every schedule. Then:
    ``inverse_sqrt``: ``lr * W^e * n^-e``; ``linear``: ``lr -> min_lr`` at ``max_steps``;
    ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2``, ``t = (n - W) / (max_steps - W)``;
    ``constant``: ``lr``.
    """
    w, peak, init = cfg.warmup_updates, cfg.lr, cfg.warmup_init_lr
    if n < w:
        return init + n * (peak - init) / w
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "inverse_sqrt":
        e = cfg.exp_factor
        return peak * max(w, 1) ** e * max(n, 1) ** -e
    t = min(1.0, (n - w) / max(1, max_steps - w))
    if cfg.schedule == "linear":
        return peak + (cfg.min_lr - peak) * t
    if cfg.schedule == "cosine":
        return cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


class LRScheduler:
    """Sets the learning rate of every parameter group before each update; state is the update count.

    A group's ``lr_scale`` (default 1) multiplies the scheduled rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
        self.optimizer, self.cfg, self.max_steps = optimizer, cfg, max_steps
        self.n = 0
        self._apply()

    @property
    def lr(self) -> float:
        return lr_at(self.n, self.cfg, self.max_steps)

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        """Call after ``optimizer.step()``."""
        self.n += 1
        self._apply()

    def undo(self) -> None:
        """Take back the last :meth:`step` (an update the device skipped, learnt afterwards)."""
        self.n -= 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {"n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.n = int(state["n"])
        self._apply()


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """Total gradient norm before clipping; clips in place when ``max_norm > 0``."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"), foreach=True)
    return float(norm)
