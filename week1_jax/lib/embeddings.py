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

import contextlib
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from week1 import loop
from week1.data import embeddings as pipeline
from week1_jax.lib import devices, train


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


def glove_loss(w, i, j, weights, log_counts):
    """GloVe's weighted least squares L over the entries (i, j) of the batch, and the residuals
    d (B,); w = [W b; W~ b~] (2V, C+1): word rows, then context rows, the bias last."""
    V, C = w.shape[0] // 2, w.shape[1] - 1
    wi, wj = w[i], w[j + V]  # (B, C+1)
    d = (wi[:, :C] * wj[:, :C]).sum(-1) + wi[:, C] + wj[:, C] - log_counts  # (B,)
    return 0.5 * (weights * d * d).sum(), d


@functools.partial(jax.jit, donate_argnums=(0, 1))
def glove_update(w, g, i, j, weights, log_counts, lr):
    """One AdaGrad step (glove.c's form) on w (2V, C+1) and its accumulators g (started at 1);
    returns (w, g, L before the step)."""
    V, C, B = w.shape[0] // 2, w.shape[1] - 1, len(i)
    both = jnp.concatenate([i, j + V])  # (2B,) word rows, then context rows
    x = w[both]  # (2B, C+1)
    wi, wj = x[:B], x[B:]
    d = (wi[:, :C] * wj[:, :C]).sum(-1) + wi[:, C] + wj[:, C] - log_counts  # (B,)
    fd = lr * weights * d  # (B,) lr * dL/dd
    other = jnp.concatenate([wj, wi]).at[:, C].set(1)  # (2B, C+1) dd/d(row), 1 for the bias
    step = jnp.concatenate([fd, fd])[:, None] * other  # (2B, C+1) lr * gradient
    w = w.at[both].add(-step / jnp.sqrt(g[both]))
    g = g.at[both].add(step * step)
    return w, g, 0.5 * (weights * d * d).sum()


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
            arrays = devices.to_device(*batch.arrays())
            lr = np.float32(cfg.glove_alpha)
            w, g, loss = glove_update(state["w"], state["g"], *arrays, lr)
            return {"w": w, "g": g}, loss

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
    ctx: loop.Context = loop.BARE,
) -> pipeline.Trained:
    """Train cfg.model on `sentences` from `weights` (default: pipeline.init_weights), through
    the shared loop (week1/loop.py) on the open-ended stream of batches.

    ctx: the run's log (log(step, loss=...) every cfg.log_every updates: the mean loss per
      pair since the last), should_stop (asked after every update: if True, stop there and
      return what was trained), progress bar, turn, and torch.compile (torch only); never
      checkpoints. A non-finite loss raises Diverged at its update.
    """
    s = pipeline.setup(sentences, cfg)
    state = as_state(weights if weights is not None else pipeline.init_weights(s, cfg))
    update = make_update(cfg)
    history = pipeline.History(log_every=cfg.log_every)
    expected = pipeline.expected_steps(s, cfg)  # subsampling decides the stream's length
    cadence = loop.Cadence(expected, log_every=cfg.log_every, open_ended=True)
    ran_out = False

    def step(i: int):
        nonlocal state, ran_out
        batch = next(batches, None)
        if batch is None:
            ran_out = True
            return loop.END
        state, loss = update(state, batch)
        return {"loss": loss, "pairs": pipeline.pairs_of(batch)}

    def read(values: list[dict]) -> list[dict]:
        return pipeline.per_pair(train.read([v["loss"] for v in values]), values)

    start = time.perf_counter()
    with contextlib.closing(pipeline.stream(s, cfg)) as batches:
        label = f"jax {cfg.model}"
        loop.drive(cadence, ctx, start=0, step=step, read=read, label=label, history=history)
    devices.sync(state)
    history.seconds = time.perf_counter() - start
    history.log_since_last(ctx.log)
    history.stopped = not ran_out
    final = {k: np.asarray(v) for k, v in state.items()}
    return pipeline.Trained(s.vocab.words, pipeline.export(s, cfg, final), final, s, history)
