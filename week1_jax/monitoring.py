"""Monitoring lab in JAX: gradient norms, update ratios, clipping, and a clean stop on NaN or spike.

Read beside week1_torch/monitoring.py. Model, data, optimizer and schedule are
the training_loop lab's; the step is split in two jitted halves (gradients,
then update) so the loop can look at the gradients in between.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx, traverse_util

from labs import monitoring as spec
from week1 import charlm, convert, loop
from week1.comparison import Curves
from week1.report import progress
from week1_jax.lib import checkpoint
from week1_jax.lib.models import get_weights
from week1_jax.training_loop import as_arrays, build_model, evaluate, loss_fn, make_optimizer


def named(tree) -> dict:
    """An nnx State as {"fc1.kernel": array, ...}, in forward order."""
    flat = traverse_util.flatten_dict(nnx.to_pure_dict(tree), sep=".")
    return {name: flat[name] for name in spec.forward_order(flat)}


@nnx.jit
def grad_step(model, x, y):
    """Loss and gradients of one batch; nothing is updated yet."""
    return nnx.value_and_grad(loss_fn)(model, x, y)


def inject_nan(grads, layer: str):
    """The gradients with element 0 of each of `layer`'s tensors set to NaN (what an overflow
    would do)."""

    def poison(path, g):
        return g.at[(0,) * g.ndim].set(jnp.nan) if path[0].key == layer else g

    return jax.tree_util.tree_map_with_path(poison, grads)


@jax.jit
def _finite_flags(loss, grads):
    return jnp.isfinite(loss), jax.tree.map(lambda g: jnp.all(jnp.isfinite(g)), grads)


def first_non_finite(loss, grads) -> str | None:
    """'loss', 'gradient <name>' for the first gradient (forward order) holding a NaN/Inf, or
    None."""
    loss_ok, grads_ok = _finite_flags(loss, grads)
    if not loss_ok:
        return "loss"
    return next((f"gradient {name}" for name, ok in named(grads_ok).items() if not ok), None)


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


def train(
    cfg: spec.Config,
    data: charlm.Data,
    *,
    weights: dict | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    stop_at: int | None = None,
    log=None,
    should_stop=None,
    show_progress: bool = False,
):
    """Train with every step watched; returns (model, History) or raises spec.TrainingStopped.

    resume, should_stop: as in the training_loop lab (continue from the newest intact
    checkpoint; checkpoint and return when a stop is asked). The spike detector's running mean
    starts afresh on a resume."""
    model = build_model(cfg, data.vocab_size, weights)
    optimizer = make_optimizer(model, cfg)
    mngr = checkpoint.manager(checkpoint_dir) if checkpoint_dir is not None else None
    first = checkpoint.restore_train_state(mngr, model, optimizer) + 1 if resume else 1
    spikes = spec.SpikeDetector(cfg.spike_factor, cfg.spike_warmup)
    val = charlm.val_batches(data, cfg)
    history = loop.History()
    last_checkpoint = first - 1 or None
    end = stop_at or cfg.steps
    with progress("jax", total=end - first + 1, enabled=show_progress) as advance:
        for step in range(first, end + 1):
            start = time.perf_counter()
            x, y = charlm.train_batch(data, cfg, step)  # (B, T), (B,)
            loss, grads = grad_step(model, *as_arrays(x, y))
            if step == cfg.nan_step:
                grads = inject_nan(grads, cfg.nan_layer)
            bad = first_non_finite(loss, grads)
            if bad is not None:
                raise spec.TrainingStopped(step, f"non-finite {bad}", last_checkpoint)
            spike = spikes.check(float(loss))
            if spike is not None:
                raise spec.TrainingStopped(step, spike, last_checkpoint)
            grad_norm = float(global_norm(grads))
            grad_norms = layer_norms(grads)
            ratios = apply_update(model, optimizer, grads, cfg.clip_norm)
            # The step's time includes the watching (norms, ratios, checks).
            history.add_train(step, float(loss), time.perf_counter() - start)
            if log:
                log(
                    step,
                    train_loss=loss,
                    grad_norm=grad_norm,
                    clipped=bool(cfg.clip_norm and grad_norm > cfg.clip_norm),
                    **{f"grad_norm/{k}": v for k, v in grad_norms.items()},
                    **{f"update_ratio/{k}": v for k, v in ratios.items()},
                )
            if loop.Cadence.of(cfg).is_eval_step(step):
                history.add_val(step, evaluate(model, val), log)
            stopping = should_stop is not None and should_stop()
            due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if mngr is not None and (due or stopping):
                checkpoint.save_train_state(mngr, step, model, optimizer)
                last_checkpoint = step
            advance(float(loss))
            if stopping:
                break
    return model, history


def run(cfg: spec.Config, run) -> dict:
    """`week1 run monitoring --framework jax`: train watched; a NaN or a spike ends the run as
    diverged (exit status 3) with the reason and the last good checkpoint."""
    data = charlm.load_data(cfg)
    _, history = train(
        cfg,
        data,
        checkpoint_dir=run.checkpoint_dir,
        resume=run.resume,
        log=run.log,
        should_stop=run.should_stop,
    )
    return history.summary()


def compare_run(cfg: spec.Config, case: str, weights=None, *, show_progress=False):
    """`week1 compare monitoring`: train watched from `weights` (torch's names, numpy, converted
    through the training_loop's weight map; None: Flax's init); returns (the start weights under
    torch's names, Curves). `case` is "watched", the only one."""
    data = charlm.load_data(cfg)
    if weights is None:
        weights = convert.flax_to_torch(get_weights(build_model(cfg, data.vocab_size)),
                                        charlm.WEIGHT_MAP)  # fmt: skip
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    _, history = train(cfg, data, weights=flax_weights, show_progress=show_progress)
    return weights, Curves.of(history)
