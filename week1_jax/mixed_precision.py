"""Mixed precision lab in JAX: a bf16/fp16 compute policy on fp32 master weights, and dynamic
loss scaling.

Read beside week1_torch/mixed_precision.py. The model, data, optimizer and
schedule are the training_loop lab's; week1_jax/precision.py applies the
policy to the model from outside and holds the loss scaler.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import mixed_precision as spec
from week1 import charlm, convert, loop, report
from week1.comparison import Curves
from week1.report import progress
from week1.runs import Diverged
from week1.timing import time_calls
from week1_jax.lib import charlm as base
from week1_jax.lib import devices, precision, steps
from week1_jax.lib.models import get_weights


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
    """The training_loop model with the policy for `precision_name` applied (fp32 params always)."""
    return precision.apply_policy(
        base.build_model(cfg, vocab_size, weights), precision.POLICIES[precision_name]
    )


def loss_fn(model, x, y, policy: precision.Policy):
    logits = model(x).astype(policy.output_dtype)  # (B, V): the softmax and loss in fp32
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@nnx.jit(static_argnames="policy")
def loss_and_grads(model, x, y, policy: precision.Policy):
    """Loss and fp32 gradients of the master weights under `policy` (what the parity test
    compares)."""
    return nnx.value_and_grad(loss_fn)(model, x, y, policy)


def make_train_step(graphdef, policy: precision.Policy):
    """A jitted step on the split (model, optimizer) state: state, x, y -> state, loss.

    jax.jit of a pure function, as in the training_loop lab: nnx.jit's per-call
    walk of the object graph would cost more than this small model's step and
    hide the difference between precisions.
    """

    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y, policy)
        optimizer.update(model, grads)
        return loss

    return steps.jit_on_state(graphdef, train_step)


def make_train_step_scaled(graphdef, policy: precision.Policy, scaler: precision.DynamicLossScale):
    """The fp16 step: state, scale_state, x, y -> state, loss, next scale_state, finite.

    Backward of S * loss, unscale, and update only if every gradient is finite:
    a skipped step returns the old state whole (parameters, AdamW moments and
    count, hence the schedule position), as GradScaler skips optimizer.step().
    """

    @jax.jit
    def train_step(state, scale_state, x, y):
        model, optimizer = nnx.merge(
            graphdef, state, copy=True
        )  # new Variables: `state` stays the old step

        def scaled_loss(model):
            loss = loss_fn(model, x, y, policy)
            return scaler.scale(scale_state, loss), loss

        (_, loss), grads = nnx.value_and_grad(scaled_loss, has_aux=True)(model)
        grads = scaler.unscale(scale_state, grads)
        finite = precision.all_finite(grads)
        optimizer.update(model, grads)
        new_state = precision.select_tree(finite, nnx.state((model, optimizer)), state)
        return new_state, loss, scaler.update(scale_state, finite), finite

    return train_step


@nnx.jit(static_argnames="policy")
def eval_loss(model, x, y, policy: precision.Policy):
    return loss_fn(model, x, y, policy)


def evaluate(model, batches, policy: precision.Policy) -> float:
    """Mean loss over `batches` under `policy`."""
    losses = [float(eval_loss(model, *base.as_arrays(x, y), policy)) for x, y in batches]
    return float(np.mean(losses))


def train(
    cfg: spec.Config,
    data: charlm.Data,
    precision_name: str,
    *,
    weights: dict | None = None,
    log=None,
    show_progress: bool = False,
):
    """Train in `precision_name`; returns (model, History, {"scale": [...], "skipped": [...]} for
    fp16)."""
    policy = precision.POLICIES[precision_name]
    model = build_model(cfg, data.vocab_size, precision_name, weights)
    optimizer = base.make_optimizer(model, cfg)
    scaler = precision.DynamicLossScale(**cfg.loss_scale) if precision_name == "fp16" else None
    scale_state = scaler.init() if scaler else None
    scaling = {"scale": [], "skipped": []}
    graphdef, state = nnx.split((model, optimizer))
    step_fn = (
        make_train_step_scaled(graphdef, policy, scaler)
        if scaler
        else make_train_step(graphdef, policy)
    )
    val = charlm.val_batches(data, cfg)
    history = loop.History()
    with progress(f"jax {precision_name}", total=cfg.steps, enabled=show_progress) as advance:
        for step in range(1, cfg.steps + 1):
            x, y = base.as_arrays(*charlm.train_batch(data, cfg, step))
            t0 = time.perf_counter()
            if scaler is None:
                state, loss = step_fn(state, x, y)
                loss = float(loss)
            else:
                state, loss, scale_state, finite = step_fn(state, scale_state, x, y)
                loss = float(loss)
                scaling["scale"].append(float(scale_state.scale))
                if not finite:
                    scaling["skipped"].append(step)
            if not math.isfinite(loss):
                raise Diverged(step, "loss")
            history.add_train(
                step, loss, time.perf_counter() - t0
            )  # the first step's time includes compilation
            if loop.Cadence.of(cfg).is_eval_step(step):
                nnx.update((model, optimizer), state)  # the objects see the new arrays
                history.add_val(step, evaluate(model, val, policy))
            if log:
                log(step, **{f"train_loss_{precision_name}": loss})
            advance(loss)
    nnx.update((model, optimizer), state)
    return model, history, scaling


def run(cfg: spec.Config, run) -> dict:
    """`week1 run mixed_precision --framework jax`: formats, demos, then fp32/bf16/fp16 training
    curves."""
    report.table(
        "number formats (jnp.finfo)", spec.FORMAT_COLUMNS, precision.number_formats(spec.FORMATS)
    )
    shown = demos()
    report.table(
        "demos (jnp)",
        ["demo", *spec.FORMATS, "what it shows"],
        [(demo, *(shown[demo][f] for f in spec.FORMATS), why) for demo, why in spec.DEMOS.items()],
    )
    data = charlm.load_data(cfg)
    results = {name: train(cfg, data, name, log=run.log) for name in cfg.precision_list}
    return spec.summarise(
        run,
        "JAX",
        {name: r[1] for name, r in results.items()},
        results["fp16"][2] if "fp16" in results else None,
    )


def compare_run(cfg: spec.Config, case: str, weights=None, *, show_progress=False):
    """`week1 compare mixed_precision`: train in precision `case` from `weights` (torch's names,
    numpy, converted through the training_loop's weight map; None: Flax's init); returns (the
    start weights under torch's names, Curves)."""
    data = charlm.load_data(cfg)
    if weights is None:
        weights = convert.flax_to_torch(get_weights(build_model(cfg, data.vocab_size, case)),
                                        charlm.WEIGHT_MAP)  # fmt: skip
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    _, history, _ = train(cfg, data, case, weights=flax_weights, show_progress=show_progress)
    return weights, Curves.of(history)


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
    timings = {}
    for name in cfg.precision_list:
        policy = precision.POLICIES[name]
        model = build_model(cfg, data.vocab_size, name)
        graphdef, state = nnx.split((model, base.make_optimizer(model, cfg)))
        if name == "fp16":
            scaler = precision.DynamicLossScale(**cfg.loss_scale)
            step_fn, scale_state = make_train_step_scaled(graphdef, policy, scaler), scaler.init()
            step = lambda: step_fn(state, scale_state, x, y)
        else:
            step_fn = make_train_step(graphdef, policy)
            step = lambda: step_fn(state, x, y)
        timing = time_calls(step, devices.sync)
        memory = {"saved for backward": saved_for_backward_bytes(model, x, y, policy)}
        stats = jax.devices()[0].memory_stats()  # None on the CPU
        if stats and "peak_bytes_in_use" in stats:
            memory["device peak (process)"] = stats["peak_bytes_in_use"]
        timings[f"jax {name}"] = timing.with_memory(memory)
    return timings
