"""Static word-embedding updates in JAX: negative sampling (word2vec skip-gram and CBOW,
FastText) and GloVe's AdaGrad step, as sparse row updates of the embedding matrices.

The batches come from week1.data.embeddings (its docstring has the layouts). Read beside
week1_torch/lib/embeddings.py: the same functions, the same maths (the maths is written out
there). The updates are pure functions of the matrices; `jax.jit(..., donate_argnums=...)`
lets XLA write the scattered rows (`.at[].add`) into the donated buffers in place.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def negative_sampling_loss(w_in, w_out, inputs, in_weights, outputs, labels, out_weights):
    """L (a sum over the batch) and the scores f (B, T)."""
    h = jnp.einsum("bs,bsc->bc", in_weights, w_in[inputs])  # (B, C)
    f = jnp.einsum("bc,btc->bt", h, w_out[outputs])  # (B, T)
    signed = jnp.where(labels > 0, f, -f)
    return -(out_weights * jax.nn.log_sigmoid(signed)).sum(), f


@functools.partial(jax.jit, donate_argnums=(0, 1))
def negative_sampling_update(w_in, w_out, inputs, in_weights, outputs, labels, out_weights, lr):
    """One SGD step on w_in (R, C) and w_out (V, C); returns (w_in, w_out, L before the step)."""
    C = w_in.shape[1]
    h = jnp.einsum("bs,bsc->bc", in_weights, w_in[inputs])  # (B, C)
    u = w_out[outputs]  # (B, T, C)
    f = jnp.einsum("bc,btc->bt", h, u)  # (B, T)
    g = out_weights * (labels - jax.nn.sigmoid(f))  # (B, T)
    dh = jnp.einsum("bt,btc->bc", g, u)  # (B, C)
    w_out = w_out.at[outputs.reshape(-1)].add(lr * (g[..., None] * h[:, None, :]).reshape(-1, C))
    touched = (in_weights != 0).astype(dh.dtype)  # (B, S)
    w_in = w_in.at[inputs.reshape(-1)].add(
        lr * (touched[..., None] * dh[:, None, :]).reshape(-1, C)
    )
    loss = -(out_weights * jax.nn.log_sigmoid(jnp.where(labels > 0, f, -f))).sum()
    return w_in, w_out, loss


def glove_loss(params, i, j, weights, log_counts):
    """GloVe's weighted least squares L over the batch of entries (i, j), and the residuals d
    (B,)."""
    w, wc, b, bc = params
    d = (w[i] * wc[j]).sum(-1) + b[i] + bc[j] - log_counts  # (B,)
    return 0.5 * (weights * d * d).sum(), d


@functools.partial(jax.jit, donate_argnums=(0, 1))
def glove_update(params, grad_sq, i, j, weights, log_counts, lr):
    """One AdaGrad step (glove.c's form) on params = (W, Wc, b, bc) and their accumulators
    (started at 1); returns (params, grad_sq, L before the step)."""
    w, wc, b, bc = params
    gw, gwc, gb, gbc = grad_sq
    wi, wj = w[i], wc[j]  # (B, C)
    d = (wi * wj).sum(-1) + b[i] + bc[j] - log_counts  # (B,)
    fd = lr * weights * d  # (B,) lr * dL/dd
    step_w, step_wc = fd[:, None] * wj, fd[:, None] * wi  # (B, C) lr * gradients
    params = (
        w.at[i].add(-step_w / jnp.sqrt(gw[i])),
        wc.at[j].add(-step_wc / jnp.sqrt(gwc[j])),
        b.at[i].add(-fd / jnp.sqrt(gb[i])),
        bc.at[j].add(-fd / jnp.sqrt(gbc[j])),
    )
    grad_sq = (
        gw.at[i].add(step_w * step_w),
        gwc.at[j].add(step_wc * step_wc),
        gb.at[i].add(fd * fd),
        gbc.at[j].add(fd * fd),
    )
    return params, grad_sq, 0.5 * (weights * d * d).sum()
