"""Parity tests hold both frameworks in one process: the one place that does.

JAX sees 8 host devices (multi-device labs test on them; XLA reads the flag once,
so it is set before anything imports jax); float64 is enabled per test with
`jax.enable_x64(True)` where the F64 tier needs it.
"""

import os

from week1.machine import compilation_cache_env

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.update(compilation_cache_env() | os.environ)  # as the week1 command sets it

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from multidevice import LOOP_CFG

from week1 import charlm, convert
from week1_jax.lib import charlm as jax_loop
from week1_jax.lib.models import dotted
from week1_torch.lib import charlm as torch_loop
from week1_torch.lib.models import get_weights


@pytest.fixture(autouse=True)
def _pin_precision():
    """F32 parity wants full-precision matmuls on both sides (TF32 off; a no-op on the CPU)."""
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield


# The single-device reference the multi-device tests (data_parallel, fsdp) compare with.


@pytest.fixture(scope="module")
def data():
    return charlm.load_data(LOOP_CFG)


@pytest.fixture(scope="module")
def weights(data):
    """The starting point of every run: torch's init from cfg.seed (what the torchrun workers
    build themselves), and the same numbers under Flax names."""
    torch_w = get_weights(torch_loop.build_model(LOOP_CFG, data.vocab_size))
    return torch_w, convert.torch_to_flax(torch_w, convert.CHAR_MLP)


@pytest.fixture(scope="module")
def jax_single(data, weights):
    """One device, the training_loop lab's own code: first-step grads and the 20-step losses."""
    model = jax_loop.build_model(LOOP_CFG, data.vocab_size, weights[1])
    x, y = jax_loop.as_arrays(*charlm.train_batch(data, LOOP_CFG, 1))
    grads = nnx.grad(jax_loop.loss_fn)(model, x, y)
    flat = {dotted(path): np.asarray(v[...]) for path, v in nnx.to_flat_state(grads)}
    _, history = jax_loop.train(LOOP_CFG, data, weights=weights[1])
    return history.train_loss, flat


@pytest.fixture(scope="module")
def torch_single(data, weights):
    """One device, the training_loop lab's own code: first-step grads and the 20-step losses."""
    model = torch_loop.build_model(LOOP_CFG, data.vocab_size, weights[0])
    x, y = torch_loop.as_tensors(*charlm.train_batch(data, LOOP_CFG, 1))
    torch_loop.loss_fn(model, x, y).backward()
    grads = {name: p.grad.cpu().numpy().copy() for name, p in model.named_parameters()}
    _, history = torch_loop.train(LOOP_CFG, data, weights=weights[0])
    return history.train_loss, grads
