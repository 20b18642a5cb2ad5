"""`week1 profile <lab> --framework {jax,torch}`: trace a lab's training step and break it down.

A lab can be profiled when its framework module has `profile_phases(cfg)`,
returning its step as labs.profiling.Phases. The tracing itself is the
profiling lab's (week1_jax.profiling / week1_torch.profiling); the trace and a
summary go to a run folder.
"""
from __future__ import annotations

from labs import catalog, profiling, report
from labs.config import UsageError, override
from labs.runs import Run


def profile_lab(lab_id: str, framework: str, overrides: list[str], runs_dir="runs") -> dict:
    cfg = override(catalog.spec(lab_id).Config(), overrides)
    lab = catalog.framework_module(lab_id, framework)
    if not hasattr(lab, "profile_phases"):
        able = [l.id for l in catalog.LABS if l.implemented
                and hasattr(catalog.framework_module(l.id, framework), "profile_phases")]
        raise UsageError(f"lab {lab_id!r} has no profile workload; labs with one: {', '.join(able)}")
    tracer = catalog.framework_module("profiling", framework)
    # The profiling lab says how many steps to trace; other labs trace up to their own run length.
    steps = getattr(cfg, "profile_steps", max(2, min(profiling.PROFILE_STEPS, cfg.steps)))
    top_n = getattr(cfg, "top_ops", profiling.TOP_OPS)
    with Run(lab_id, f"{framework}-profile", cfg, root=runs_dir, tensorboard=False) as run:
        breakdown, ops, trace_file = tracer.profile(lab.profile_phases(cfg), steps, run.path("trace"), top_n)
        summary = profiling.summarise(f"{lab_id} ({framework})", breakdown, ops, trace_file.relative_to(run.dir))
        run.close(summary=summary)
    report.console.print(f"trace: {run.final / summary['trace']}\nrun folder: {run.final}")
    return summary
