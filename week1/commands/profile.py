"""`week1 profile <lab> --framework {jax,torch}`: trace a lab's training step and break it down.

A lab can be profiled when its framework module has `profile_phases(cfg)`,
returning its step as week1.profiler.Phases. The tracing is the framework
library's (week1_jax/lib/profiler.py, week1_torch/lib/profiler.py); the trace
and a summary go to a run folder.
"""

from __future__ import annotations

import importlib

from week1 import catalog, profiler, report
from week1.config import UsageError, override
from week1.runs import Run


def profile_lab(lab_id: str, framework: str, overrides: list[str], runs_dir="runs") -> dict:
    cfg = override(catalog.spec(lab_id).Config(), overrides)
    lab = catalog.framework_module(lab_id, framework)
    if not hasattr(lab, "profile_phases"):
        able = [
            entry.id
            for entry in catalog.LABS
            if entry.implemented
            and hasattr(catalog.framework_module(entry.id, framework), "profile_phases")
        ]
        raise UsageError(
            f"lab {lab_id!r} has no profile workload; labs with one: {', '.join(able)}"
        )
    tracer = importlib.import_module(f"week1_{framework}.lib.profiler")
    # The profiling lab says how many steps to trace; other labs trace up to their own run length.
    steps = getattr(cfg, "profile_steps", max(2, min(profiler.PROFILE_STEPS, cfg.steps)))
    top_n = getattr(cfg, "top_ops", profiler.TOP_OPS)
    with Run(lab_id, f"{framework}-profile", cfg, root=runs_dir, tensorboard=False) as run:
        breakdown, ops, trace_file = tracer.profile(
            lab.profile_phases(cfg), steps, run.path("trace"), top_n
        )
        summary = profiler.summarise(
            f"{lab_id} ({framework})", breakdown, ops, trace_file.relative_to(run.dir)
        )
        run.close(summary=summary)
    report.console.print(f"trace: {run.final / summary['trace']}\nrun folder: {run.final}")
    return summary
