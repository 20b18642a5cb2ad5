"""Precision policies for Flax models, applied from outside the model code.

A `Policy` says which dtype the parameters are stored in (the master weights
the optimizer updates), which dtype the layers compute in, and which dtype the
outputs and loss are taken in. `apply_policy` sets it on an existing model
through each layer's `dtype` / `param_dtype` attributes, so models.py stays
ignorant of precision (torchtitan style). Also here: the number-format table
and dynamic loss scaling for fp16 (`DynamicLossScale`), written out.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Policy:
    param_dtype: jnp.dtype  # master weights, what the optimizer updates
    compute_dtype: jnp.dtype  # matmuls and activations
    output_dtype: jnp.dtype  # logits and loss


FP32 = Policy(jnp.float32, jnp.float32, jnp.float32)
BF16 = Policy(jnp.float32, jnp.bfloat16, jnp.float32)
FP16 = Policy(jnp.float32, jnp.float16, jnp.float32)
FP64 = Policy(jnp.float64, jnp.float64, jnp.float64)  # the F64 parity tier; needs jax.enable_x64
POLICIES = {"fp32": FP32, "bf16": BF16, "fp16": FP16}


def apply_policy(model: nnx.Module, policy: Policy) -> nnx.Module:
    """Cast the parameters to policy.param_dtype and set each layer's compute dtype, in place.

    Norm layers compute in float32 whatever the policy (their statistics lose
    too much in 8 mantissa bits): the same choice torch.autocast makes for
    layer_norm, so the two frameworks round at the same places.
    """
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "param_dtype"):
            module.param_dtype = policy.param_dtype
        if hasattr(module, "dtype"):
            norm = isinstance(module, nnx.LayerNorm)
            module.dtype = (
                jnp.promote_types(policy.compute_dtype, jnp.float32)
                if norm
                else policy.compute_dtype
            )
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p: p.astype(policy.param_dtype), params))
    return model


def number_formats(names) -> list[tuple]:
    """(format, bits, max, smallest normal, machine epsilon) for each format name ("float16",
    ...), from jnp.finfo."""
    rows = []
    for name in names:
        info = jnp.finfo(jnp.dtype(name))
        rows.append(
            (name, info.bits, float(info.max), float(info.smallest_normal), float(info.eps))
        )
    return rows


class LossScaleState(NamedTuple):
    scale: jax.Array  # float32: the loss is multiplied by this before the backward pass
    growth_tracker: jax.Array  # int32: consecutive steps with finite gradients (GradScaler's name)


@dataclasses.dataclass(frozen=True)
class DynamicLossScale:
    r"""Dynamic loss scaling for fp16, written out; the same rule as torch.amp.GradScaler.

    fp16 has 5 exponent bits: gradients below ~6e-8 flush to zero. Multiplying
    the loss by S shifts every gradient up by S (the chain rule is linear), so
    small gradients survive the fp16 backward; dividing by S in fp32 afterwards
    gives the true gradient. S is chosen on the fly::

        g = grad(S * loss) / S                          (unscale, in fp32)
        if g has a NaN/Inf:  skip the update;  S <- S * backoff_factor;  n <- 0
        else:                update;  n <- n + 1
                             if n == growth_interval:  S <- S * growth_factor;  n <- 0

    The defaults are GradScaler's (init 2^16, x2 every 2000 good steps, /2 on overflow).
    """

    init_scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000

    def init(self) -> LossScaleState:
        return LossScaleState(jnp.asarray(self.init_scale, jnp.float32), jnp.zeros([], jnp.int32))

    def scale(self, state: LossScaleState, loss):
        return loss * state.scale.astype(loss.dtype)

    def unscale(self, state: LossScaleState, grads):
        """grads * (1 / S) in float32, as GradScaler (one reciprocal, then multiplies)."""
        inv_scale = 1.0 / state.scale
        return jax.tree.map(lambda g: (g.astype(jnp.float32) * inv_scale).astype(g.dtype), grads)

    def update(self, state: LossScaleState, finite) -> LossScaleState:
        """The next scale and tracker after a step whose gradients were `finite` (a bool array)."""
        good = state.growth_tracker + 1
        grow = finite & (good == self.growth_interval)
        grown = state.scale * self.growth_factor
        scale = jnp.where(
            finite,
            jnp.where(grow & jnp.isfinite(grown), grown, state.scale),
            state.scale * self.backoff_factor,
        )
        tracker = jnp.where(finite & ~grow, good, 0)
        return LossScaleState(scale.astype(jnp.float32), tracker.astype(jnp.int32))


def all_finite(tree):
    """True when no leaf holds a NaN or Inf (one bool array)."""
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def select_tree(pred, on_true, on_false):
    """Leafwise jnp.where(pred, a, b): how a jitted step keeps the old state when it must skip."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
