"""Learning-rate schedules as optax schedules (step -> lr, traceable with jnp).

Step-0 convention: optax evaluates a schedule at the optimizer's count *before*
it is incremented, so the first update uses schedule(0). With linear warmup from
zero that first update has lr 0. The torch versions (week1_torch.lib.schedules)
follow the same convention through LambdaLR.
"""

from __future__ import annotations

import jax.numpy as jnp


def _float(step):
    """The step as the default float (float64 under x64): an int32 count would make the lr
    float32."""
    return jnp.asarray(step, dtype=jnp.result_type(float))


def _warmup(step, peak_lr: float, warmup_steps: int):
    """Linear ramp 0 -> peak_lr over warmup_steps (1 when warmup_steps == 0)."""
    return peak_lr * jnp.minimum(1.0, step / max(warmup_steps, 1))


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0):
    """Linear warmup, then cosine decay from peak_lr to final_lr at total_steps (held after)."""

    def schedule(step):
        step = _float(step)
        progress = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
        cosine = final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup_steps, _warmup(step, peak_lr, warmup_steps), cosine)

    return schedule


def warmup_linear(peak_lr: float, warmup_steps: int, total_steps: int, final_lr: float = 0.0):
    """Linear warmup, then linear decay from peak_lr to final_lr at total_steps (held after)."""

    def schedule(step):
        step = _float(step)
        progress = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
        linear = peak_lr + (final_lr - peak_lr) * progress
        return jnp.where(step < warmup_steps, _warmup(step, peak_lr, warmup_steps), linear)

    return schedule


def constant_with_warmup(peak_lr: float, warmup_steps: int):
    """Linear warmup, then peak_lr for ever."""

    def schedule(step):
        step = _float(step)
        return _warmup(step, peak_lr, warmup_steps)

    return schedule


def inverse_sqrt(peak_lr: float, warmup_steps: int):
    """Linear warmup, then peak_lr * sqrt(warmup_steps / step) (Vaswani et al. 2017, fairseq)."""

    def schedule(step):
        step = _float(step)
        decay = peak_lr * jnp.sqrt(max(warmup_steps, 1) / jnp.maximum(step, 1))
        return jnp.where(step < warmup_steps, _warmup(step, peak_lr, warmup_steps), decay)

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
