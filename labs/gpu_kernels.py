"""Lab: the CUDA programming model, written as kernels (Triton for torch, Pallas for JAX).

What it teaches
---------------
A GPU is a set of *streaming multiprocessors* (SMs: 132 on an H100 SXM5 or an
H200). A kernel launch is a *grid* of *blocks* (CUDA's thread blocks; Triton's
and Pallas' *programs*); each block is placed on one SM and stays there until
it finishes, and the SM runs its threads in *warps* of 32 that execute one
instruction together (at most 64 warps and 32 blocks resident per SM). The
memory a kernel sees, fastest and smallest first (H100 SXM5 / H200, from the
datasheets and the CUDA programming guide's compute-capability 9.0 table):

    registers      64K 32-bit registers per SM (at most 255 per thread)
    shared memory  up to 228 KB per SM (227 KB to one block), carved from the
                   256 KB L1; on-chip, 128 bytes per clock per SM
    L2             50 MB, shared by all SMs
    HBM            80 GB HBM3 at 3.35 TB/s (H100) / 141 GB HBM3e at 4.8 TB/s (H200)

against 989 dense bf16 TFLOP/s on the tensor cores (67 fp32 TFLOP/s without
them): about 300 (H100) or 200 (H200) bf16 FLOPs per byte of HBM before a
kernel stops waiting for memory (gpu_basics measures this roofline). A kernel
is fast when it keeps the tensor cores fed: it reads each byte of HBM as few
times as possible, and works on tiles that live in registers and shared memory
meanwhile. Where a GPU is present, `week1 env` names it and its memory.

Triton and Pallas let you write at the level of the *block*: the code of one
program works on whole tiles (`tl.arange`, `jnp.arange` over a BLOCK), and the
compiler spreads each tile over the block's warps and threads. `program_id`
says which tile this program owns; the *grid* says how many programs there are.

The four kernels, each written in both languages, side by side:

1. vector add: the grid (`cdiv(n, BLOCK)` programs), `program_id`, and the
   masked load/store at the ragged edge (n is rarely a multiple of BLOCK).
   Consecutive threads read consecutive addresses: the loads are *coalesced*
   (a warp's 32 reads become a few 128-byte transactions). One FLOP per 12
   bytes in fp32: it can only ever run at memory speed.
2. fused row softmax: one program per row, the whole row in registers, the
   row's max subtracted before `exp` (without it exp overflows: the checked
   inputs sit near 100 on purpose), one read and one write of HBM. The
   unfused version (max, subtract, exp, sum, divide as separate kernels) reads
   about 5MN and writes 3MN elements for an M x N input (Triton tutorial 02).
3. tiled matmul: each program computes one BLOCK_M x BLOCK_N tile of C,
   looping over K in BLOCK_K steps and accumulating in fp32 (`tl.dot` /
   `jnp.dot` on tiles: the tensor cores' MMA instructions). A tile reads
   (BLOCK_M + BLOCK_N) x BLOCK_K elements per 2 BLOCK_M BLOCK_N BLOCK_K FLOPs:
   bigger tiles, higher *arithmetic intensity*, but more registers and shared
   memory per block, hence fewer blocks resident per SM (*occupancy*).
   Program ids are *grouped*: GROUP_M consecutive programs walk down a column
   of tiles, so the B tiles they share are still in L2 (Triton tutorial 03).
4. fused cross-entropy forward: one program per row walks the vocabulary in
   BLOCK chunks with an *online* logsumexp (running max and rescaled running
   sum: Milakov and Gimelshein 2018, the same trick as FlashAttention), and
   writes one float per row. The unfused loss materialises the N x V log-
   probabilities first: with fp32 log-probs for 8192 tokens over a 128k
   vocabulary that is 4 GiB that the fused kernel never allocates (the idea of
   Liger Kernel's fused cross-entropy).

Block sizes are powers of 2 (`tl.constexpr` / static Python ints): the
compiler unrolls and lays out tiles at compile time. `num_warps` sets the
threads per block; `num_stages` how many K tiles are prefetched ahead (shared
memory traded for hidden latency).

How to read the results
-----------------------
- The correctness table: each kernel against the framework's own op
  (`x + y`, `torch.softmax` / `jax.nn.softmax`, `a @ b`, `F.cross_entropy` /
  `optax.softmax_cross_entropy_with_integer_labels`) on widths that are not
  multiples of a block (1, 127, 1000, 4097), fp32 in the F32 tier and bf16 in
  the BF16 tier; headroom is the worst element's distance as a fraction of the
  tier's allowance (1.0 = at the limit). `parity_tests/test_gpu_kernels.py`
  also holds the Triton and the Pallas kernel against each other.
- On a CPU the kernels run in an interpreter (Triton's `TRITON_INTERPRET=1`,
  Pallas' `interpret=True`): programs run one after another in numpy/XLA, so
  timings mean nothing; correctness is what a CPU shows.
- On a GPU (`week1 bench gpu_kernels`; `scripts/gpu_check.sh` runs it): the
  matmul's block-size sweep in TFLOP/s against cuBLAS / XLA on the same shape,
  the fused softmax's GB/s against the framework's softmax and the unfused
  one (place them on gpu_basics' roofline: softmax is memory-bound, so GB/s
  against the measured bandwidth is its efficiency), and the fused loss's
  peak memory against the unfused loss's, all as ratios.

References: Triton tutorials 01-03 (vector add, fused softmax, matrix
multiplication); the Pallas quickstart and "Pallas on GPU (Triton)" docs;
NVIDIA H100 Tensor Core GPU Architecture whitepaper and H200 datasheet; CUDA
C++ Programming Guide (hardware model, coalescing, occupancy); Dao et al. 2022,
FlashAttention (IO-awareness); Hsu et al. 2024, Liger Kernel.
Triton's debugging guide notes that its interpreter does not compute on
bfloat16: the kernels convert bf16 to fp32 after loading (which the GPU does
as well), and the matmul converts its bf16 tiles before `tl.dot` only when
interpreted (bf16 products are exact in fp32, so the numbers do not change).
The interpreter (triton 3.7) also converts fp32 to bf16 by truncation where a
GPU rounds to nearest: a Triton bf16 output may sit one bf16 step from torch's
on a CPU, inside the BF16 tier (its headroom shows it).
The library loss the fused one is held against computes in fp32 from the
logits (`F.cross_entropy(logits.float(), ...)`, optax on `logits.astype(
float32)`), as mixed-precision training does: its memory is the fp32 copy and
the log-probabilities, which the fused kernel never writes.

Run it:  week1 run gpu_kernels --framework jax   (or torch; torch needs triton:
         pip install -e '.[kernels]', which scripts/setup.sh does)
         week1 bench gpu_kernels                  (the GPU figures, as ratios)

History: docs/history.md#krizhevsky-2012, #dao-2022
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from week1 import report, tolerances
from week1.config import Range, require
from week1.exercises import Exercise, Part
from week1.timing import time_calls

KERNELS = ("vector_add", "softmax", "matmul", "cross_entropy")
DTYPES = ("fp32", "bf16")
TIERS = {"fp32": tolerances.F32, "bf16": tolerances.BF16}
MATMUL_N = 127  # columns of the checked matmul's B and C
OFFSET = 100.0  # added to softmax and cross-entropy inputs: exp(100) overflows fp32
CPU_SWEEP = "32x32x32"
GPU_SWEEP = "64x64x32,128x64x32,128x128x32,128x128x64,128x256x64,256x128x64"
BENCH_SIZES = {  # matmul n (n x n x n), softmax (rows, cols), cross-entropy (tokens, vocabulary)
    "cpu": {"matmul": (64, 64, 64), "softmax": (32, 1024), "cross_entropy": (16, 4096)},
    "gpu": {"matmul": (4096, 4096, 4096), "softmax": (16384, 4096), "cross_entropy": (4096, 32768)},
}
CHECK_COLUMNS = ["kernel", "dtype", "shape", "max abs", "max rel", "headroom", "ok"]


@dataclasses.dataclass(frozen=True)
class Config:
    widths: str = "1,127,1000,4097"  # columns of the checked inputs (not multiples of a block)
    rows: int = 33  # rows of each checked softmax / cross-entropy input and of the matmul's A
    dtypes: str = ",".join(DTYPES)
    block: int = 1024  # BLOCK of the vector add and of the cross-entropy's walk over columns
    block_m: int = 32  # the checked matmul's tiles: rows of C
    block_n: int = 32  # (columns of C)
    block_k: int = 32  # (the K loop's step)
    group_m: int = 8  # block-rows per group of program ids (L2 reuse)
    sweep: str = "auto"  # matmul tiles BMxBNxBK that bench times; auto: by device
    bench_sizes: str = "auto"  # auto, cpu or gpu: the sizes bench times (BENCH_SIZES)
    bench_dtype: str = "bf16"  # the dtype of every bench input (bf16: the tensor cores)
    warmup: int = 3
    iters: int = 10
    seed: int = 0

    RANGES = {
        "rows": Range(1, 4096),
        "block": Range(16, 65536),
        "block_m": Range(16, 256),
        "block_n": Range(16, 256),
        "block_k": Range(16, 256),
        "group_m": Range(1, 64),
        "iters": Range(1),
    }

    def check(self) -> None:
        for name in ("block", "block_m", "block_n", "block_k"):
            value = getattr(self, name)
            require(value & (value - 1) == 0, f"{name}={value}: must be a power of 2")
        require(
            all(part.strip().isdigit() and int(part) > 0 for part in self.widths.split(",")),
            f"widths={self.widths!r}: expected positive integers separated by commas",
        )
        for name in self.dtype_list:
            require(
                name in DTYPES,
                f"dtypes={self.dtypes!r}: {name!r} is not one of {', '.join(DTYPES)}",
            )
        require(
            self.bench_dtype in DTYPES,
            f"bench_dtype={self.bench_dtype!r}: expected one of {', '.join(DTYPES)}",
        )
        require(
            self.bench_sizes in ("auto", *BENCH_SIZES),
            f"bench_sizes={self.bench_sizes!r}: expected auto, {', '.join(BENCH_SIZES)}",
        )
        if self.sweep != "auto":
            for tile in self.sweep.split(","):
                parts = tile.strip().split("x")
                require(
                    len(parts) == 3
                    and all(
                        p.isdigit() and int(p) >= 16 and int(p) & (int(p) - 1) == 0 for p in parts
                    ),
                    f"sweep={self.sweep!r}: {tile!r} is not BMxBNxBK in powers of 2 >= 16",
                )

    @property
    def dtype_list(self) -> list[str]:
        return [name.strip() for name in self.dtypes.split(",") if name.strip()]

    @property
    def width_list(self) -> list[int]:
        return [int(part) for part in self.widths.split(",")]

    def tiles(self, on_gpu: bool) -> list[tuple[int, int, int]]:
        sweep = (GPU_SWEEP if on_gpu else CPU_SWEEP) if self.sweep == "auto" else self.sweep
        return [tuple(int(p) for p in tile.strip().split("x")) for tile in sweep.split(",")]

    def sizes(self, on_gpu: bool) -> dict:
        scale = ("gpu" if on_gpu else "cpu") if self.bench_sizes == "auto" else self.bench_sizes
        return BENCH_SIZES[scale]


def shape(kernel: str, width: int, rows: int) -> tuple[int, ...]:
    """The checked input's shape at `width` columns: vector add (rows * width,); softmax and
    cross-entropy (rows, width); matmul (M, K, N) = (rows, width, MATMUL_N): A has `width`
    columns, the K loop's last tile is ragged (an interpreter runs one program per 32 x 32 tile
    of C: N stays small)."""
    if kernel == "vector_add":
        return (rows * width,)
    if kernel == "matmul":
        return (rows, width, MATMUL_N)
    return (rows, width)


def inputs(kernel: str, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, ...]:
    """The kernel's inputs as float32 numpy (labels int32), the same for both frameworks."""
    rng = np.random.default_rng(seed)
    if kernel == "vector_add":
        return tuple(rng.standard_normal(shape, dtype=np.float32) for _ in range(2))
    if kernel == "matmul":  # entries in [0, 1): no element of C is a sum that cancels to ~0,
        m, k, n = shape  # whose relative error fp32 cannot bound (in either implementation)
        return rng.random((m, k), np.float32), rng.random((k, n), np.float32)
    logits = OFFSET + 3 * rng.standard_normal(shape, dtype=np.float32)
    if kernel == "softmax":
        return (logits,)
    return logits, rng.integers(0, shape[1], shape[0]).astype(np.int32)


