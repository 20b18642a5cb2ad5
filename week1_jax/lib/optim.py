"""AdamW from scratch, as an optax GradientTransformation built from jnp ops.

Checked against optax.adamw in parity_tests/test_adamw.py (F64 tier).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class AdamWState(NamedTuple):
    count: jax.Array  # number of updates applied so far (int32)
    mu: optax.Updates  # first moment, like params
    nu: optax.Updates  # second moment, like params


def adamw(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    mask=None,
) -> optax.GradientTransformation:
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.

    For gradient :math:`g_t` at update :math:`t = 1, 2, \dots` and learning rate
    :math:`\eta_t` = ``learning_rate(t - 1)`` (a schedule sees the count before
    the increment, as in optax)::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        v_t = b2 v_{t-1} + (1 - b2) g_t^2
        u_t = -eta_t ( (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps) + lambda * d * p_{t-1} )

    where ``d`` is 1 for decayed parameters and 0 for masked ones. ``eps`` sits
    outside the square root, as in optax and torch.optim.AdamW.

    Args:
      learning_rate: a float, or a schedule ``count -> lr``.
      b1, b2: decay rates of the first and second moments.
      eps: added to the denominator for numerical stability.
      weight_decay: lambda, the decoupled decay rate (optax's default is 1e-4,
        torch's 1e-2: ours is torch's, and tests always pass it).
      mask: a pytree of bools like the params, or a function params -> such a
        tree; True where weight decay applies. None decays everything.

    Returns:
      An ``optax.GradientTransformation``; its updates are added to the params
      (``optax.apply_updates``).
    """

    def init_fn(params):
        return AdamWState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(jnp.zeros_like, params),
        )

    def update_fn(grads, state, params):
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        decay = mask(params) if callable(mask) else mask
        if decay is None:
            decay = jax.tree.map(lambda _: True, params)

        def update(m, v, p, d):
            m_hat = m / (1 - b1 ** count.astype(m.dtype))
            v_hat = v / (1 - b2 ** count.astype(v.dtype))
            return -lr * (m_hat / (jnp.sqrt(v_hat) + eps) + weight_decay * d * p)

        updates = jax.tree.map(update, mu, nu, params, decay)
        return updates, AdamWState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def decay_mask(params):
    """True for matrices (kernels, embeddings), False for biases and norm scales (ndim < 2)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)
