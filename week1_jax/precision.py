"""Precision policies for Flax models, applied from outside the model code.

A `Policy` says which dtype the parameters are stored in (the master weights
the optimizer updates), which dtype the layers compute in, and which dtype the
outputs and loss are taken in. `apply_policy` sets it on an existing model
through each layer's `dtype` / `param_dtype` attributes, so models.py stays
ignorant of precision (torchtitan style).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Policy:
    param_dtype: jnp.dtype     # master weights, what the optimizer updates
    compute_dtype: jnp.dtype   # matmuls and activations
    output_dtype: jnp.dtype    # logits and loss


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
            module.dtype = jnp.promote_types(policy.compute_dtype, jnp.float32) if norm else policy.compute_dtype
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p: p.astype(policy.param_dtype), params))
    return model