def matmul_flops(m: int, k: int, n: int) -> int:
    return 2 * m * k * n


@dataclasses.dataclass(frozen=True)
class Check:
    kernel: str
    dtype: str
    shape: tuple[int, ...]
    diff: tolerances.Diff


def cases(cfg: Config) -> list[tuple[str, str, tuple[int, ...]]]:
    """(kernel, dtype, shape) of every correctness check: each kernel per dtype and width."""
    return [
        (kernel, dtype, shape(kernel, width, cfg.rows))
        for kernel in KERNELS
        for dtype in cfg.dtype_list
        for width in cfg.width_list
    ]


def compare(kernel: str, dtype: str, shape: tuple, out, reference) -> Check:
    """The kernel's output against the framework's op (float32 numpy both), in the dtype's tier."""
    diff = tolerances.measure(out, reference, TIERS[dtype], f"{kernel} {dtype}", str(shape))
    return Check(kernel, dtype, shape, diff)


@dataclasses.dataclass(frozen=True)
class Kernels:
    """What the checks and the bench need from a framework."""

    framework: str
    device: str  # "cpu", "cuda:NVIDIA H100 ...", "gpu:H100 ..."
    interpreted: bool  # no GPU: the kernels run in an interpreter
    launch: Callable  # (kernel, cfg) -> the lab's kernel with the config's blocks
    library: Callable  # kernel -> the framework's own op
    matmul: Callable  # (a, b, block_m, block_n, block_k, group_m, num_warps=) -> a @ b in tiles
    softmax_unfused: Callable  # x -> softmax as five separate kernels
    as_arrays: Callable  # (numpy arrays, dtype) -> on the default device, floats in dtype
    to_numpy: Callable  # an output -> float32 numpy
    peak_memory: Callable  # (fn, *args) -> {"peak": bytes} beyond the inputs, or {}
    sync: Callable  # waits for a result (the timing harness's `sync`)


