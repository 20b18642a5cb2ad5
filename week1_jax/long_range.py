"""Long-range lab in JAX/Flax: copy memory and adding problem against the delay T, for the
from-scratch RNN/LSTM/GRU (week1_jax/lib/recurrent.py) and one layer of causal self-attention.

Read beside week1_torch/long_range.py: the same functions in the same order.
"""

from __future__ import annotations

import functools
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import long_range as spec
from week1 import convert, loop
from week1.comparison import Curves
from week1_jax.lib import devices, optim, recurrent
from week1_jax.lib import train as trainer
from week1_jax.lib.models import set_weights


class SequenceModel(nnx.Module):
    """A recurrent layer (ours: "rnn", "lstm" or "gru") and a linear head at every step:
    x (B, L, in) -> (B, L, out)."""

    TORCH_ROWS = spec.HEAD_MAP

    def __init__(self, kind: str, in_features: int, hidden: int, out_features: int, *, rngs):
        self.rnn = recurrent.LAYERS[kind](in_features, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, out_features, rngs=rngs)

    def __call__(self, x):
        out, _ = self.rnn(x)  # (B, L, H)
        return self.head(out)  # (B, L, out)


def rope(x, positions, base: float = spec.ROPE_BASE):
    r"""Rotary position embedding (Su et al. 2021, RoFormer), in the rotate-half form of
    GPT-NeoX and Llama: x (..., L, hd) at integer positions (L,) -> (..., L, hd).

        theta_i = base^(-2i / hd),  i = 0 .. hd/2 - 1
        x'_i        = x_i cos(p theta_i) - x_{i+hd/2} sin(p theta_i)
        x'_{i+hd/2} = x_{i+hd/2} cos(p theta_i) + x_i sin(p theta_i)

    Each pair (x_i, x_{i+hd/2}) turns by the angle p theta_i: x' = R_p x with R_p a rotation,
    and R_m^T R_n = R_{n-m}, so a query at m and a key at n score q'.k' = q^T R_{n-m} k:
    the positions enter only through n - m. Computed in x's dtype.
    """
    hd = x.shape[-1]
    inv_freq = 1.0 / base ** (jnp.arange(0, hd, 2, dtype=x.dtype) / hd)  # (hd/2,)
    angles = positions.astype(x.dtype)[:, None] * inv_freq[None, :]  # (L, hd/2)
    cos = jnp.concatenate([jnp.cos(angles), jnp.cos(angles)], axis=-1)  # (L, hd)
    sin = jnp.concatenate([jnp.sin(angles), jnp.sin(angles)], axis=-1)  # (L, hd)
    rotated = jnp.concatenate([-x[..., hd // 2 :], x[..., : hd // 2]], axis=-1)  # rotate half
    return x * cos + rotated * sin


class CausalSelfAttention(nnx.Module):
    r"""One layer of causal multi-head self-attention (Vaswani et al. 2017), residual, with a
    linear head at every step: x (B, L, in) -> (B, L, out).

        h = x W_in + b_in [+ P[:L]]                   (learned: P, (max_len, d), added here)
        q, k, v = h W_q, h W_k, h W_v                 (split into n_heads of d / n_heads)
        [q_t, k_t = R_t q_t, R_t k_t]                 (rope: each head rotated, see rope())
        A = softmax(q k^T / sqrt(d / n_heads) + M)    (M: -inf above the diagonal: causal)
        out = (h + (A v) W_o) W_head

    Step t reads step s <= t through one attention weight, whatever t - s is: no
    product of per-step Jacobians stands between them. positions: "learned" (a row per
    position up to max_len: nothing for a step past it) or "rope" (no parameters; any L).

    Initialisation, the same in both frameworks: weights normal with std 1/sqrt(fan_in)
    (LeCun), biases zero, positions normal with std 0.02. (torch's default Linear init is
    sqrt(3) times smaller; from it this model finds the copy alignment markedly later.)
    """

    def __init__(
        self,
        in_features: int,
        d: int,
        out_features: int,
        max_len: int,
        n_heads: int,
        positions: str = "learned",
        *,
        rngs,
    ):
        self.n_heads = n_heads
        lecun = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")
        linear = lambda n_in, n_out: nnx.Linear(n_in, n_out, kernel_init=lecun, rngs=rngs)
        self.inp = linear(in_features, d)
        # learned: a row per position, added to the input; rope: none (q and k are rotated)
        self.pos = (
            nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, d)))
            if positions == "learned"
            else None
        )
        self.qkv = linear(d, 3 * d)
        self.proj = linear(d, d)
        self.head = linear(d, out_features)

    def __call__(self, x):
        B, L, _ = x.shape
        h = self.inp(x)  # (B, L, d)
        if self.pos is not None:
            h = h + self.pos[:L]
        d = h.shape[-1]
        q, k, v = jnp.split(self.qkv(h), 3, axis=-1)  # 3 x (B, L, d)
        heads = lambda a: a.reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)  # (B, nh, L, hd)
        q, k, v = heads(q), heads(k), heads(v)
        if self.pos is None:
            t = jnp.arange(L)
            q, k = rope(q, t), rope(k, t)
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // self.n_heads)  # (B, nh, L, L)
        causal = jnp.tril(jnp.ones((L, L), dtype=bool))
        weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        y = (weights @ v).transpose(0, 2, 1, 3).reshape(B, L, d)  # (B, L, d)
        return self.head(h + self.proj(y))  # (B, L, out)


