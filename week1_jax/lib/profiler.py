"""jax.profiler around a step cut into phases (week1.profiler.Phases): the trace and its top
operations.

Used by the profiling lab and by `week1 profile <lab>` for any lab whose JAX
module offers `profile_phases(cfg)`.
"""

from __future__ import annotations

import pathlib

import jax

from week1 import profiler


def is_device_op(event: dict) -> bool:
    """XLA's own operations (fusions, dots; CPU thunks or GPU kernels) carry their HLO op name."""
    return "hlo_op" in event.get("args", {})


def profile(phases: profiler.Phases, steps: int, trace_dir, top_n: int):
    """Time `steps` steps under jax.profiler; returns (Breakdown, top operations, trace file)."""
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = (
        0  # Python frames would bury the step and take seconds to write out
    )
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True, profiler_options=options):
        breakdown = profiler.time_steps(phases, steps)
    trace_file = max(
        pathlib.Path(trace_dir).rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime
    )
    return (
        breakdown,
        profiler.top_ops(profiler.read_chrome_trace(trace_file), is_device_op, top_n),
        trace_file,
    )
