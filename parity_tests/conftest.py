"""Parity tests hold both frameworks in one process: the one place that does.

JAX sees 8 host devices (multi-device labs test on them); float64 is enabled
per test with `jax.enable_x64(True)` (a context manager) where the F64 tier needs it.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _pin_precision():
    """F32 parity wants full-precision matmuls on both sides (TF32 off; a no-op on the CPU)."""
    import jax
    import torch
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
