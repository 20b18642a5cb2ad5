"""torch.profiler around a step cut into phases (week1.profiler.Phases): the trace and its top
operations.

Used by the profiling lab and by `week1 profile <lab>` for any lab whose torch
module offers `profile_phases(cfg)`.
"""

from __future__ import annotations

import pathlib

import torch
from torch.profiler import ProfilerActivity

from week1 import profiler


def op_category(events) -> str:
    """CUDA kernels where the step ran on a GPU, else aten operators (and autograd nodes) on the
    CPU."""
    return "kernel" if any(event.get("cat") == "kernel" for event in events) else "cpu_op"


def profile(phases: profiler.Phases, steps: int, trace_dir, top_n: int):
    """Time `steps` steps under torch.profiler; returns (Breakdown, top operations, trace file)."""
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
    )
    trace_dir = pathlib.Path(trace_dir)
    with torch.profiler.profile(
        activities=activities,
        on_trace_ready=torch.profiler.tensorboard_trace_handler(str(trace_dir)),
    ):
        breakdown = profiler.time_steps(phases, steps)
    trace_file = max(trace_dir.glob("*.pt.trace.json*"), key=lambda p: p.stat().st_mtime)
    events = profiler.read_chrome_trace(trace_file)
    category = op_category(events)
    return (
        breakdown,
        profiler.top_ops(events, lambda event: event.get("cat") == category, top_n),
        trace_file,
    )
