"""Profiling lab in JAX: jax.profiler trace of the char LM's step, cut into synced phases.

Read beside week1_torch/profiling.py. Every phase ends in `devices.sync`
(jax.block_until_ready): JAX dispatches asynchronously, so without it a phase's
time would show up in whichever later phase waits. The tracing is
week1_jax/lib/profiler.py's, shared with `week1 profile <lab>`.
"""

from __future__ import annotations

import jax
from flax import nnx

from labs import profiling as spec
from week1 import charlm, profiler
from week1_jax.lib import charlm as base
from week1_jax.lib import devices, steps
from week1_jax.lib.profiler import profile


@nnx.jit
def grads_of(model, x, y):
    return nnx.value_and_grad(base.loss_fn)(model, x, y)


def profile_phases(cfg: spec.Config) -> profiler.Phases:
    """The char LM's training step (char-MLP, AdamW) as data / forward_backward / optimizer
    phases."""
    data = charlm.load_data(cfg)
    model = base.build_model(cfg, data.vocab_size)
    optimizer = base.make_optimizer(model, cfg)

    def batch(step):
        return devices.sync(base.as_arrays(*charlm.train_batch(data, cfg, step)))

    def forward_backward(xy):
        return devices.sync(grads_of(model, *xy))

    def optimizer_step(loss_and_grads):
        steps.apply_grads(model, optimizer, loss_and_grads[1])
        devices.sync(nnx.state(model))

    return profiler.Phases(batch, forward_backward, optimizer_step, jax.profiler.TraceAnnotation)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run profiling --framework jax`: trace and break down the char LM's step."""
    breakdown, ops, trace_file = profile(
        profile_phases(cfg), cfg.profile_steps, run.path("trace"), cfg.top_ops
    )
    return profiler.summarise("jax", breakdown, ops, trace_file.relative_to(run.path("")))
