r"""LoRA (Hu et al., 2021), written out in Flax nnx: a frozen Linear plus a trained low-rank
update.

    y = x W + b + (alpha / r) (x A) B        W (in, out), b: the pretrained layer, frozen
                                             A (in, r), B (r, out): the adapter, trained

B starts at zero, so the adapted model starts as the pretrained one; A starts
random (U(-1/sqrt(in), 1/sqrt(in)), PEFT's kaiming_uniform with a = sqrt(5)), so
B's first gradient is not zero. Only r (in + out) numbers per adapted layer
train, against in * out for the layer itself; alpha / r scales the update so
that changing r does not change the effective learning rate much. After
training, W + (alpha / r) A B can be merged into one matrix (no cost at
inference). PEFT's LoraConfig(r, lora_alpha, target_modules) is the same
construction in torch: its adapter file holds lora_A (r, in) and lora_B
(out, r), the transposes of A and B (labs/environment.py's lora_map).

Reference: Hu et al. (2021), "LoRA: Low-Rank Adaptation of Large Language Models",
arXiv:2106.09685; peft/tuners/lora/layer.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class LoRAParam(nnx.Param):
    """An adapter factor: the parameters LoRA trains (an nnx.Param, so Param filters see it)."""


class LoRALinear(nnx.Module):
    """A pretrained nnx.Linear (`base`, frozen by the optimizer's filter) plus (alpha / r) x A B."""

    def __init__(self, base: nnx.Linear, rank: int, alpha: float, *, rngs: nnx.Rngs):
        fan_in, fan_out = base.in_features, base.out_features
        self.base = base
        bound = fan_in**-0.5
        self.lora_a = LoRAParam(
            jax.random.uniform(rngs.params(), (fan_in, rank), jnp.float32, -bound, bound)
        )
        self.lora_b = LoRAParam(jnp.zeros((rank, fan_out), jnp.float32))
        self.scaling = alpha / rank

    def __call__(self, x):  # x: (..., in) -> (..., out)
        # PEFT's order of operations: base(x) + lora_B(lora_A(x)) * scaling.
        return self.base(x) + (x @ self.lora_a[...]) @ self.lora_b[...] * self.scaling


def add_lora(encoder, targets: tuple[str, ...], rank: int, alpha: float, rngs: nnx.Rngs) -> None:
    """Wrap the attention projections named in `targets` (query, key, value) of every layer of
    a week1_jax.lib.bert encoder in LoRALinear, in place."""
    for layer in encoder.encoder.layer:
        attention = layer.attention.self
        for name in targets:
            setattr(attention, name, LoRALinear(getattr(attention, name), rank, alpha, rngs=rngs))