def build_model(cfg: spec.Config, task: str, kind: str, T: int, weights: dict | None = None):
    """The model of one grid cell, from cfg.seed, or from `weights` (torch names, numpy)."""
    n_in, n_out = spec.io_sizes(task)
    rngs = nnx.Rngs(cfg.seed)
    if kind == "attention":
        max_len = spec.sequence_length(task, T)
        model = CausalSelfAttention(
            n_in, cfg.hidden_size, n_out, max_len, cfg.n_heads, cfg.positions, rngs=rngs
        )
    else:
        model = SequenceModel(kind, n_in, cfg.hidden_size, n_out, rngs=rngs)
    if weights is not None:
        set_weights(model, convert.torch_to_flax(weights, _torch_table(model)))
    return model


def _torch_table(model) -> tuple:
    """The model's torch state_dict <-> Flax table."""
    if isinstance(model, CausalSelfAttention):
        return spec.ROPE_ATTENTION_MAP if model.pos is None else spec.ATTENTION_MAP
    return recurrent.weight_map(model)


@functools.cache  # one function per task: evaluate's compilations are kept across calls
def task_loss(task: str):
    """The task's loss(model, x, y): copy, cross-entropy averaged over every step; adding, the
    squared error of the output at the last step."""

    def copy(model, x, y):
        logits = model(x)  # (B, L, 9)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def adding(model, x, y):
        prediction = model(x)[:, -1, 0]  # (B,)
        return jnp.mean((prediction - y) ** 2)

    return copy if task == "copy" else adding


def make_optimizer(model, lr: float, clip_norm: float, sgd: bool = False) -> nnx.Optimizer:
    """Adam (our AdamW without decay), or plain SGD, at a constant lr, after global-norm
    clipping (0: off)."""
    base = optax.sgd(lr) if sgd else optim.adamw(lr, weight_decay=0.0)
    tx = optax.chain(optax.clip_by_global_norm(clip_norm), base) if clip_norm else base
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def make_train_step(loss):
    """step(model, optimizer, key, x, y) -> {"loss", "grad_norm"} for lib/train.train (no
    dropout: the key goes unused); the norm is the one before the optimizer's clipping
    (lib/train.train keeps it per step in history.per_step)."""

    def train_step(model, optimizer, key, x, y):
        value, grads = nnx.value_and_grad(loss)(model, x, y)
        optimizer.update(model, grads)
        return {"loss": value, "grad_norm": optax.global_norm(grads)}

    return train_step


