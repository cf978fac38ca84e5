"""Learning-rate schedules against their formulas, scheduler state, weight-decay groups, clipping."""

from __future__ import annotations

import math

import pytest
import torch

from xlm.config import ModelConfig, OptimConfig
from xlm.model.transformer import TransformerModel
from xlm.optim import LRScheduler, build_optimizer, clip_grad_norm, lr_at


def test_inverse_sqrt_matches_the_original_formula():
    cfg = OptimConfig(schedule="inverse_sqrt", lr=1e-4, warmup_updates=4000, warmup_init_lr=1e-7, exp_factor=0.5)
    for n in (0, 1, 2000, 3999):
        assert lr_at(n, cfg, 10**6) == pytest.approx(1e-7 + n * (1e-4 - 1e-7) / 4000, rel=1e-12)
    for n in (4000, 4001, 16000, 10**6):
        assert lr_at(n, cfg, 10**6) == pytest.approx(1e-4 * 4000**0.5 * n**-0.5, rel=1e-12)
    assert lr_at(16000, cfg, 1) == pytest.approx(5e-5)  # halves when n quadruples; ignores max_steps
    cfg.exp_factor = 0.25
    assert lr_at(64000, cfg, 1) == pytest.approx(1e-4 * (4000 / 64000) ** 0.25)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_schedules_reach_min_lr_at_max_steps(schedule):
    cfg = OptimConfig(schedule=schedule, lr=1e-3, warmup_updates=100, warmup_init_lr=0.0, min_lr=1e-5)
    T = 1100
    assert lr_at(0, cfg, T) == 0.0
    assert lr_at(50, cfg, T) == pytest.approx(5e-4)
    assert lr_at(100, cfg, T) == pytest.approx(1e-3)
    assert lr_at(T, cfg, T) == pytest.approx(1e-5)
    assert lr_at(T + 500, cfg, T) == pytest.approx(1e-5)
    t = (600 - 100) / (T - 100)
    if schedule == "linear":
        expected = 1e-3 + (1e-5 - 1e-3) * t
    else:
        expected = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * t))
    assert lr_at(600, cfg, T) == pytest.approx(expected)
    values = [lr_at(n, cfg, T) for n in range(100, T + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone after warmup


def test_constant_schedule_and_no_warmup():
    cfg = OptimConfig(schedule="constant", lr=3e-4, warmup_updates=0)
    assert {lr_at(n, cfg, 10) for n in (0, 5, 1000)} == {3e-4}


def test_scheduler_sets_lr_per_update_and_round_trips():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([p])
    cfg = OptimConfig(schedule="inverse_sqrt", lr=1e-3, warmup_updates=10, warmup_init_lr=0.0)
    sched = LRScheduler(opt, cfg, 100)
    assert opt.param_groups[0]["lr"] == 0.0
    for _ in range(7):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(7e-4)
    other = LRScheduler(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]), cfg, 100)
    other.load_state_dict(sched.state_dict())
    assert other.n == 7 and other.optimizer.param_groups[0]["lr"] == pytest.approx(7e-4)


def test_weight_decay_groups():
    model = TransformerModel(ModelConfig(emb_dim=16, n_layers=1, n_heads=2), 40, 2)
    opt = build_optimizer(model, OptimConfig(optimizer="adamw", weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    n_unique = len({id(p) for p in model.parameters()})  # the tied output projection counts once
    assert len(decay["params"]) + len(no_decay["params"]) == n_unique
    (everything,) = build_optimizer(model, OptimConfig(optimizer="adam", weight_decay=0.1)).param_groups
    assert len(everything["params"]) == n_unique and everything["weight_decay"] == 0.1
    assert isinstance(opt, torch.optim.AdamW)


def test_decoupled_weight_decay_shrinks_weights_without_gradient_signal():
    w = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.zeros(4)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((4,), 1 - 0.1 * 0.5))


def test_clip_grad_norm_reports_norm_and_clips():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    total = math.sqrt(float(a.grad.square().sum() + b.grad.square().sum()))
    assert total == pytest.approx(1.0, rel=1e-5)
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert clip_grad_norm([a, b], 0.0) == pytest.approx(5.0) and float(b.grad) == 4.0  # 0 disables clipping
