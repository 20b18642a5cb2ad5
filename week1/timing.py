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
    first_s: float  # the first call: tracing/compilation plus one step
    median_s: float  # median of the timed calls after warm-up
    iters: int
    memory: dict = dataclasses.field(
        default_factory=dict
    )  # what -> bytes, measured by the framework

    def with_memory(self, memory: dict) -> Timing:
        return dataclasses.replace(self, memory=dict(memory))

    @property
    def per_s(self) -> float:
        return 1.0 / self.median_s


def time_calls(
    fn: Callable[[], object], sync: Callable[[object], object], *, warmup: int = 3, iters: int = 20
) -> Timing:
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
