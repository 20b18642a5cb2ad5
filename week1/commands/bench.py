"""`week1 bench [lab ...]`: each lab's workload timed in JAX jit, torch eager and torch.compile."""

from __future__ import annotations


def bench_labs(lab_ids: list[str], overrides: list[str]) -> int:
    """`week1 bench [lab ...]`: each framework module's bench(cfg) -> {variant: Timing}, as one
    table.

    Ratios are against the first variant measured (JAX jit) in this same run.
    """
    from week1 import catalog, report
    from week1.config import override

    if not lab_ids:
        lab_ids = [
            lab.id
            for lab in catalog.LABS
            if lab.implemented and hasattr(catalog.framework_module(lab.id, "jax"), "bench")
        ]
    for lab_id in lab_ids:
        cfg = override(catalog.spec(lab_id).Config(), overrides)
        timings = {}
        for framework in catalog.FRAMEWORKS:
            module = catalog.framework_module(lab_id, framework)
            if not hasattr(module, "bench"):
                raise catalog.UsageError(f"lab {lab_id!r} has no bench workload")
            timings.update(module.bench(cfg))
        base = next(iter(timings.values()))
        memory = list(
            dict.fromkeys(k for t in timings.values() for k in t.memory)
        )  # in order of appearance
        rows = [
            (
                name,
                t.median_s * 1e3,
                t.per_s,
                base.median_s / t.median_s,
                t.first_s,
                *(t.memory[k] / 2**20 if k in t.memory else "-" for k in memory),
            )
            for name, t in timings.items()
        ]
        report.table(
            f"bench {lab_id} (median of {base.iters} calls after warm-up)",
            [
                "variant",
                "median ms",
                "calls/s",
                "speed vs first",
                "first call s",
                *(f"{k} MiB" for k in memory),
            ],
            rows,
        )
    return 0