def checks(cfg: Config, k: Kernels) -> list[Check]:
    """Each kernel against the framework's op, per dtype and width."""
    found = []
    for kernel, dtype, shape in cases(cfg):
        args = k.as_arrays(inputs(kernel, shape, cfg.seed), dtype)
        out, ref = k.launch(kernel, cfg)(*args), k.library(kernel)(*args)
        found.append(compare(kernel, dtype, shape, k.to_numpy(out), k.to_numpy(ref)))
    return found


def summarise_checks(run, framework: str, device: str, interpreted: bool, checks) -> dict:
    """The correctness table (fp32 in the F32 tier, bf16 in BF16); the summary: checks within
    their tier, the worst headroom, and those outside, if any."""
    rows = [
        (
            c.kernel,
            c.dtype,
            "x".join(map(str, c.shape)),
            f"{c.diff.max_abs:.2g}",
            f"{c.diff.max_rel:.2g}",
            f"{c.diff.headroom:.2g}",
            "yes" if c.diff.ok else "NO",
        )
        for c in checks
    ]
    how = "interpreted" if interpreted else "compiled"
    report.table(f"{framework} kernels vs its ops ({how}, {device})", CHECK_COLUMNS, rows)
    for i, c in enumerate(checks):
        run.log(i, **{f"headroom/{c.kernel}/{c.dtype}": c.diff.headroom})
    if interpreted:
        report.console.print(
            "note: no GPU, so the kernels ran in an interpreter (one program after another, in "
            "numpy or XLA on the CPU): timings mean nothing here, correctness is what counts."
        )
    outside = [f"{c.kernel} {c.dtype} {c.shape}" for c in checks if not c.diff.ok]
    summary = {
        "checks": len(checks),
        "within tier": len(checks) - len(outside),
        "worst headroom": max(c.diff.headroom for c in checks),
        "interpreted": interpreted,
    }
    if outside:
        summary["outside tier"] = "; ".join(outside)
    return summary


