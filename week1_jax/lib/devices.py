"""Where JAX work runs: the one place the JAX labs take their device from.

JAX places new arrays on its default device (the GPU when jaxlib has CUDA),
so labs need no `.to(device)`; what they do need is `to_device` for numpy
batches and `sync` before reading a clock, because JAX dispatches
asynchronously. Multi-device placement (meshes, shardings) is lib/parallel.py's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def default_device() -> jax.Device:
    """The first device of the default backend (GPU, else CPU)."""
    return jax.devices()[0]


def to_device(*arrays: np.ndarray, dtype=None) -> tuple:
    """numpy arrays as jax arrays on default_device(), optionally cast to `dtype`; one per array."""
    return tuple(jnp.asarray(a, dtype=dtype) for a in arrays)


def sync(result=None):
    """Wait until `result`'s arrays are computed (jax.block_until_ready); returns it."""
    return jax.block_until_ready(result)


def cache_flush(mib: int = 256):
    """A call that overwrites `mib` MiB on the default device, more than any L2 cache holds
    (triton.testing.do_bench zeroes 256 MB before each timed call); time_calls' `flush`. The
    buffer is donated: each call writes zeros into the same memory."""
    zero = jax.jit(jnp.zeros_like, donate_argnums=0)
    buffer = jnp.ones(mib * 2**20 // 4, jnp.int32)

    def flush():
        nonlocal buffer
        buffer = zero(buffer)
        return buffer

    return flush
