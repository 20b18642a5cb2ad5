"""The one training loop in JAX: every JAX lab that trains runs through `train`.

The cadence (when to read losses, evaluate, checkpoint, stop) is week1/loop.py's, shared
with torch; this module adds what is JAX's: the step jitted once over the split (model,
optimizer) state (lib/steps.py says why not nnx.jit), its state donated to XLA, a dropout
key per step folded from the seed, reading the losses in one `device_get`, and orbax
checkpoints. Mirrors week1_torch/lib/train.py.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from week1 import loop
from week1_jax.lib import checkpoint, steps
from week1_jax.lib.models import get_weights


def make_step(loss_fn: Callable) -> Callable:
    """step(model, optimizer, key, *batch) -> loss: one update on loss_fn(model, *batch, rngs)
    with dropout drawn from `key`.

    Clipping, when a lab wants it, is part of the optimizer's optax chain
    (optax.clip_by_global_norm), where optax puts it.
    """

    def step(model, optimizer, key, *batch):
        loss, grads = nnx.value_and_grad(loss_fn)(model, *batch, nnx.Rngs(dropout=key))
        optimizer.update(model, grads)
        return loss

    return step


def read(values: list) -> list:
    """Device scalars (or dicts of them) as Python floats, in one transfer."""
    got = jax.device_get(values)
    return [{k: float(x) for k, x in v.items()} if isinstance(v, dict) else float(v) for v in got]


def train(
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    step: Callable,
    batch: Callable,
    cadence: loop.Cadence,
    ctx: loop.Context,
    *,
    seed: int = 0,
    evaluate: Callable | None = None,
    label: str = "jax",
    history: loop.History | None = None,
) -> loop.History:
    """Run `step(model, optimizer, key_i, *batch(i))`, jitted on the split state, for the
    cadence's steps; returns the History. `model` and `optimizer` hold the final state after.

    step: made by make_step, or the lab's own (returning the loss, or a dict with "loss").
    batch(i) -> the arrays of step i. key_i = fold_in(key(seed), i): step i's dropout, the same
    whether or not the run was resumed.
    evaluate() -> {metric: value}, on `model` (dropout off).
    ctx.resume: continue from the newest intact checkpoint in ctx.checkpoint_dir.
    The state is donated to each step: the model and optimizer objects see the arrays again
    after `nnx.update` (the loop's `settle`), done before anything reads them.
    """
    mngr = checkpoint.manager(ctx.checkpoint_dir) if ctx.checkpoint_dir is not None else None
    start = checkpoint.restore_train_state(mngr, model, optimizer) if ctx.resume else 0
    graphdef, state = nnx.split((model, optimizer))
    jitted = steps.jit_on_state(graphdef, step, donate=True)
    root = jax.random.key(seed)

    def one(i: int):
        nonlocal state
        state, loss = jitted(state, jax.random.fold_in(root, i), *batch(i))
        return loss

    def settle() -> None:
        nnx.update((model, optimizer), state)

    def save(i: int) -> None:
        checkpoint.save_train_state(mngr, i, model, optimizer)

    history = loop.drive(
        cadence,
        ctx,
        start=start,
        step=one,
        read=read,
        evaluate=evaluate,
        save=save if mngr is not None else None,
        settle=settle,
        weights=lambda: get_weights(model),
        label=label,
        history=history,
    )
    settle()
    return history