def variant(framework: str, kernel: str, how: str) -> str:
    """A bench timing's name: "torch matmul 128x128x64", "jax softmax unfused", ...; `how` is
    "kernel" (the lab's), "library" (the framework's own op), "unfused" or a matmul tile."""
    return f"{framework} {kernel} {how}"


def performance(framework: str, sizes: dict, timings: dict, dtype: str, tables: bool) -> dict:
    """The bench's timings as ratios (framework-free): the matmul's tiles in TFLOP/s and x the
    library's matmul; the softmaxes' GB/s (one read and one write of the input) and x the
    unfused softmax; the fused loss's peak memory against the library loss's. With `tables`,
    one table each; returns the headline figures."""
    name = lambda kernel, how: variant(framework, kernel, how)
    found = {}
    m, k, n = sizes["matmul"]
    library = timings[name("matmul", "library")].median_s
    matmuls = {key: t for key, t in timings.items() if key.startswith(name("matmul", ""))}
    rows = [
        (key, t.median_s * 1e3, matmul_flops(m, k, n) / t.median_s / 1e12, library / t.median_s)
        for key, t in matmuls.items()
    ]
    found["matmul best tile x library"] = max(
        r[3] for r in rows if r[0] != name("matmul", "library")
    )
    rows_, cols = sizes["softmax"]
    moved = 2 * rows_ * cols * {"fp32": 4, "bf16": 2}[dtype]
    unfused = timings[name("softmax", "unfused")].median_s
    softmax_rows = [
        (name("softmax", how), t.median_s * 1e3, moved / t.median_s / 1e9, unfused / t.median_s)
        for how in ("kernel", "library", "unfused")
        for t in [timings[name("softmax", how)]]
    ]
    found["softmax kernel x unfused"] = softmax_rows[0][3]
    found["softmax kernel GB/s"] = softmax_rows[0][2]
    peak = {
        how: timings[name("cross_entropy", how)].memory.get("peak") for how in ("kernel", "library")
    }
    if peak["kernel"] is not None and peak["library"] is not None:
        found["cross_entropy memory saved MiB"] = (peak["library"] - peak["kernel"]) / 2**20
    if tables:
        report.table(
            f"{framework} matmul {m}x{k}x{n} {dtype}: tiles BMxBNxBK",
            ["variant", "ms", "TFLOP/s", "x library"],
            rows,
        )
        report.table(
            f"{framework} softmax {rows_}x{cols} {dtype}",
            ["variant", "ms", "GB/s", "x unfused"],
            softmax_rows,
        )
        tokens, classes = sizes["cross_entropy"]
        report.table(
            f"{framework} cross-entropy forward, {tokens} tokens x {classes} classes, {dtype}",
            ["variant", "ms", "peak MiB"],
            [
                (name("cross_entropy", how), t.median_s * 1e3, (peak[how] or float("nan")) / 2**20)
                for how in ("kernel", "library")
                for t in [timings[name("cross_entropy", how)]]
            ],
        )
    return found


