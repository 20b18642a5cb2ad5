"""GPU basics lab in JAX: matmul throughput per size and dtype, and the measured roofline.

Read beside week1_torch/gpu_basics.py. fp32 and tf32 differ only in the dot
algorithm XLA is asked for (`jax.lax.DotAlgorithmPreset`): F32_F32_F32 keeps
full fp32 products, TF32_TF32_F32 rounds the inputs to tf32 on tensor cores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labs import gpu_basics as spec
from week1 import formats, report
from week1.timing import time_calls
from week1_jax.lib import devices
from week1_jax.lib.precision import number_formats

STORAGE = {"fp32": jnp.float32, "tf32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
ALGORITHM = {
    "fp32": jax.lax.DotAlgorithmPreset.F32_F32_F32,
    "tf32": jax.lax.DotAlgorithmPreset.TF32_TF32_F32,
    "bf16": None,
    "fp16": None,
}  # None: the inputs' own dtype decides


def device_name() -> str:
    device = devices.default_device()
    return f"{device.platform}:{device.device_kind}"


def unavailable(dtype: str) -> str | None:
    """Why `dtype` cannot be measured here, or None. tf32 needs an NVIDIA GPU of compute
    capability 8.0+."""
    device = devices.default_device()
    if dtype == "tf32" and (
        device.platform != "gpu" or float(getattr(device, "compute_capability", "0")) < 8.0
    ):
        return "tf32 needs an NVIDIA GPU with compute capability >= 8.0"
    return None


def operands(n: int, dtype: str, seed: int):
    """Two n x n matrices with entries in [-1, 1), stored in `dtype`'s storage type."""
    key_a, key_b = jax.random.split(jax.random.key(seed))
    return (
        jax.random.uniform(key_a, (n, n), minval=-1.0, maxval=1.0).astype(STORAGE[dtype]),
        jax.random.uniform(key_b, (n, n), minval=-1.0, maxval=1.0).astype(STORAGE[dtype]),
    )


def matmul(dtype: str):
    """A jitted a @ b computed as `dtype` asks."""
    return jax.jit(lambda a, b: jnp.matmul(a, b, precision=ALGORITHM[dtype]))


def measure(cfg: spec.Config) -> tuple[list, dict]:
    """Device time and latency of each (dtype, n) matmul (week1.timing): (results, {dtype: why
    skipped})."""
    results, skipped = [], {}
    flush = devices.cache_flush() if cfg.cold else None
    for dtype in cfg.dtype_list:
        if unavailable(dtype):
            skipped[dtype] = unavailable(dtype)
            continue
        fn = matmul(dtype)
        for n in cfg.size_list(on_gpu=devices.default_device().platform == "gpu"):
            a, b = operands(n, dtype, cfg.seed)
            timing = time_calls(
                lambda: fn(a, b), devices.sync, warmup=cfg.warmup, iters=cfg.iters, flush=flush
            )
            results.append(spec.result(dtype, n, timing))
    return results, skipped


def double_in_place(cfg: spec.Config):
    """(bytes, Timing) of y = 2y over `bandwidth_mib` of fp32, in place: the buffer is donated,
    so XLA writes the result into it; each call reads it once and writes it once."""
    y = jnp.ones(cfg.bandwidth_mib * 2**20 // 4, jnp.float32)
    nbytes = y.nbytes
    double = jax.jit(lambda y: 2.0 * y, donate_argnums=0)

    def call():  # each call takes the buffer the last one returned
        nonlocal y
        y = double(y)
        return y

    return nbytes, time_calls(call, devices.sync, warmup=cfg.warmup, iters=cfg.iters)


def bandwidth(cfg: spec.Config) -> float:
    """Memory bandwidth in bytes/s, of the in-place 2y."""
    return spec.bandwidth_of(*double_in_place(cfg))


def run(cfg: spec.Config, run) -> dict:
    """`week1 run gpu_basics --framework jax`: the number formats, the sweep, its table and two
    plots."""
    report.table(
        "number formats (jnp.finfo)",
        formats.FORMAT_COLUMNS,
        number_formats(formats.FORMATS),
    )
    results, skipped = measure(cfg)
    for r in results:
        run.log(r.n, **{f"tflops/{r.dtype}": r.tflops})
    return spec.summarise(run, "jax", device_name(), results, bandwidth(cfg), skipped)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench gpu_basics`: the largest matmul in each available dtype, and the in-place
    2y of the bandwidth test."""
    n = cfg.size_list(on_gpu=devices.default_device().platform == "gpu")[-1]
    timings = {}
    for dtype in cfg.dtype_list:
        if not unavailable(dtype):
            fn, (a, b) = matmul(dtype), operands(n, dtype, cfg.seed)
            timings[f"jax {dtype} n={n}"] = time_calls(
                lambda: fn(a, b), devices.sync, warmup=cfg.warmup, iters=cfg.iters
            )
    timings[f"jax 2y {cfg.bandwidth_mib} MiB"] = double_in_place(cfg)[1]
    return timings
