"""Framework-free profiling tools: a step cut into synced phases, their timing, and Chrome traces.

A framework builds a `Phases` for its step (week1_jax/lib/profiler.py,
week1_torch/lib/profiler.py trace it); `time_steps` times each phase and each
whole step; `read_chrome_trace` and `top_ops` read what the profiler wrote.
Used by the profiling lab and by `week1 profile <lab>`.
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import pathlib
import statistics
import time
from collections.abc import Callable

PHASES = ("data", "forward_backward", "optimizer")
PROFILE_STEPS = 20  # steps traced by default; the first one includes compilation
TOP_OPS = 10


@dataclasses.dataclass(frozen=True)
class Phases:
    """One training step cut into synced phases, as a framework builds it (see profile_phases)."""

    data: Callable  # step -> batch on the device
    forward_backward: Callable  # batch -> (loss, grads)
    optimizer: Callable  # (loss, grads) -> None, parameters updated
    annotate: Callable  # name -> context manager that names the span in the trace


@dataclasses.dataclass
class Breakdown:
    first: dict  # phase -> seconds in step 1 (compilation included)
    phases: dict  # phase -> seconds in each later step
    steps: list  # measured wall time of each later step, start to end

    def rows(self) -> list[tuple]:
        """(phase, first-step ms, median ms, mean ms, share of the step %), then the sum and the
        step."""
        step_mean = statistics.fmean(self.steps)
        rows = [
            (
                p,
                self.first[p] * 1e3,
                statistics.median(t) * 1e3,
                statistics.fmean(t) * 1e3,
                100 * statistics.fmean(t) / step_mean,
            )
            for p, t in self.phases.items()
        ]
        total = sum(statistics.fmean(t) for t in self.phases.values())
        rows.append(
            (
                "sum of phases",
                sum(self.first.values()) * 1e3,
                float("nan"),
                total * 1e3,
                100 * total / step_mean,
            )
        )
        rows.append(
            (
                "measured step",
                float("nan"),
                statistics.median(self.steps) * 1e3,
                step_mean * 1e3,
                100.0,
            )
        )
        return rows

    @property
    def compile_s(self) -> float:
        """First step minus a typical step: tracing and compilation."""
        return sum(self.first.values()) - statistics.median(self.steps)


BREAKDOWN_COLUMNS = ["phase", "first step ms", "median ms", "mean ms", "% of step"]


def time_steps(phases: Phases, steps: int) -> Breakdown:
    """Run `steps` training steps, timing each phase and each whole step."""
    first, per_phase, step_times = {}, {p: [] for p in PHASES}, []
    for step in range(1, steps + 1):
        step_start = time.perf_counter()
        value = step
        for name in PHASES:
            with phases.annotate(name):
                start = time.perf_counter()
                value = getattr(phases, name)(value)
                elapsed = time.perf_counter() - start
            if step == 1:
                first[name] = elapsed
            else:
                per_phase[name].append(elapsed)
        if step > 1:
            step_times.append(time.perf_counter() - step_start)
    return Breakdown(first, per_phase, step_times)


def read_chrome_trace(path) -> list[dict]:
    """The events of a Chrome/Perfetto JSON trace (.json or .json.gz)."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def top_ops(events, keep: Callable[[dict], bool], n: int) -> list[tuple]:
    """(name, self ms, calls) of the `n` operations with the most self time, among the events
    `keep` selects.

    Operations nest (a scan's while loop holds its dots; torch's aten::linear
    holds aten::addmm): an event's self time is its duration minus that of the
    kept events directly inside it on the same thread, so no time counts twice.
    """
    spans = sorted(
        (e for e in events if e.get("ph") == "X" and keep(e)),
        key=lambda e: (e["pid"], e["tid"], e["ts"], -e.get("dur", 0.0)),
    )
    self_us, calls, open_spans = collections.defaultdict(float), collections.Counter(), []
    for event in spans:
        end = event["ts"] + event.get("dur", 0.0)
        while open_spans and (
            open_spans[-1][0] != (event["pid"], event["tid"]) or open_spans[-1][1] <= event["ts"]
        ):
            open_spans.pop()
        if open_spans:
            self_us[open_spans[-1][2]] -= event.get(
                "dur", 0.0
            )  # the parent's time spent in this child
        self_us[event["name"]] += event.get("dur", 0.0)
        calls[event["name"]] += 1
        open_spans.append(((event["pid"], event["tid"]), end, event["name"]))
    ranked = sorted(self_us.items(), key=lambda kv: -kv[1])[:n]
    return [(name, us / 1e3, calls[name]) for name, us in ranked]  # trace times are in microseconds


TOP_OPS_COLUMNS = ["operation", "self ms", "calls"]


def summarise(title: str, breakdown: Breakdown, ops: list, trace_file) -> dict:
    """Print the breakdown and top-operations tables; the summary of a profile run."""
    from week1 import report  # rich: imported when printing

    report.table(f"{title}: step breakdown", BREAKDOWN_COLUMNS, breakdown.rows())
    report.table(f"{title}: top operations in the trace", TOP_OPS_COLUMNS, ops)
    mean = {p: statistics.fmean(t) for p, t in breakdown.phases.items()}
    return {
        **{f"{p} ms": s * 1e3 for p, s in mean.items()},
        "step ms": statistics.fmean(breakdown.steps) * 1e3,
        "sum of phases / step": sum(mean.values()) / statistics.fmean(breakdown.steps),
        "first step compile s": breakdown.compile_s,
        "trace": str(trace_file),
    }
