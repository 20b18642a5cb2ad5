"""Timing harness shared by both frameworks: device time the way the field measures it.

Both frameworks launch work asynchronously: a call returns once its kernels are queued, and
the device runs them later, in order. What one call costs therefore has two answers:

- **device time per call** (`median_s`, throughput): queue `iters` calls back to back, wait
  once, divide. The host's launch cost hides behind the device's work, as in a training loop
  that never reads a value back; this is the figure FLOP/s, bandwidth and MFU are made of.
  It is `triton.testing.do_bench`'s method without the per-call events, and the only one both
  frameworks have (JAX has no device events).
- **latency** (`latency_s`): one call, then wait, every time: host dispatch + launch + device
  time + the host's round trip. A workload whose latency is well above its device time is
  *dispatch-bound* (small kernels, Python and framework overhead per call); one whose two
  figures agree is *device-bound*. The first H200 run timed only this way and halved JAX's
  matmul TFLOP/s, whose dispatch is heavier than torch's.

Optional, where a framework has them: `clock`, a device stopwatch (torch.cuda.Event pairs)
around the same queued batches (`device_s`, a cross-check free of host timer noise), and
`flush`, a call that overwrites a buffer larger than the L2 cache (do_bench's 256 MB
`cache.zero_()`): `cold_s` is then the per-call time with cold caches, the flush's own time
subtracted (a difference of two queued batches: meaningful for calls that take longer than the
flush's own run-to-run noise, the large matmuls on a GPU).

The caller passes `sync`, the framework's way to wait (`jax.block_until_ready` on the result,
`torch.cuda.synchronize`), so the harness stays framework-free. Waiting on the last result
covers the batch: a device runs its queue in order (one CUDA stream; a donated JAX state
chains the calls). Speeds are reported as ratios measured in one run, never asserted as wall
times.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Timing:
    first_s: float  # the first call: tracing/compilation plus one step
    median_s: float  # device time per call: median over batches of `iters` queued calls, 1 wait
    iters: int
    memory: dict = dataclasses.field(
        default_factory=dict
    )  # what -> bytes, measured by the framework
    latency_s: float | None = None  # median of `iters` calls, each waited for (host round trip)
    device_s: float | None = None  # the queued batches on the device's own clock, where it has one
    cold_s: float | None = None  # per call with the caches flushed before each (flush given)

    def with_memory(self, memory: dict) -> Timing:
        return dataclasses.replace(self, memory=dict(memory))

    @property
    def per_s(self) -> float:
        return 1.0 / self.median_s

    @property
    def dispatch_ratio(self) -> float | None:
        """Latency over device time: ~1 device-bound, >> 1 dispatch-bound (None: not measured)."""
        return self.latency_s / self.median_s if self.latency_s else None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _queued(fn: Callable[[], object], sync: Callable[[object], object], n: int, clock=None):
    """Seconds for `n` calls queued back to back and one wait (and on `clock`, if given: its
    end is queued behind the calls, before the wait)."""
    stop = clock() if clock else None
    start = time.perf_counter()
    result = None
    for _ in range(n):
        result = fn()
    read = stop() if stop else None
    sync(result)
    wall = time.perf_counter() - start
    return wall, (read() if read else None)


def time_calls(
    fn: Callable[[], object],
    sync: Callable[[object], object],
    *,
    warmup: int = 3,
    iters: int = 20,
    batches: int = 3,
    clock: Callable[[], Callable[[], float]] | None = None,
    flush: Callable[[], object] | None = None,
) -> Timing:
    """Time `fn()`: the first call (compile) apart, `warmup` more, then the latency (`iters`
    calls each waited for) and the device time per call (`batches` batches of `iters` queued
    calls, one wait each; the median batch).

    clock: a device stopwatch (torch.cuda.Event pairs): `clock()` starts it and returns `stop`;
    `stop()` queues its end and returns `read`; `read()` waits for the end and returns seconds.
    flush: evicts the caches (see the module docstring)."""
    start = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - start
    for _ in range(warmup):
        sync(fn())
    latencies = []
    for _ in range(iters):
        start = time.perf_counter()
        sync(fn())
        latencies.append(time.perf_counter() - start)
    queued = [_queued(fn, sync, iters, clock) for _ in range(batches)]
    device_s = statistics.median(d for _, d in queued) / iters if clock else None
    cold_s = None
    if flush is not None:

        def flushed():  # both results: the wait covers the flushes too (JAX's CPU client may
            return flush(), fn()  # run independent computations side by side)

        with_flush = statistics.median(_queued(flushed, sync, iters)[0] for _ in range(batches))
        alone = statistics.median(_queued(flush, sync, iters)[0] for _ in range(batches))
        cold_s = max(with_flush - alone, 0.0) / iters
    return Timing(
        first_s=first,
        median_s=statistics.median(w for w, _ in queued) / iters,
        iters=iters,
        latency_s=statistics.median(latencies),
        device_s=device_s,
        cold_s=cold_s,
    )


# ---------------------------------------------------------------------------------------------
# FLOPs, peaks and model FLOP utilisation (MFU)
#
# MFU = (model FLOPs per step / seconds per step) / peak FLOP/s. The model FLOPs are the matmul
# FLOPs of the model's maths, counted analytically (2 per multiply-add; a training step is the
# forward pass and a backward pass of twice its cost, hence 3x the forward pass); elementwise
# work, the optimizer and recomputation are left out, as in PaLM's MFU (Chowdhery et al. 2022,
# appendix B). Counters cross-check the analytic count: XLA's `compiled.cost_analysis()["flops"]`
# and torch's `FlopCounterMode`.

# Dense peaks from NVIDIA's datasheets, TFLOP/s: "bf16" on tensor cores, "fp32" without them
# (TF32 off, as these labs run fp32). Sparsity figures (2x) are not peaks. Longest name first:
# "H100 PCIe" must win over "H100".
DATASHEET_TFLOPS = {
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp32": 66.9},  # SXM5 (torch: "NVIDIA H100 80GB HBM3")
    "H200": {"bf16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.1, "fp32": 91.6},
    "L4": {"bf16": 121.0, "fp32": 30.3},
}


def datasheet_peak(device_name: str, precision: str) -> float | None:
    """The datasheet's dense peak in FLOP/s for `precision` on the device named `device_name`
    ("NVIDIA H100 80GB HBM3", ...), or None for a device the table does not know (a CPU)."""
    for model, peaks in DATASHEET_TFLOPS.items():
        if model in device_name and precision in peaks:
            return peaks[precision] * 1e12
    return None


def mfu(flops_per_step: float, seconds_per_step: float, peak_flops: float | None) -> float | None:
    """Model FLOP utilisation: achieved model FLOP/s over the peak (None without a peak)."""
    if not peak_flops or not seconds_per_step:
        return None
    return flops_per_step / seconds_per_step / peak_flops


def flops_agree(analytic: float, counted: float | None, tolerance: float = 0.10) -> bool | None:
    """Whether a counter's FLOPs are within `tolerance` (relative) of the analytic count; None
    when there is no count."""
    if not counted:
        return None
    return abs(counted - analytic) <= tolerance * analytic


# ---------------------------------------------------------------------------------------------
# Peak host memory (what can be measured of a step on a CPU)
#
# Linux keeps a process's resident-set high-water mark (VmHWM in /proc/self/status); writing
# "5" to /proc/self/clear_refs resets it to the current RSS (Linux >= 4.0). Elsewhere both
# functions return None.


def rss_bytes(field: str = "VmRSS") -> int | None:
    """This process's resident set size (or, with field="VmHWM", its high-water mark), bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS; False where the system does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True
