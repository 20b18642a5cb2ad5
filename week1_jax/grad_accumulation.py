"""Gradient accumulation lab in JAX: optax.MultiSteps, and a hand-written lax.scan in one jitted
step.

Read beside week1_torch/grad_accumulation.py. The model, data, optimizer and
schedule are the char LM's (lib/charlm.py); only the loss (masked, token-level) and
the accumulation are new here.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import grad_accumulation as spec
from week1 import charlm, convert, loop, profiler
from week1.comparison import Curves
from week1.timing import time_calls
from week1_jax.lib import charlm as lm
from week1_jax.lib import devices, steps
from week1_jax.lib import train as trainer
from week1_jax.lib.losses import masked_cross_entropy

# No counterpart in the other framework (optax.MultiSteps, a second JAX way to accumulate).
FRAMEWORK_ONLY = ("make_multisteps_optimizer", "multisteps_step")


def micro_loss(model, x, y, n_norm):
    """Summed token cross-entropy of one micro-batch over n_norm (see spec.normalisers)."""
    loss_sum, _ = masked_cross_entropy(model(x), y)  # (B_j, V) logits
    return loss_sum / n_norm


@nnx.jit
def big_batch_grads(model, x, y):
    """Loss and gradients of the whole batch at once: the reference accumulation must equal."""

    def loss_fn(model):
        loss_sum, n_tokens = masked_cross_entropy(model(x), y)
        return loss_sum / n_tokens

    return nnx.value_and_grad(loss_fn)(model)


@nnx.jit
def accumulate_grads(model, xs, ys, norms):
    """Sum of the k micro-batches' losses and gradients, with lax.scan inside one jitted call.

    xs (k, m, T), ys (k, m), norms (k,): micro-batch j contributes
    grad(loss_sum_j / norms[j]). Only one micro-batch's activations are alive at
    a time, which is what accumulation is for.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # lax.scan wants arrays, not a Module

    def micro_loss_of_params(params, x, y, n_norm):
        return micro_loss(nnx.merge(graphdef, params, rest), x, y, n_norm)

    def add_micro_batch(carry, batch):
        loss_acc, grads_acc = carry
        loss, grads = jax.value_and_grad(micro_loss_of_params)(params, *batch)
        return (loss_acc + loss, jax.tree.map(jnp.add, grads_acc, grads)), None

    zeros = (jnp.zeros((), norms.dtype), jax.tree.map(jnp.zeros_like, params))
    (loss, grads), _ = jax.lax.scan(add_micro_batch, zeros, (xs, ys, norms))
    return loss, grads


def train_step(model, optimizer, key, xs, ys, norms):
    """One update: k micro-batches through the scan above, then AdamW once (lib/train jits it
    on the split state; `key` is unused: no dropout)."""
    loss, grads = accumulate_grads(model, xs, ys, norms)
    optimizer.update(model, grads)
    return loss


def make_multisteps_optimizer(
    model, cfg: spec.Config, accumulator_dtype=jnp.float32
) -> nnx.Optimizer:
    """The char LM's AdamW wrapped in optax.MultiSteps: an update every `micro_batches` calls.

    use_grad_mean=False makes MultiSteps *sum* the micro-batch gradients: each
    is already divided by its normaliser, so the sum is the big-batch gradient.
    (The default, the mean, would need every micro-batch loss multiplied by k.)
    """
    tx = lm.make_optimizer(model, cfg).tx
    multi = optax.MultiSteps(
        tx,
        every_k_schedule=cfg.micro_batches,
        use_grad_mean=False,
        accumulator_dtype=accumulator_dtype,
    )
    return nnx.Optimizer(model, multi, wrt=nnx.Param)


def multisteps_step(model, optimizer, key, xs, ys, norms):
    """The same update as k calls of optimizer.update through MultiSteps, one per micro-batch
    (unrolled in the one jitted step): each call accumulates one micro-batch's gradient; the
    k-th applies AdamW."""
    loss = 0.0
    for j in range(xs.shape[0]):
        micro, grads = nnx.value_and_grad(micro_loss)(model, xs[j], ys[j], norms[j])
        optimizer.update(model, grads)
        loss += micro
    return loss


def as_arrays(xs: np.ndarray, ys: np.ndarray, norms: np.ndarray):
    """Micro-batches (k, m, T), labels (k, m) and normalisers (k,) on the default device."""
    return devices.to_device(xs, ys, norms)


METHODS = {
    "scan": (lm.make_optimizer, train_step),
    "multisteps": (make_multisteps_optimizer, multisteps_step),
}


