"""Regularisation lab in JAX/Flax: dropout and LayerNorm from scratch, weight decay vs an L2
penalty, on the training_loop LM made to overfit.

Read beside week1_torch/regularization.py: the same functions in the same order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import regularization as spec
from week1 import charlm, convert, loop
from week1.comparison import Curves
from week1_jax.lib import devices, optim, schedules
from week1_jax.lib import train as trainer
from week1_jax.lib.models import set_weights


class LayerNorm(nnx.Module):
    r"""Layer normalisation over the last axis (Ba et al. 2016), from scratch::

        mu = mean(x),  var = mean((x - mu)^2)          (biased variance)
        y  = (x - mu) / sqrt(var + eps) * scale + bias

    The maths of nnx.LayerNorm(epsilon=eps) and torch.nn.LayerNorm(eps=eps); their default
    eps differ (1e-6 vs 1e-5), so eps has no default here.
    """

    def __init__(self, n: int, *, eps: float):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((n,)))
        self.bias = nnx.Param(jnp.zeros((n,)))

    def __call__(self, x):  # x: (..., n)
        mu = x.mean(axis=-1, keepdims=True)  # (..., 1)
        var = jnp.square(x - mu).mean(axis=-1, keepdims=True)  # (..., 1)
        return (x - mu) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class Dropout(nnx.Module):
    r"""Inverted dropout (Srivastava et al. 2014), from scratch::

        y = x * m / (1 - p),   m ~ Bernoulli(1 - p) per element,   so E[y] = x

    and y = x in eval mode (`model.eval()` sets `deterministic`). `keep` injects the mask m
    (bool, like x) instead of drawing it from `rngs.dropout`.
    """

    def __init__(self, rate: float):
        self.rate = rate
        self.deterministic = False

    def __call__(self, x, *, rngs: nnx.Rngs | None = None, keep=None):
        if self.deterministic or self.rate == 0.0:
            return x
        if keep is None:
            keep = jax.random.bernoulli(rngs.dropout(), 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), 0.0)


class RegularizedMLP(nnx.Module):
    """The training_loop's char MLP with each regulariser optional: embed a window, concatenate,
    fc1, [LayerNorm], tanh, [dropout], head."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int,
        n_hidden: int,
        *,
        dropout: float,
        layernorm: bool,
        ln_eps: float,
        rngs: nnx.Rngs,
    ):
        self.wte = nnx.Embed(vocab_size, n_embd, rngs=rngs)
        self.fc1 = nnx.Linear(block_size * n_embd, n_hidden, rngs=rngs)
        self.ln = LayerNorm(n_hidden, eps=ln_eps) if layernorm else None
        self.drop = Dropout(dropout)
        self.head = nnx.Linear(n_hidden, vocab_size, rngs=rngs)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None, keep=None):  # x: (B, T) int
        B, T = x.shape
        h = self.wte(x).reshape(B, -1)  # (B, T*C)
        h = self.fc1(h)  # (B, H)
        if self.ln is not None:
            h = self.ln(h)
        h = jnp.tanh(h)
        return self.head(self.drop(h, rngs=rngs, keep=keep))  # (B, V)


def build_model(
    cfg: spec.Config, arm: spec.Arm, vocab_size: int, weights: dict | None = None
) -> RegularizedMLP:
    """The arm's model from cfg.seed (every arm starts from the same wte/fc1/head), or from
    `weights` (Flax names)."""
    model = RegularizedMLP(
        vocab_size,
        cfg.block_size,
        cfg.n_embd,
        cfg.n_hidden,
        dropout=arm.dropout,
        layernorm=arm.layernorm,
        ln_eps=cfg.ln_eps,
        rngs=nnx.Rngs(cfg.seed),
    )
    if weights is not None:
        set_weights(model, weights)
    return model


def make_optimizer(model: RegularizedMLP, cfg: spec.Config, arm: spec.Arm) -> nnx.Optimizer:
    """From-scratch AdamW on cfg.schedule, decoupled decay arm.weight_decay on matrices only."""
    tx = optim.adamw(
        schedules.from_config(cfg), weight_decay=arm.weight_decay, mask=optim.decay_mask
    )
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def as_arrays(x: np.ndarray, y: np.ndarray):
    return devices.to_device(x, y, dtype=jnp.int32)


def l2_penalty(model: RegularizedMLP):
    """0.5 * sum of squares of the matrices (ndim >= 2: the weights AdamW's mask decays)."""
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return 0.5 * sum(jnp.sum(jnp.square(p)) for p in leaves if p.ndim >= 2)


def loss_fn(model: RegularizedMLP, x, y, l2: float, rngs: nnx.Rngs | None = None, keep=None):
    """(cross-entropy + l2 * l2_penalty, cross-entropy): the optimised loss and the logged one."""
    logits = model(x, rngs=rngs, keep=keep)  # (B, V)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return (ce + l2 * l2_penalty(model) if l2 else ce), ce


def make_train_step(arm: spec.Arm):
    """The arm's step for lib/train (which jits it on the split state): model, optimizer, key,
    x, y, keep -> cross-entropy (keep: an injected dropout keep-mask (B, H), or None to draw
    from the key)."""

    def train_step(model, optimizer, key, x, y, keep):
        grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
        (_, ce), grads = grad_fn(model, x, y, arm.l2, nnx.Rngs(dropout=key), keep)
        optimizer.update(model, grads)
        return ce

    return train_step


@nnx.jit
def _eval_loss(model: RegularizedMLP, x, y):
    return loss_fn(model, x, y, 0.0)[1]


def evaluate(model: RegularizedMLP, batches) -> float:
    """Mean cross-entropy over `batches`, dropout off."""
    model.eval()
    loss = float(np.mean([float(_eval_loss(model, *as_arrays(x, y))) for x, y in batches]))
    model.train()
    return loss


def train(
    cfg: spec.Config,
    arm: spec.Arm,
    data,
    *,
    weights: dict | None = None,
    ctx: loop.Context = loop.BARE,
    same_masks: bool = False,
):
    """Train one arm for cfg.steps (or until ctx.stop_at) through lib/train; returns (model,
    History). Dropout's key at step i is fold_in(key(cfg.seed), i); same_masks: its keep-masks
    from spec.step_keep_mask instead, as the torch run draws them."""
    model = build_model(cfg, arm, data.vocab_size, weights)
    optimizer = make_optimizer(model, cfg, arm)
    val = charlm.val_batches(data, cfg)

    def batch(i):
        x, y = as_arrays(*charlm.train_batch(data, cfg, i))  # (B, T), (B,)
        keep = spec.step_keep_mask(cfg, arm, i) if same_masks else None  # (B, H) | None
        return x, y, None if keep is None else devices.to_device(keep)[0]

    history = trainer.train(
        model,
        optimizer,
        make_train_step(arm),
        batch,
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: {"val_loss": evaluate(model, val)},
        label=f"jax {arm.name}",
    )
    return model, history


def run(cfg: spec.Config, run) -> dict:
    """`week1 run regularization --framework jax`: the ablation grid, gap.png and its table."""
    data = spec.load_data(cfg)
    return spec.run_grid(cfg, run, lambda arm, ctx: train(cfg, arm, data, ctx=ctx)[1])


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare regularization`: train arm `case` from `weights` (torch's names, numpy,
    converted through the arm's weight map) with the injected keep-masks; returns its Curves."""
    data = spec.load_data(cfg)
    arm = spec.arm(cfg, case)
    flax_weights = convert.torch_to_flax(weights, arm.weight_map)
    _, history = train(cfg, arm, data, weights=flax_weights, ctx=ctx, same_masks=True)
    return Curves.of(history)
