"""Profiling: each framework's trace is written and parses, names every phase, and the
phase breakdown adds up to the measured step time (within 10%)."""

import statistics

import pytest

from labs import profiling as spec
from week1 import profiler
from week1_jax import profiling as jprof
from week1_torch import profiling as tprof

CFG = spec.Config(batch_size=32, n_hidden=64, profile_steps=4)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_trace_parses_and_breakdown_adds_up(framework, tmp_path):
    lab = {"jax": jprof, "torch": tprof}[framework]
    breakdown, ops, trace_file = lab.profile(
        lab.profile_phases(CFG), CFG.profile_steps, tmp_path, 5
    )

    events = profiler.read_chrome_trace(trace_file)
    names = {event.get("name") for event in events}
    assert set(profiler.PHASES) <= names, f"phase annotations missing from {trace_file.name}"
    assert ops and {name for name, _, _ in ops} <= names, (
        "top operations must be events of the trace"
    )
    assert all(ms > 0 and calls > 0 for _, ms, calls in ops)

    timed = CFG.profile_steps - 1
    assert len(breakdown.steps) == timed and all(len(t) == timed for t in breakdown.phases.values())
    step = statistics.fmean(breakdown.steps)
    phases = sum(statistics.fmean(t) for t in breakdown.phases.values())
    assert abs(phases - step) <= 0.1 * step, (
        f"phases sum to {phases * 1e3:.3g} ms, step {step * 1e3:.3g} ms"
    )