def bench(cfg: Config, k: Kernels) -> dict:
    """`week1 bench gpu_kernels`: the matmul's tiles against the library matmul, the fused
    softmax against the library's and the unfused one, the fused loss against the library loss
    (peak memory). One line of ratios per kernel; returns the timings."""
    sizes, dtype = cfg.sizes(not k.interpreted), cfg.bench_dtype
    time = lambda fn, *args: time_calls(
        lambda: fn(*args), k.sync, warmup=cfg.warmup, iters=cfg.iters
    )
    name = lambda kernel, how: variant(k.framework, kernel, how)
    a, b = k.as_arrays(inputs("matmul", sizes["matmul"], cfg.seed), dtype)
    timings = {name("matmul", "library"): time(k.library("matmul"), a, b)}
    for bm, bn, bk in cfg.tiles(not k.interpreted):
        warps = 8 if bm * bn >= 128 * 256 else 4
        tile = lambda a, b: k.matmul(a, b, bm, bn, bk, cfg.group_m, num_warps=warps)
        timings[name("matmul", f"{bm}x{bn}x{bk}")] = time(tile, a, b)
    (x,) = k.as_arrays(inputs("softmax", sizes["softmax"], cfg.seed), dtype)
    for how, fn in (
        ("kernel", k.launch("softmax", cfg)),
        ("library", k.library("softmax")),
        ("unfused", k.softmax_unfused),
    ):
        timings[name("softmax", how)] = time(fn, x)
    logits, labels = k.as_arrays(inputs("cross_entropy", sizes["cross_entropy"], cfg.seed), dtype)
    for how, fn in (
        ("kernel", k.launch("cross_entropy", cfg)),
        ("library", k.library("cross_entropy")),
    ):
        timings[name("cross_entropy", how)] = time(fn, logits, labels).with_memory(
            k.peak_memory(fn, logits, labels)
        )
    note = " (interpreted: meaningless)" if k.interpreted else ""
    for what, value in performance(k.framework, sizes, timings, dtype, tables=False).items():
        print(f"{k.framework} {what}: {value:.3g}{note}")
    return timings


