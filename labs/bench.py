"""Timing harness shared by both frameworks: warm-up, sync, median, compile time.

The caller passes `sync`, the framework's way to wait for the device
(`jax.block_until_ready` on the result, `torch.cuda.synchronize`), so the
harness itself stays framework-free. Speeds are reported as ratios measured in
one run, never asserted as wall times.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Timing:
    first_s: float      # the first call: tracing/compilation plus one step
    median_s: float     # median of the timed calls after warm-up
    iters: int
    memory: dict = dataclasses.field(default_factory=dict)  # what -> bytes, measured by the framework

    def with_memory(self, memory: dict) -> "Timing":
        return dataclasses.replace(self, memory=dict(memory))

    @property
    def per_s(self) -> float:
        return 1.0 / self.median_s


def time_calls(fn: Callable[[], object], sync: Callable[[object], object], *,
               warmup: int = 3, iters: int = 20) -> Timing:
    """Time `fn()`: first call (compile), `warmup` more, then the median of `iters` synced calls."""
    start = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - start
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return Timing(first, statistics.median(times), iters)


def bench_labs(lab_ids: list[str], overrides: list[str]) -> int:
    """`week1 bench [lab ...]`: each framework module's bench(cfg) -> {variant: Timing}, as one table.

    Ratios are against the first variant measured (JAX jit) in this same run.
    """
    from labs import catalog, report
    from labs.config import override

    if not lab_ids:
        lab_ids = [lab.id for lab in catalog.LABS
                   if lab.implemented and hasattr(catalog.framework_module(lab.id, "jax"), "bench")]
    for lab_id in lab_ids:
        cfg = override(catalog.spec(lab_id).Config(), overrides)
        timings = {}
        for framework in catalog.FRAMEWORKS:
            module = catalog.framework_module(lab_id, framework)
            if not hasattr(module, "bench"):
                raise catalog.UsageError(f"lab {lab_id!r} has no bench workload")
            timings.update(module.bench(cfg))
        base = next(iter(timings.values()))
        memory = list(dict.fromkeys(k for t in timings.values() for k in t.memory))  # in order of appearance
        rows = [(name, t.median_s * 1e3, t.per_s, base.median_s / t.median_s, t.first_s,
                 *(t.memory[k] / 2**20 if k in t.memory else "-" for k in memory))
                for name, t in timings.items()]
        report.table(f"bench {lab_id} (median of {base.iters} calls after warm-up)",
                     ["variant", "median ms", "calls/s", "speed vs first", "first call s",
                      *(f"{k} MiB" for k in memory)], rows)
    return 0
