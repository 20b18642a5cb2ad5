"""Losses several JAX labs share."""

from __future__ import annotations

import jax.numpy as jnp
import optax

IGNORE_INDEX = -100  # label of a padding position: contributes nothing to the loss


def masked_cross_entropy(logits, labels, ignore_index: int = IGNORE_INDEX):
    """Sum of token cross-entropies over real positions, and how many there are.

    logits (..., V), labels (...) int with `ignore_index` at padding. Returns
    (loss_sum, n_tokens): divide by the n_tokens of the *whole* batch, not per
    micro-batch (see the grad_accumulation lab).
    """
    real = labels != ignore_index  # (...)
    safe = jnp.where(real, labels, 0)  # (...)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, safe)  # (...)
    return jnp.sum(jnp.where(real, losses, 0.0)), jnp.sum(real)
