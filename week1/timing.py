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
