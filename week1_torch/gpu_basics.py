"""GPU basics lab in PyTorch: matmul throughput per size and dtype, and the measured roofline.

Read beside week1_jax/gpu_basics.py. fp32 and tf32 differ only in
`torch.backends.cuda.matmul.allow_tf32`, switched for the tf32 case alone and
restored after (the parity tests keep it off).
"""

from __future__ import annotations

import contextlib

import torch

from labs import gpu_basics as spec
from week1.timing import time_calls
from week1_torch.lib import devices
from week1_torch.lib.precision import number_formats

# No counterpart in JAX: torch switches TF32 globally, JAX asks per matmul (precision=).
FRAMEWORK_ONLY = ("tf32_matmuls",)

STORAGE = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def device_name() -> str:
    return f"cuda:{torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"


def unavailable(dtype: str) -> str | None:
    """Why `dtype` cannot be measured here, or None. tf32 needs an NVIDIA GPU of compute
    capability 8.0+."""
    if dtype == "tf32" and not (
        torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
    ):
        return "tf32 needs an NVIDIA GPU with compute capability >= 8.0"
    return None


def operands(n: int, dtype: str, seed: int):
    """Two n x n matrices with entries in [-1, 1), stored in `dtype`'s storage type."""
    generator = torch.Generator().manual_seed(seed)
    return tuple(
        (torch.rand(n, n, generator=generator) * 2 - 1).to(devices.default_device(), STORAGE[dtype])
        for _ in range(2)
    )


@contextlib.contextmanager
def tf32_matmuls(allowed: bool):
    """Let cuBLAS round fp32 matmul inputs to tf32 (or not) inside the block; restore the setting
    after."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def matmul(dtype: str):
    """a @ b computed as `dtype` asks."""

    def fn(a, b):
        with tf32_matmuls(dtype == "tf32"):
            return a @ b

    return fn


def double_in_place(cfg: spec.Config):
    """(bytes, Timing) of y = 2y over `bandwidth_mib` of fp32, in place (`mul_`): each call
    reads it once and writes it once."""
    y = torch.ones(cfg.bandwidth_mib * 2**20 // 4, device=devices.default_device())
    timing = time_calls(
        lambda: y.mul_(2.0),
        devices.sync,
        warmup=cfg.warmup,
        iters=cfg.iters,
        clock=devices.event_clock(),
    )
    return y.numel() * y.element_size(), timing


def matmuls() -> spec.Matmuls:
    """What the lab's sweep and bench need from torch (labs/gpu_basics.py)."""
    return spec.Matmuls(
        framework="torch",
        device=device_name(),
        on_gpu=torch.cuda.is_available(),
        finfo="torch.finfo",
        number_formats=number_formats,
        unavailable=unavailable,
        matmul=matmul,
        operands=operands,
        double_in_place=double_in_place,
        sync=devices.sync,
        cache_flush=devices.cache_flush,
        clock=devices.event_clock(),
    )


def run(cfg: spec.Config, run) -> dict:
    """`week1 run gpu_basics --framework torch`: the number formats, the sweep, its table and two
    plots (labs/gpu_basics.py)."""
    return spec.run_sweep(cfg, run, matmuls())


def bench(cfg: spec.Config) -> dict:
    """`week1 bench gpu_basics`: the largest matmul in each available dtype, and the in-place
    2y of the bandwidth test."""
    return spec.bench(cfg, matmuls())