@functools.cache
def _jitted_loss(graphdef, loss):
    """loss(state, x, y) on a split model, compiled once per (model structure, loss, shapes)."""
    return jax.jit(lambda state, x, y: loss(nnx.merge(graphdef, state), x, y))


def evaluate(model, loss, batches) -> float:
    """Mean loss over fixed batches."""
    graphdef, state = nnx.split(model)
    value = _jitted_loss(graphdef, loss)
    return float(np.mean([float(value(state, *devices.to_device(x, y))) for x, y in batches]))


def train_cell(
    cfg: spec.Config,
    task: str,
    kind: str,
    T: int,
    *,
    weights: dict | None = None,
    lr: float | None = None,
    clip_norm: float | None = None,
    sgd: bool = False,
    ctx=loop.BARE,
    history: loop.History | None = None,
):
    """Train one (task, model, T) cell; returns (model, History): losses, gradient norms before
    clipping (history.per_step["grad_norm"]), the validation loss every cfg.eval_every steps
    and after the last, the step times.

    lr, clip_norm, sgd: override cfg's Adam settings (the clipping experiment). A non-finite
    loss raises Diverged; `history` (when given) keeps the steps before it.
    ctx: logging (under the cell's key), stop requests and progress, as the caller decides;
    no checkpoints (spec.cell_context).
    """
    lr = cfg.lr if lr is None else lr
    clip_norm = cfg.clip_norm if clip_norm is None else clip_norm
    model = build_model(cfg, task, kind, T, weights)
    optimizer = make_optimizer(model, lr, clip_norm, sgd)
    loss_fn = task_loss(task)
    val = spec.val_batches(task, T, cfg)
    history = trainer.train(
        model,
        optimizer,
        make_train_step(loss_fn),
        lambda step: devices.to_device(*spec.batch(task, T, cfg, step)),
        spec.cadence(cfg),
        spec.cell_context(ctx, task, kind, T),
        seed=cfg.seed,
        evaluate=lambda: {"val_loss": evaluate(model, loss_fn, val)},
        label=f"jax {spec.cell_key(task, kind, T)}",
        history=history,
    )
    return model, history


def input_grad_norms(model, task: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """||dL/dx_t|| for each input step t (the norm over the batch and features): (L,)."""
    loss = task_loss(task)
    graphdef, state = nnx.split(model)
    grad = jax.jit(jax.grad(lambda s, inputs, y: loss(nnx.merge(graphdef, s), inputs, y), 1))
    grads = grad(state, *devices.to_device(x, y))  # (B, L, in)
    return np.sqrt(np.sum(np.asarray(grads) ** 2, axis=(0, 2)))


def clipping_demo(cfg: spec.Config, ctx=loop.BARE) -> dict:
    """The plain RNN on the adding task with its recurrent weights scaled by clip_demo_gain
    (exploding gradients) and clip_demo_lr: trained unclipped and clipped at 1, from the same
    start. Returns {arm: {"steps", "loss", "grad_norm", "non_finite_at"}}."""
    start = build_model(cfg, "adding", "rnn", cfg.clip_demo_delay)
    start.rnn.kernel_hh_l0[...] = start.rnn.kernel_hh_l0[...] * cfg.clip_demo_gain
    weights = recurrent.torch_state_dict(start)
    return spec.clipping_arms(cfg, train_cell, weights, ctx)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run long_range --framework jax`: the grid, the gradient norms, clipping."""
    return spec.run_grid(cfg, run, sys.modules[__name__])


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare long_range`: train the cell of `case` (spec.compare_cases) from `weights`
    (torch's names, numpy); returns its Curves."""
    task, kind, T = spec.compare_cell(cfg, case)
    _, history = train_cell(cfg, task, kind, T, weights=weights, ctx=ctx)
    return Curves.of(history)