def run_checks(cfg: Config, run, k: Kernels) -> dict:
    """`week1 run gpu_kernels`: the correctness table; on a GPU the bench's tables too."""
    summary = summarise_checks(run, k.framework, k.device, k.interpreted, checks(cfg, k))
    if not k.interpreted:
        timings = bench(cfg, k)
        summary |= performance(k.framework, cfg.sizes(True), timings, cfg.bench_dtype, tables=True)
    return summary


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "softmax_kernel",
        hints=(
            (
                "One program per row: load the row (padding columns as -inf), subtract its max, "
                "exponentiate, divide by the sum, store the valid columns."
            ),
            (
                "The max subtraction is what keeps exp from overflowing "
                "(test_softmax_needs_its_max_subtraction checks it). Triton: tl.load(..., mask=cols"
                " < n_cols, other=-inf); Pallas: the same with jnp.where on a mask."
            ),
        ),
        jax=Part(
            "week1_jax/gpu_kernels.py::softmax_kernel",
            (
                "test_gpu_kernels.py::test_row_kernels_on_odd_widths[softmax-fp32]",
                "test_gpu_kernels.py::test_softmax_needs_its_max_subtraction",
            ),
        ),
        torch=Part(
            "week1_torch/gpu_kernels.py::softmax_kernel",
            (
                "test_gpu_kernels.py::test_row_kernels_on_odd_widths[softmax-fp32]",
                "test_gpu_kernels.py::test_softmax_needs_its_max_subtraction",
            ),
        ),
    ),
    Exercise(
        "cross_entropy_kernel",
        hints=(
            (
                "loss = logsumexp(x) - x[label], walking the row block by block without ever "
                "writing it whole."
            ),
            (
                "Online logsumexp: keep a running max m and s = sum exp(x - m); when a block raises"
                " the max to m', rescale s by exp(m - m') before adding the block's terms. Pick "
                "x[label] out of the block that holds it."
            ),
        ),
        jax=Part(
            "week1_jax/gpu_kernels.py::cross_entropy_kernel",
            "test_gpu_kernels.py::test_row_kernels_on_odd_widths[cross_entropy-fp32]",
        ),
        torch=Part(
            "week1_torch/gpu_kernels.py::cross_entropy_kernel",
            "test_gpu_kernels.py::test_row_kernels_on_odd_widths[cross_entropy-fp32]",
        ),
    ),
)
