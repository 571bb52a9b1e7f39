"""Optimisers and learning-rate schedules, built from :class:`mnistlab.config.OptimConfig`.

Schedules are per *step* (one optimiser update), so the learning rate changes smoothly inside an epoch and
the same recipe works for any batch size. They are ``LambdaLR`` multipliers of the peak ``lr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from mnistlab.config import OptimConfig
from mnistlab.errors import ConfigError


def _can_fuse(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused (one kernel per step) optimiser implementation applies to these parameters."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def _sgd(params: list[nn.Parameter], cfg: OptimConfig, fused: bool) -> torch.optim.Optimizer:
    # torch's SGD: v <- momentum * v + (g + wd * p); p <- p - lr * (g + momentum * v if nesterov else v)
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        fused=fused,
    )


def _adam(params: list[nn.Parameter], cfg: OptimConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def _adamw(params: list[nn.Parameter], cfg: OptimConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


# Keyed by the names of mnistlab.config.OptimizerName; a test checks that the two agree.
OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], OptimConfig, bool], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
}


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    # The fused implementations update every parameter in one multi-threaded kernel instead of a chain of
    # per-tensor elementwise ops (torch's CPU default). Same update rule; on the 2-core CPU the default Adam
    # step was about a third of an mlp training step at batch 256 (torch.profiler), and fusing it made the
    # step ~20 % faster; the cnn's SGD step gains less (~1 ms of a ~14 ms step). BENCHMARKS.md has the figures.
    return OPTIMIZERS[cfg.optimizer](params, cfg, _can_fuse(params))


# ---- schedules: f(step) -> multiplier of the peak lr, for step = 0 .. total_steps - 1 -------------------
Multiplier = Callable[[int], float]


def _constant(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> Multiplier:
    return lambda step: 1.0


def _step(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> Multiplier:
    # torch's StepLR, stepped once per epoch: x gamma every step_size epochs
    return lambda step: cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)


def _cosine(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> Multiplier:
    # torch's CosineAnnealingLR with T_max = total_steps - 1: from 1 down to final_lr_fraction at the last step
    final = cfg.final_lr_fraction

    def cosine(step: int) -> float:
        t = min(step / max(total_steps - 1, 1), 1.0)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))

    return cosine


def _onecycle(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> Multiplier:
    # Linear warm-up from peak/10 to the peak, then linear decay to `final`. The short high-lr phase is
    # what lets a small CNN reach 99 % in a few epochs. This is torch's OneCycleLR (linear annealing,
    # div_factor 10) one step later: the peak is reached at step `warm`, not `warm - 1`, and the decay ends
    # one step after the last (the last step's lr is one decay step above `final`).
    final = cfg.final_lr_fraction
    warm = max(1, round(cfg.warmup * total_steps))
    start = 1 / 10

    def onecycle(step: int) -> float:
        if step < warm:
            return start + (1 - start) * step / warm
        t = min((step - warm) / max(total_steps - warm, 1), 1.0)
        return 1 - (1 - final) * t

    return onecycle


# Keyed by the names of mnistlab.config.ScheduleName; a test checks that the two agree.
SCHEDULES: dict[str, Callable[[OptimConfig, int, int], Multiplier]] = {
    "constant": _constant,
    "step": _step,
    "cosine": _cosine,
    "onecycle": _onecycle,
}


def lr_multiplier(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> Multiplier:
    """Return f(step) -> multiplier of the peak lr, for step = 0 .. total_steps - 1."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    return SCHEDULES[cfg.schedule](cfg, steps_per_epoch, total_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    fn = lr_multiplier(cfg, steps_per_epoch, steps_per_epoch * epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
