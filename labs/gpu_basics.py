"""Lab: what the hardware does per number format: matmul throughput and a measured roofline.

What it teaches
---------------
An n x n matmul does 2 n^3 floating-point operations (a multiply and an add
per term) and must at least read A and B and write C: 3 n^2 elements. Its
*arithmetic intensity* is therefore

    I(n) = 2 n^3 / (3 n^2 * bytes per element) = 2n / (3 * bytes)   FLOP/byte.

A device reaches its compute peak P only when I is above P / B (B: its memory
bandwidth, bytes/s); below that it waits for memory and reaches I * B at most.
That is the roofline: attainable = min(P, I * B). Small matmuls sit on the
slanted (memory/overhead) part, large ones on the flat part.

The formats: fp32; tf32 (NVIDIA Ampere+ tensor cores: fp32 range with a
10-bit mantissa, used for fp32 matmuls when allowed); bf16 and fp16 (tensor
cores, several times fp32's peak, half the bytes). On a CPU without matrix
units bf16/fp16 are often slower than fp32.

Timing is done as the field does it, the same way in both frameworks
(week1/timing.py): a warm-up (compilation, autotuning, caches, clocks), then
two numbers per matmul. *Device time* (`median ms`, what TFLOP/s is made of):
`iters` calls queued back to back and one wait at the end
(`jax.block_until_ready`, `torch.cuda.synchronize`: both frameworks launch
asynchronously), the median of three such batches. *Latency*: one call, one
wait, every time, so it adds the host's dispatch and round trip. Their ratio
(`dispatch`) says which bound a matmul is: near 1 it is *device-bound* (the
device is busy all the time; the framework's overhead hides behind it); well
above 1 it is *dispatch-bound* (small matmuls: Python, the framework's
dispatch and the kernel launch cost more than the maths, and a faster device
would not help). Timing only the latency, one host round trip per call,
understates a fast device, the more so the heavier a framework's dispatch
(this lab's first H200 run did so, JAX's figures most). On a GPU, torch
also clocks the queued batches with CUDA events (`week1 bench gpu_basics`
shows them beside the wall clock, a cross-check); `cold=true` adds `cold ms`,
each call after an L2 flush, as `triton.testing.do_bench` times kernels.

Bandwidth is the same kernel in both: y = 2y over `bandwidth_mib` of fp32,
in place (torch `mul_`, JAX a donated buffer), so each call reads and writes
the array once into the same memory. An out-of-place `2 * x` would time the
allocator as well (fresh pages on a CPU), differently in each framework. The
array must be far larger than the last cache level (a CPU's L3, a GPU's L2,
tens of MiB), or part of it is read from the cache and the figure swings.

How to read the results
-----------------------
- First the number formats (max, smallest normal, machine epsilon from
  jnp.finfo / torch.finfo; the mixed_precision lab shows them at work).
- The table: TFLOP/s per dtype and size; `x fp32` is the speed-up over fp32
  at the same size.
- `dispatch` (latency / device time): the small sizes are dispatch-bound,
  the large ones device-bound; on a GPU the cross-over is at far larger n.
- roofline.png: measured points against min(measured peak, I x measured
  bandwidth); bandwidth comes from the in-place 2y above.
- On this CPU the sizes are small (64..512); `scripts/gpu_check.sh` runs the
  GPU sizes (1024, 4096, 8192: a compile and autotuning per size and dtype,
  inside 30 s per framework), where bf16/fp16 should reach several x fp32.

Run it:  week1 run gpu_basics --framework jax   (or torch)

History: docs/history.md#krizhevsky-2012
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from week1 import formats, report
from week1.config import require
from week1.exercises import Exercise, Part
from week1.timing import time_calls

DTYPES = ("fp32", "tf32", "bf16", "fp16")
BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2}  # tf32 is stored as fp32
CPU_SIZES = "64,128,256,512"
GPU_SIZES = "1024,4096,8192"
RESULT_COLUMNS = [
    "dtype", "n", "median ms", "TFLOP/s", "latency ms", "dispatch", "FLOP/byte", "x fp32"
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: str = "auto"  # comma-separated n, or "auto": CPU_SIZES / GPU_SIZES by device
    dtypes: str = ",".join(DTYPES)  # tf32 is measured only where the device has it
    warmup: int = 3
    iters: int = 10
    seed: int = 0
    bandwidth_mib: int = 256  # the array the bandwidth test streams: >> any L2/L3 cache
    cold: bool = False  # also time each matmul with the L2 cache flushed before it (do_bench)

    def check(self) -> None:
        for name in self.dtype_list:
            require(
                name in DTYPES,
                f"dtypes={self.dtypes!r}: {name!r} is not one of {', '.join(DTYPES)}",
            )
        if self.sizes != "auto":
            require(
                all(part.strip().isdigit() and int(part) > 0 for part in self.sizes.split(",")),
                f"sizes={self.sizes!r}: expected 'auto' or positive integers separated by commas",
            )
        require(self.warmup >= 0, f"warmup={self.warmup}: must be >= 0")
        require(self.iters >= 1, f"iters={self.iters}: must be >= 1")
        require(self.bandwidth_mib >= 1, f"bandwidth_mib={self.bandwidth_mib}: must be >= 1")

    @property
    def dtype_list(self) -> list[str]:
        return [name.strip() for name in self.dtypes.split(",") if name.strip()]

    def size_list(self, on_gpu: bool) -> list[int]:
        sizes = (GPU_SIZES if on_gpu else CPU_SIZES) if self.sizes == "auto" else self.sizes
        return [int(part) for part in sizes.split(",")]


def matmul_flops(n: int) -> int:
    return 2 * n**3


def intensity(n: int, dtype: str) -> float:
    """FLOP per byte of an n x n matmul that reads A, B and writes C once."""
    return matmul_flops(n) / (3 * n * n * BYTES[dtype])


@dataclasses.dataclass(frozen=True)
class Result:
    dtype: str
    n: int
    median_s: float  # device time per call (queued calls, one wait)
    latency_s: float  # one call and its wait
    cold_s: float | None = None  # after an L2 flush (cold=true)

    @property
    def tflops(self) -> float:
        return matmul_flops(self.n) / self.median_s / 1e12


def result(dtype: str, n: int, timing) -> Result:
    """One (dtype, n) point of a week1.timing.Timing."""
    return Result(dtype, n, timing.median_s, timing.latency_s, timing.cold_s)


def bandwidth_of(nbytes: int, timing) -> float:
    """Bytes/s of the in-place y = 2y over `nbytes`: each call reads and writes them once."""
    return 2 * nbytes / timing.median_s


def summarise(
    run, framework: str, device: str, results: list[Result], bandwidth: float, skipped: dict
) -> dict:
    """Table, TFLOP/s-vs-size and roofline plots in the run folder; the summary (peaks,
    bandwidth)."""
    fp32 = {r.n: r.tflops for r in results if r.dtype == "fp32"}
    rows = [
        (
            r.dtype,
            r.n,
            r.median_s * 1e3,
            r.tflops,
            r.latency_s * 1e3,
            r.latency_s / r.median_s,
            intensity(r.n, r.dtype),
            r.tflops / fp32[r.n] if r.n in fp32 else float("nan"),
        )
        for r in results
    ]
    columns = RESULT_COLUMNS
    if any(r.cold_s is not None for r in results):  # cold=true
        columns = [*RESULT_COLUMNS, "cold ms"]
        rows = [(*row, r.cold_s * 1e3) for row, r in zip(rows, results, strict=True)]
    report.table(f"{framework} matmul on {device}", columns, rows)
    dtypes = list(dict.fromkeys(r.dtype for r in results))
    by_dtype = {d: [r for r in results if r.dtype == d] for d in dtypes}
    peak = {d: max(r.tflops for r in rs) for d, rs in by_dtype.items()}
    report.plot_lines(
        run.path("tflops_vs_size.png"),
        {d: ([r.n for r in rs], [r.tflops for r in rs]) for d, rs in by_dtype.items()},
        title=f"{framework} matmul throughput on {device}",
        xlabel="n (n x n @ n x n)",
        ylabel="TFLOP/s",
        logy=True,
        styles={d: "o-" for d in dtypes},
    )
    series = {}
    for d, rs in by_dtype.items():
        x = [intensity(r.n, d) for r in rs]
        series[f"{d} measured"] = (x, [r.tflops for r in rs])
        series[f"{d} roofline"] = (x, [min(peak[d], i * bandwidth / 1e12) for i in x])
    report.plot_lines(
        run.path("roofline.png"),
        series,
        title=f"{framework} roofline on {device} (bandwidth {bandwidth / 1e9:.0f} GB/s)",
        xlabel="arithmetic intensity (FLOP/byte)",
        ylabel="TFLOP/s",
        logy=True,
        styles={
            f"{d} {k}": ("o" if k == "measured" else "--")
            for d in dtypes
            for k in ("measured", "roofline")
        },
    )
    summary = {f"{d} peak TFLOP/s": p for d, p in peak.items()}
    summary["bandwidth GB/s"] = bandwidth / 1e9
    summary.update({f"{d} skipped": why for d, why in skipped.items()})
    return summary


@dataclasses.dataclass(frozen=True)
class Matmuls:
    """What the sweep needs from a framework."""

    framework: str
    device: str  # "cpu", "cuda:NVIDIA H100 ...", "gpu:H100 ..."
    on_gpu: bool  # the sizes: GPU_SIZES or CPU_SIZES
    finfo: str  # where the number formats come from: "jnp.finfo", "torch.finfo"
    number_formats: Callable  # week1.formats.FORMATS -> the table's rows
    unavailable: Callable  # dtype -> why it cannot be measured here, or None
    matmul: Callable  # dtype -> fn(a, b): a @ b computed as the dtype asks
    operands: Callable  # (n, dtype, seed) -> (a, b) on the device
    double_in_place: Callable  # cfg -> (bytes, Timing) of the in-place y = 2y
    sync: Callable  # waits for a result (time_calls' `sync`)
    cache_flush: Callable  # () -> a call that flushes the L2 cache (time_calls' `flush`)
    clock: Callable | None  # a device stopwatch (time_calls' `clock`), or None


def measure(cfg: Config, m: Matmuls) -> tuple[list[Result], dict]:
    """Device time and latency of each (dtype, n) matmul (week1.timing): (results, {dtype: why
    skipped})."""
    results, skipped = [], {}
    flush = m.cache_flush() if cfg.cold else None
    for dtype in cfg.dtype_list:
        if m.unavailable(dtype):
            skipped[dtype] = m.unavailable(dtype)
            continue
        fn = m.matmul(dtype)
        for n in cfg.size_list(m.on_gpu):
            a, b = m.operands(n, dtype, cfg.seed)
            timing = time_calls(
                lambda: fn(a, b), m.sync, warmup=cfg.warmup, iters=cfg.iters, flush=flush
            )
            results.append(result(dtype, n, timing))
    return results, skipped


def run_sweep(cfg: Config, run, m: Matmuls) -> dict:
    """`week1 run gpu_basics`: the number formats, the sweep, its table and two plots."""
    report.table(
        f"number formats ({m.finfo})", formats.FORMAT_COLUMNS, m.number_formats(formats.FORMATS)
    )
    results, skipped = measure(cfg, m)
    for r in results:
        run.log(r.n, **{f"tflops/{r.dtype}": r.tflops})
    bandwidth = bandwidth_of(*m.double_in_place(cfg))
    return summarise(run, m.framework, m.device, results, bandwidth, skipped)


def bench(cfg: Config, m: Matmuls) -> dict:
    """`week1 bench gpu_basics`: the largest matmul in each available dtype, and the in-place
    2y of the bandwidth test."""
    n = cfg.size_list(m.on_gpu)[-1]
    timings = {}
    for dtype in cfg.dtype_list:
        if not m.unavailable(dtype):
            fn, (a, b) = m.matmul(dtype), m.operands(n, dtype, cfg.seed)
            timings[f"{m.framework} {dtype} n={n}"] = time_calls(
                lambda: fn(a, b), m.sync, warmup=cfg.warmup, iters=cfg.iters, clock=m.clock
            )
    timings[f"{m.framework} 2y {cfg.bandwidth_mib} MiB"] = m.double_in_place(cfg)[1]
    return timings


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "matmul",
        hints=(
            (
                "One function per precision: a @ b computed as the dtype name asks (fp32 exactly, "
                "or the reduced-precision algorithm), so both frameworks do the same arithmetic."
            ),
            (
                "jax: jax.jit(lambda a, b: jnp.matmul(a, b, precision=ALGORITHM[dtype])). torch: a "
                "@ b inside `with tf32_matmuls(dtype == 'tf32')`."
            ),
        ),
        jax=Part(
            "week1_jax/gpu_basics.py::matmul", "test_gpu_basics.py::test_matmul_jax_equal_torch"
        ),
        torch=Part(
            "week1_torch/gpu_basics.py::matmul", "test_gpu_basics.py::test_matmul_jax_equal_torch"
        ),
    ),
)
