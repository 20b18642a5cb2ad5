"""Mixed precision lab in JAX: a bf16/fp16 compute policy on fp32 master weights, and dynamic
loss scaling.

Read beside week1_torch/mixed_precision.py. The model, data, optimizer and
schedule are the char LM's (lib/charlm.py); week1_jax/precision.py applies the
policy to the model from outside and holds the loss scaler.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from labs import mixed_precision as spec
from week1 import charlm, convert, loop
from week1.comparison import Curves
from week1.timing import time_calls
from week1_jax.lib import charlm as base
from week1_jax.lib import devices, precision, steps
from week1_jax.lib import train as trainer


def demos() -> dict:
    """spec.DEMOS computed in each format: {demo: {format: value}}."""
    out = {demo: {} for demo in spec.DEMOS}
    for fmt in spec.FORMATS:

        def v(x):
            return jnp.asarray(x, jnp.dtype(fmt))

        results = {
            "300 * 300": v(300.0) * v(300.0),
            "gradient 1e-8": v(1e-8),
            "1e-8 scaled by 2^16, unscaled in fp32": v(1e-8 * spec.LOSS_SCALE).astype(jnp.float32)
            / spec.LOSS_SCALE,
            "1 + 2^-8": v(1.0) + v(2.0**-8),
            "256 + 1": v(256.0) + v(1.0),
        }
        for demo, value in results.items():
            out[demo][fmt] = float(value)
    return out


def build_model(
    cfg: spec.Config, vocab_size: int, precision_name: str, weights: dict | None = None
):
    """The char LM with the policy for `precision_name` applied (fp32 params always)."""
    return precision.apply_policy(
        base.build_model(cfg, vocab_size, weights), precision.POLICIES[precision_name]
    )


def make_optimizer(model, cfg: spec.Config, precision_name: str) -> nnx.Optimizer:
    """The char LM's AdamW and schedule; for fp16 the dynamic loss scale (cfg.loss_scale) rides
    on it as `optimizer.loss_scale`, so the jitted step carries it from step to step."""
    optimizer = base.make_optimizer(model, cfg)
    if precision_name == "fp16":
        optimizer.loss_scale = nnx.Variable(precision.DynamicLossScale(**cfg.loss_scale).init())
    return optimizer


def loss_fn(model, x, y, policy: precision.Policy):
    logits = model(x).astype(policy.output_dtype)  # (B, V): the softmax and loss in fp32
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@nnx.jit(static_argnames="policy")
def loss_and_grads(model, x, y, policy: precision.Policy):
    """Loss and fp32 gradients of the master weights under `policy` (what the parity test
    compares)."""
    return nnx.value_and_grad(loss_fn)(model, x, y, policy)


def make_train_step(policy: precision.Policy):
    """The step under `policy` for lib/train (which jits it on the split state): model,
    optimizer, key, x, y -> loss."""

    def train_step(model, optimizer, key, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y, policy)
        optimizer.update(model, grads)
        return loss

    return train_step


def make_train_step_scaled(policy: precision.Policy, scaler: precision.DynamicLossScale):
    """The fp16 step: model, optimizer (with its loss_scale), key, x, y -> {loss, scale,
    finite}.

    Backward of S * loss, unscale, and update only if every gradient is finite:
    a skipped step keeps the old state whole (parameters, AdamW moments and
    count, hence the schedule position), as GradScaler skips optimizer.step().
    The next scale and whether the step counted come back beside the loss.
    """

    def train_step(model, optimizer, key, x, y):
        scale_state = optimizer.loss_scale.get_value()
        before = nnx.clone(nnx.state((model, optimizer)))  # what a skipped step keeps

        def scaled_loss(model):
            loss = loss_fn(model, x, y, policy)
            return scaler.scale(scale_state, loss), loss

        (_, loss), grads = nnx.value_and_grad(scaled_loss, has_aux=True)(model)
        grads = scaler.unscale(scale_state, grads)
        finite = precision.all_finite(grads)
        optimizer.update(model, grads)
        after = nnx.state((model, optimizer))
        nnx.update((model, optimizer), precision.select_tree(finite, after, before))
        optimizer.loss_scale.set_value(scaler.update(scale_state, finite))
        return {"loss": loss, "scale": optimizer.loss_scale.get_value().scale, "finite": finite}

    return train_step


@nnx.jit(static_argnames="policy")
def eval_loss(model, x, y, policy: precision.Policy):
    return loss_fn(model, x, y, policy)


def evaluate(model, batches, policy: precision.Policy) -> float:
    """Mean loss over `batches` under `policy`; one read from the device at the end."""
    losses = jnp.stack([eval_loss(model, *base.as_arrays(x, y), policy) for x, y in batches])
    return float(losses.mean())


def train(
    cfg: spec.Config,
    data: charlm.Data,
    precision_name: str,
    *,
    weights: dict | None = None,
    ctx: loop.Context = loop.BARE,
):
    """Train in `precision_name` through lib/train; returns (model, History,
    spec.loss_scaling(History)) (the loss scale per step and the skipped steps; empty but for
    fp16)."""
    policy = precision.POLICIES[precision_name]
    model = build_model(cfg, data.vocab_size, precision_name, weights)
    optimizer = make_optimizer(model, cfg, precision_name)
    if precision_name == "fp16":
        step = make_train_step_scaled(policy, precision.DynamicLossScale(**cfg.loss_scale))
    else:
        step = make_train_step(policy)
    val = charlm.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        step,
        lambda i: base.as_arrays(*charlm.train_batch(data, cfg, i)),  # (B, T), (B,)
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: {"val_loss": evaluate(model, val, policy)},
        label=f"jax {precision_name}",
    )
    return model, history, spec.loss_scaling(history)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run mixed_precision --framework jax`: formats, demos, then fp32/bf16/fp16 training
    curves."""
    return spec.run(cfg, run, sys.modules[__name__], precision.number_formats, "JAX", "jnp")


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare mixed_precision`: train in precision `case` from `weights` (torch's names,
    numpy, converted through the char LM's weight map); returns its Curves."""
    data = charlm.load_data(cfg)
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    _, history, _ = train(cfg, data, case, weights=flax_weights, ctx=ctx)
    return Curves.of(history)


def saved_for_backward_bytes(model, x, y, policy: precision.Policy) -> int:
    """Bytes the backward pass keeps from the forward (activations, casts): the residuals of
    jax.vjp."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    _, vjp_fn = jax.vjp(lambda p: loss_fn(nnx.merge(graphdef, p, rest), x, y, policy), params)
    unique = {id(leaf): leaf for leaf in jax.tree.leaves(vjp_fn)}
    return sum(leaf.nbytes for leaf in unique.values())


def bench(cfg: spec.Config) -> dict:
    """`week1 bench mixed_precision`: train-step time and memory per precision."""
    data = charlm.load_data(cfg)
    x, y = base.as_arrays(*charlm.train_batch(data, cfg, 1))
    key = jax.random.key(cfg.seed)
    timings = {}
    for name in cfg.precision_list:
        policy = precision.POLICIES[name]
        model = build_model(cfg, data.vocab_size, name)
        graphdef, state = nnx.split((model, make_optimizer(model, cfg, name)))
        if name == "fp16":
            train_step = make_train_step_scaled(
                policy, precision.DynamicLossScale(**cfg.loss_scale)
            )
        else:
            train_step = make_train_step(policy)
        step = functools.partial(steps.jit_on_state(graphdef, train_step), state, key, x, y)
        timing = time_calls(step, devices.sync)
        memory = {"saved for backward": saved_for_backward_bytes(model, x, y, policy)}
        stats = jax.devices()[0].memory_stats()  # None on the CPU
        if stats and "peak_bytes_in_use" in stats:
            memory["device peak (process)"] = stats["peak_bytes_in_use"]
        timings[f"jax {name}"] = timing.with_memory(memory)
    return timings
