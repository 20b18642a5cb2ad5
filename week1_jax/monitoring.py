"""Monitoring lab in JAX: gradient norms, update ratios, clipping, and a clean stop on NaN or spike.

Read beside week1_torch/monitoring.py. Model, data, optimizer and schedule are
the char LM's (lib/charlm.py); the step (one jit, run by lib/train) looks at the
gradients between the backward pass and the update, and returns what it saw beside
the loss, read every LOG_EVERY steps with it (no host sync per step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx, traverse_util

from labs import monitoring as spec
from week1 import charlm, convert, loop
from week1.comparison import Curves
from week1.runs import Diverged
from week1_jax.lib import charlm as lm
from week1_jax.lib import train as trainer


def named(tree) -> dict:
    """An nnx State as {"fc1.kernel": array, ...}, in forward order."""
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(tree), sep=".")
    return {name: flat[name] for name in spec.forward_order(flat)}


@nnx.jit
def grad_step(model, x, y):
    """Loss and gradients of one batch; nothing is updated yet."""
    return nnx.value_and_grad(lm.loss_fn)(model, x, y)


def inject_nan(grads, layer: str, poison):
    """The gradients with element 0 of each of `layer`'s tensors set to NaN where `poison` (a
    bool array) is true (what an overflow would do); unchanged otherwise."""

    def poison_one(path, g):
        if path[0].key != layer:
            return g
        at = (0,) * g.ndim
        return g.at[at].set(jnp.where(poison, jnp.nan, g[at]))

    return jax.tree_util.tree_map_with_path(poison_one, grads)


def finite_flags(loss, grads):
    """(all finite, index of the first NaN/Inf holder): the loss and every gradient finite (a
    bool array), and 0 for the loss or i for the (i-1)-th gradient in forward order
    (spec.what_non_finite names it; meaningless when all are finite); read with the loss."""
    finite = jnp.stack(
        [jnp.isfinite(loss)] + [jnp.all(jnp.isfinite(g)) for g in named(grads).values()]
    )
    return jnp.all(finite), jnp.argmin(finite)


@jax.jit
def layer_norms(tree) -> dict:
    """{layer: sqrt(sum of squares over all the layer's tensors)}."""
    squares = {}
    for name, a in named(tree).items():
        squares[spec.layer_of(name)] = squares.get(spec.layer_of(name), 0.0) + jnp.sum(
            jnp.square(a)
        )
    return {layer: jnp.sqrt(s) for layer, s in squares.items()}


@jax.jit
def global_norm(grads):
    """||g|| = sqrt(sum_i g_i^2) over every tensor (what clipping compares with clip_norm)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))


@jax.jit
def clip_grads(grads, max_norm: float):
    """optax.clip_by_global_norm: g * min(1, max_norm / ||g||)."""
    clipped, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
    return clipped


@nnx.jit(static_argnames="clip_norm")
def apply_update(model, optimizer, grads, clip_norm: float):
    """Clip (if clip_norm > 0), step AdamW, and return the update/parameter ratio per layer."""
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    optimizer.update(model, clip_grads(grads, clip_norm) if clip_norm else grads)
    delta = jax.tree.map(jnp.subtract, nnx.state(model, nnx.Param), before)
    delta_norms, param_norms = layer_norms(delta), layer_norms(before)
    return {layer: delta_norms[layer] / param_norms[layer] for layer in param_norms}


def make_train_step(cfg: spec.Config):
    """The watched step for lib/train: model, optimizer, key, x, y, poison -> {loss, finite,
    first_non_finite, grad_norm, clipped, grad_norm/<layer>, update_ratio/<layer>}, all read
    with the loss.

    Gradients, the injected NaN where `poison`, the checks and norms, then clip and AdamW. A bad
    step's update is made on the device, but the loop stops at it before any checkpoint after
    it (spec.WatchedHistory).
    """

    def train_step(model, optimizer, key, x, y, poison):
        loss, grads = grad_step(model, x, y)
        grads = inject_nan(grads, cfg.nan_layer, poison)
        norm = global_norm(grads)
        finite, first_bad = finite_flags(loss, grads)
        watched = {
            "loss": loss,
            "finite": finite,
            "first_non_finite": first_bad,
            "grad_norm": norm,
            "clipped": jnp.asarray(cfg.clip_norm > 0) & (norm > cfg.clip_norm),
            **{f"grad_norm/{k}": v for k, v in layer_norms(grads).items()},
        }
        ratios = apply_update(model, optimizer, grads, cfg.clip_norm)
        return watched | {f"update_ratio/{k}": v for k, v in ratios.items()}

    return train_step


def train(cfg: spec.Config, data: charlm.Data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train with every step watched through lib/train; returns (model, History) or raises
    spec.TrainingStopped (a NaN or Inf, a loss spike), naming the last good checkpoint.

    ctx: as for every lab (checkpoints, resume, stop requests). The spike detector's running
    mean starts afresh on a resume."""
    model = lm.build_model(cfg, data.vocab_size, weights)
    optimizer = lm.make_optimizer(model, cfg)
    val = charlm.val_batches(data, cfg)
    names = named(nnx.state(model, nnx.Param))
    history = spec.watched_history(cfg, names, "jax", ctx)

    def batch(i):
        x, y = lm.as_arrays(*charlm.train_batch(data, cfg, i))  # (B, T), (B,)
        return x, y, jnp.asarray(i == cfg.nan_step)

    try:
        trainer.train(
            model,
            optimizer,
            make_train_step(cfg),
            batch,
            loop.Cadence.of(cfg),
            ctx,
            seed=cfg.seed,
            evaluate=lambda: {"val_loss": lm.evaluate(model, val)},
            history=history,
        )
    except spec.TrainingStopped:
        raise
    except Diverged as diverged:
        raise history.stopped(diverged) from None
    return model, history


def run(cfg: spec.Config, run) -> dict:
    """`week1 run monitoring --framework jax`: train watched; a NaN or a spike ends the run as
    diverged (exit status 3) with the reason and the last good checkpoint."""
    data = charlm.load_data(cfg)
    _, history = train(cfg, data, ctx=loop.Context.of_run(run))
    return history.summary()


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare monitoring`: train watched from `weights` (torch's names, numpy, converted
    through the char LM's weight map); returns its Curves. `case` is "watched", the only one."""
    data = charlm.load_data(cfg)
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    _, history = train(cfg, data, weights=flax_weights, ctx=ctx)
    return Curves.of(history)
