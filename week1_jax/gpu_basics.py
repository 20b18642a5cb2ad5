"""GPU basics lab in JAX: matmul throughput per size and dtype, and the measured roofline.

Read beside week1_torch/gpu_basics.py. fp32 and tf32 differ only in the dot
algorithm XLA is asked for (`jax.lax.DotAlgorithmPreset`): F32_F32_F32 keeps
full fp32 products, TF32_TF32_F32 rounds the inputs to tf32 on tensor cores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labs import gpu_basics as spec
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


def matmuls() -> spec.Matmuls:
    """What the lab's sweep and bench need from jax (labs/gpu_basics.py)."""
    return spec.Matmuls(
        framework="jax",
        device=device_name(),
        on_gpu=devices.default_device().platform == "gpu",
        finfo="jnp.finfo",
        number_formats=number_formats,
        unavailable=unavailable,
        matmul=matmul,
        operands=operands,
        double_in_place=double_in_place,
        sync=devices.sync,
        cache_flush=devices.cache_flush,
        clock=None,
    )


def run(cfg: spec.Config, run) -> dict:
    """`week1 run gpu_basics --framework jax`: the number formats, the sweep, its table and two
    plots (labs/gpu_basics.py)."""
    return spec.run_sweep(cfg, run, matmuls())


def bench(cfg: spec.Config) -> dict:
    """`week1 bench gpu_basics`: the largest matmul in each available dtype, and the in-place
    2y of the bandwidth test."""
    return spec.bench(cfg, matmuls())
