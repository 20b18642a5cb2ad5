"""Static word-embedding updates in JAX: negative sampling (word2vec skip-gram and CBOW,
FastText) and GloVe's AdaGrad step, as sparse row updates of the embedding matrices, and the
training loop that drives them (`fit`: the word2vec lab's, reusable by any lab that needs
trained vectors or a word2vec workload).

The batches come from week1.data.embeddings (its docstring has the layouts). Read beside
week1_torch/lib/embeddings.py: the same functions, the same maths (the maths is written out
there). The updates are pure functions of the matrices; `jax.jit(..., donate_argnums=...)`
lets XLA write the scattered rows (`.at[].add`) into the donated buffers in place.
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from week1.data import embeddings as pipeline
from week1.report import progress
from week1.runs import Diverged
from week1_jax.lib import devices


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


# ---------------------------------------------------------------------------------------------
# The training loop of the word2vec lab (and of anything that trains static vectors)


def as_state(weights: dict[str, np.ndarray]) -> dict:
    """The matrices as float32 jax arrays on the default device."""
    names = list(weights)
    return dict(zip(names, devices.to_device(*(weights[k] for k in names)), strict=True))


def make_update(cfg: pipeline.Settings):
    """(state, batch) -> (new state, the batch's loss); the old state's buffers are donated."""
    if cfg.model == "glove":

        def update(state, batch):
            params = tuple(state[k] for k in pipeline.GLOVE_PARAMS)
            grad_sq = tuple(state[f"g_{k}"] for k in pipeline.GLOVE_PARAMS)
            lr = np.float32(cfg.glove_alpha)
            arrays = devices.to_device(*batch.arrays())
            params, grad_sq, loss = glove_update(params, grad_sq, *arrays, lr)
            names = (*pipeline.GLOVE_PARAMS, *(f"g_{k}" for k in pipeline.GLOVE_PARAMS))
            return dict(zip(names, (*params, *grad_sq), strict=True)), loss

        return update

    def update(state, batch):
        w_in, w_out, loss = negative_sampling_update(
            state["w_in"], state["w_out"], *devices.to_device(*batch.arrays()), np.float32(batch.lr)
        )
        return {"w_in": w_in, "w_out": w_out}, loss

    return update


def fit(
    sentences,
    cfg: pipeline.Settings,
    *,
    weights: dict | None = None,
    log=None,
    should_stop=None,
    show_progress: bool = False,
) -> pipeline.Trained:
    """Train cfg.model on `sentences` from `weights` (default: pipeline.init_weights).

    log: log(step, loss=...) every cfg.log_every updates (mean loss per pair since the last).
    should_stop: () -> bool, asked after every update: if True, stop there and return what was
      trained. A non-finite logged loss raises Diverged.
    """
    s = pipeline.setup(sentences, cfg)
    state = as_state(weights if weights is not None else pipeline.init_weights(s, cfg))
    update = make_update(cfg)
    history = pipeline.History()
    step, pending, pairs, shown = 0, jnp.float32(0), 0.0, None
    with progress(f"jax {cfg.model}", pipeline.expected_steps(s, cfg), show_progress) as advance:
        start = time.perf_counter()
        for batch in pipeline.stream(s, cfg):
            state, loss = update(state, batch)
            pending = pending + loss  # stays on the device until logged
            pairs += pipeline.pairs_of(batch)
            step += 1
            if step % cfg.log_every == 0:
                shown = float(pending) / max(pairs, 1.0)
                if not math.isfinite(shown):
                    raise Diverged(step, "loss")
                history.add(step, shown, log)
                pending, pairs = jnp.float32(0), 0.0
            advance(shown)
            history.stopped = should_stop is not None and should_stop()
            if history.stopped:
                break
        if pairs:
            history.add(step, float(pending) / pairs, log)
        devices.sync(state)
        history.seconds, history.updates = time.perf_counter() - start, step
    final = {k: np.asarray(v) for k, v in state.items()}
    return pipeline.Trained(s.vocab.words, pipeline.export(s, cfg, final), final, s, history)