def train(
    cfg: spec.Config,
    data: charlm.Data,
    *,
    method: str = "scan",
    weights: dict | None = None,
    ctx: loop.Context = loop.BARE,
):
    """Train for cfg.steps with accumulation by `method` ("scan" or "multisteps") through
    lib/train; returns (model, History)."""
    make_optimizer_for, step = METHODS[method]
    model = lm.build_model(cfg, data.vocab_size, weights)
    optimizer = make_optimizer_for(model, cfg)
    val = charlm.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        step,
        lambda i: as_arrays(*spec.micro_batches(data, cfg, i)),  # (k, m, T), (k, m), (k,)
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: {"val_loss": lm.evaluate(model, val)},
        label=f"jax {method}",
    )
    return model, history


def scaled_max_diff(grads, reference) -> float:
    """Largest max|a - b| / max|b| over the tensors of two gradient trees (per tensor: the largest
    element-wise difference over the largest reference magnitude, so near-zero elements do not
    blow up)."""
    return max(
        float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True)
    )


def run(cfg: spec.Config, run) -> dict:
    """`week1 run grad_accumulation --framework jax`: the identity on one batch, then training
    both ways."""
    data = charlm.load_data(cfg)
    model = lm.build_model(cfg, data.vocab_size)
    x, y = spec.padded_batch(data, cfg, 1)
    xs, ys = spec.split_micro_batches(x, y, cfg.micro_batches)
    _, reference = big_batch_grads(model, *devices.to_device(x, y))
    summary = {
        f"grad scaled max diff ({normalise})": scaled_max_diff(
            accumulate_grads(model, *as_arrays(xs, ys, spec.normalisers(ys, normalise)))[1],
            reference,
        )
        for normalise in spec.NORMALISATIONS
    }
    ctx = loop.Context.of_run(run)
    histories = {method: train(cfg, data, method=method, ctx=ctx.part(method))[1]
                 for method in METHODS}  # fmt: skip
    summary = spec.report_run(run, cfg, summary, histories)
    scan, multi = histories["scan"].train_loss, histories["multisteps"].train_loss
    n = min(len(scan), len(multi))  # the same unless a stop was asked
    summary["max loss diff scan vs multisteps"] = float(
        np.max(np.abs(np.array(scan[:n]) - np.array(multi[:n])))
    )
    return summary


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare grad_accumulation`: train the scan with normalisation `case` from `weights`
    (torch's names, numpy, converted through the char LM's weight map); returns its Curves."""
    cfg = dataclasses.replace(cfg, normalise=case)
    data = charlm.load_data(cfg)
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    _, history = train(cfg, data, weights=flax_weights, ctx=ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench grad_accumulation`: one update from k micro-batches, scan vs MultiSteps vs
    the big batch."""
    data = charlm.load_data(cfg)
    x, y = spec.padded_batch(data, cfg, 1)
    timings = {}
    for name, k, method in (
        ("jax big batch", 1, "scan"),
        ("jax scan", cfg.micro_batches, "scan"),
        ("jax MultiSteps", cfg.micro_batches, "multisteps"),
    ):
        step_cfg = dataclasses.replace(cfg, micro_batches=k)
        make_optimizer_for, step = METHODS[method]
        model = lm.build_model(step_cfg, data.vocab_size)
        graphdef, state = nnx.split((model, make_optimizer_for(model, step_cfg)))
        xs, ys = spec.split_micro_batches(x, y, k)
        batch = as_arrays(xs, ys, spec.normalisers(ys, "total"))
        update = steps.jit_on_state(graphdef, step)
        timings[f"{name} (k={k})"] = time_calls(
            functools.partial(update, state, jax.random.key(0), *batch), devices.sync
        )
    return timings


def profile_phases(cfg: spec.Config) -> profiler.Phases:
    """`week1 profile grad_accumulation`: one scan-accumulated update as data / forward_backward
    / optimizer."""
    data = charlm.load_data(cfg)
    model = lm.build_model(cfg, data.vocab_size)
    optimizer = lm.make_optimizer(model, cfg)

    def batch(step):
        return devices.sync(as_arrays(*spec.micro_batches(data, cfg, step)))

    def forward_backward(batch):
        return devices.sync(accumulate_grads(model, *batch))

    def optimizer_step(loss_and_grads):
        steps.apply_grads(model, optimizer, loss_and_grads[1])
        devices.sync(nnx.state(model))

    return profiler.Phases(batch, forward_backward, optimizer_step, jax.profiler.TraceAnnotation)
