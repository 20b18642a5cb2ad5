"""Learning-rate schedules as step -> lr functions, applied through torch's LambdaLR.

Step-0 convention: LambdaLR sets lr = schedule(0) when it is built, the first
optimizer.step() uses it, and each scheduler.step() after an optimizer step
moves to the next value, so update k uses schedule(k) exactly as in optax
(week1_jax.lib.schedules). With linear warmup from zero the first update has lr 0.
"""

from __future__ import annotations

import functools
import math

import torch


def _warmup(step: int, peak_lr: float, warmup_steps: int) -> float:
    """Linear ramp 0 -> peak_lr over warmup_steps (1 when warmup_steps == 0)."""
    return peak_lr * min(1.0, step / max(warmup_steps, 1))


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0):
    """Linear warmup, then cosine decay from peak_lr to final_lr at total_steps (held after)."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, peak_lr, warmup_steps)
        progress = min(max((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0), 1.0)
        return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return schedule


def warmup_linear(peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0):
    """Linear warmup, then linear decay from peak_lr to final_lr at total_steps (held after)."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, peak_lr, warmup_steps)
        progress = min(max((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0), 1.0)
        return peak_lr + (final_lr - peak_lr) * progress

    return schedule


def constant_with_warmup(peak_lr: float, warmup_steps: int):
    """Linear warmup, then peak_lr for ever."""

    def schedule(step: int) -> float:
        return _warmup(step, peak_lr, warmup_steps)

    return schedule


def inverse_sqrt(peak_lr: float, warmup_steps: int):
    """Linear warmup, then peak_lr * sqrt(warmup_steps / step) (Vaswani et al. 2017, fairseq)."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, peak_lr, warmup_steps)
        return peak_lr * math.sqrt(max(warmup_steps, 1) / max(step, 1))

    return schedule


def by_name(name: str, peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0):
    """The schedule called `name` (one of week1.charlm.SCHEDULES), given every argument any
    of them takes."""
    if name in ("warmup_cosine", "warmup_linear"):
        return globals()[name](peak_lr, warmup_steps, total_steps, final_lr)
    return globals()[name](peak_lr, warmup_steps)


def from_config(cfg):
    """The schedule a training config asks for: cfg.schedule from cfg.lr, warmup_steps, steps,
    final_lr."""
    return by_name(cfg.schedule, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr)


def lambda_lr(optimizer: torch.optim.Optimizer, schedule) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR that sets every group's lr to schedule(step).

    LambdaLR multiplies each group's initial lr by the lambda, so we set the
    initial lr to 1.0 and let the lambda return the lr itself: no division, and
    the applied lr is schedule(step) exactly. The lr is a float64 scalar tensor that
    LambdaLR fills in place: a compiled step reads it as data instead of recompiling for
    every new value.
    """
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(1.0, dtype=torch.float64)
        group.pop("initial_lr", None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
    # LambdaLR wrapped optimizer.step (to warn if scheduler.step() comes first) in
    # lr_scheduler.py, a file torch.compile does not trace: a compiled step broke its graph
    # at every optimizer.step(). The plain method instead, marked as wrapped; the order is
    # lib/train's (optimizer, then scheduler), which a compiled step cannot note itself.
    optimizer.step = functools.partial(type(optimizer).step, optimizer)
    optimizer.step._wrapped_by_lr_sched = True
    optimizer._opt_called = True
    return scheduler
