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

Timing is done properly: a warm-up (compilation, caches, clocks), a device
sync after every call (`jax.block_until_ready`, `torch.cuda.synchronize`:
both frameworks launch asynchronously), and the median of the timed calls.

How to read the results
-----------------------
- First the number formats (max, smallest normal, machine epsilon from
  jnp.finfo / torch.finfo; the mixed_precision lab shows them at work).
- The table: TFLOP/s per dtype and size; `x fp32` is the speed-up over fp32
  at the same size.
- roofline.png: measured points against min(measured peak, I x measured
  bandwidth); bandwidth comes from timing a large elementwise multiply.
- On this CPU the sizes are small (64..512); `scripts/gpu_check.sh` runs the
  GPU sizes (up to 8192), where bf16/fp16 should reach several x fp32.

Run it:  week1 run gpu_basics --framework jax   (or torch)
"""

from __future__ import annotations

import dataclasses

from week1.config import require

DTYPES = ("fp32", "tf32", "bf16", "fp16")
BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2}  # tf32 is stored as fp32
CPU_SIZES = "64,128,256,512"
GPU_SIZES = "256,512,1024,2048,4096,8192"
RESULT_COLUMNS = ["dtype", "n", "median ms", "TFLOP/s", "FLOP/byte", "x fp32"]


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: str = "auto"  # comma-separated n, or "auto": CPU_SIZES / GPU_SIZES by device
    dtypes: str = ",".join(DTYPES)  # tf32 is measured only where the device has it
    warmup: int = 3
    iters: int = 10
    seed: int = 0
    bandwidth_mib: int = 64  # size of the array the bandwidth test streams

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
    median_s: float

    @property
    def tflops(self) -> float:
        return matmul_flops(self.n) / self.median_s / 1e12


def summarise(
    run, framework: str, device: str, results: list[Result], bandwidth: float, skipped: dict
) -> dict:
    """Table, TFLOP/s-vs-size and roofline plots in the run folder; the summary (peaks,
    bandwidth)."""
    from week1 import report

    fp32 = {r.n: r.tflops for r in results if r.dtype == "fp32"}
    rows = [
        (
            r.dtype,
            r.n,
            r.median_s * 1e3,
            r.tflops,
            intensity(r.n, r.dtype),
            r.tflops / fp32[r.n] if r.n in fp32 else float("nan"),
        )
        for r in results
    ]
    report.table(f"{framework} matmul on {device}", RESULT_COLUMNS, rows)
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
