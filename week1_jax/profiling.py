"""Profiling lab in JAX: jax.profiler trace of the training_loop step, cut into synced phases.

Read beside week1_torch/profiling.py. Every phase ends in
`jax.block_until_ready`: JAX dispatches asynchronously, so without it a
phase's time would show up in whichever later phase waits.
"""
from __future__ import annotations

import pathlib

import jax
from flax import nnx

from labs import profiling as spec
from labs import training_loop
from week1_jax import training_loop as base


@nnx.jit
def grads_of(model, x, y):
    return nnx.value_and_grad(base.loss_fn)(model, x, y)


@nnx.jit
def apply_grads(model, optimizer, grads):
    optimizer.update(model, grads)


def profile_phases(cfg: spec.Config) -> spec.Phases:
    """The training_loop step (char-MLP, AdamW) as data / forward_backward / optimizer phases."""
    data = training_loop.load_data(cfg)
    model = base.build_model(cfg, data.vocab_size)
    optimizer = base.make_optimizer(model, cfg)

    def batch(step):
        return jax.block_until_ready(base.as_arrays(*training_loop.train_batch(data, cfg, step)))

    def forward_backward(xy):
        return jax.block_until_ready(grads_of(model, *xy))

    def optimizer_step(loss_and_grads):
        apply_grads(model, optimizer, loss_and_grads[1])
        jax.block_until_ready(nnx.state(model))

    return spec.Phases(batch, forward_backward, optimizer_step, jax.profiler.TraceAnnotation)


def is_device_op(event: dict) -> bool:
    """XLA's own operations (fusions, dots; CPU thunks or GPU kernels) carry their HLO op name."""
    return "hlo_op" in event.get("args", {})


def profile(phases: spec.Phases, steps: int, trace_dir, top_n: int):
    """Time `steps` steps under jax.profiler; returns (Breakdown, top operations, trace file)."""
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0   # Python frames would bury the step and take seconds to write out
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True, profiler_options=options):
        breakdown = spec.time_steps(phases, steps)
    trace_file = max(pathlib.Path(trace_dir).rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    return breakdown, spec.top_ops(spec.read_chrome_trace(trace_file), is_device_op, top_n), trace_file


def run(cfg: spec.Config, run) -> dict:
    """`week1 run profiling --framework jax`: trace and break down the training_loop step."""
    breakdown, ops, trace_file = profile(profile_phases(cfg), cfg.profile_steps, run.path("trace"), cfg.top_ops)
    return spec.summarise("jax", breakdown, ops, trace_file.relative_to(run.path("")))
