"""Data-parallel training equals single-device training on the same global batch (F32),
in JAX (pmap, jit + NamedSharding, shard_map on 8 host devices), in torch (DDP, 2 gloo
processes), across the two, and across two JAX processes joined by jax.distributed.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import multidevice
import pytest
import torch

from labs import data_parallel as spec
from week1 import charlm, convert
from week1.config import UsageError
from week1.tolerances import F32, TRAJECTORY, assert_close, assert_tree_close
from week1_jax import data_parallel as jax_dp
from week1_jax.lib import charlm as jax_loop
from week1_torch.lib import parallel as torch_parallel

CFG = multidevice.CFG
LOOP_CFG = multidevice.LOOP_CFG


@pytest.fixture(scope="module")
def torch_ddp(tmp_path_factory):
    """DDP through the CLI: (losses, first-step grads) from rank 0."""
    run_dir = multidevice.week1_run_torch("data_parallel", CFG, tmp_path_factory.mktemp("runs"))
    losses, grads, _ = torch_parallel.load_result(run_dir / "ranks" / "train")
    return losses, grads


@multidevice.cpu_simulation
@pytest.mark.parametrize("method", spec.METHODS)
def test_jax_data_parallel_equals_single_device(method, data, weights, jax_single):
    assert len(jax.devices()) == 8
    losses, grads = jax_dp.train(CFG, data, method, weights[1])
    single_losses, single_grads = jax_single
    assert_close(f"jax {method} x8 vs 1 device", "loss step 1", losses[0], single_losses[0], F32)
    assert_tree_close(f"jax {method} x8 vs 1 device, grads step 1", grads, single_grads, F32)
    assert_close(
        f"jax {method} x8 vs 1 device", "20-step losses", losses, single_losses, TRAJECTORY
    )


@multidevice.cpu_simulation
def test_torch_ddp_equals_single_device(torch_ddp, torch_single):
    losses, grads = torch_ddp
    single_losses, single_grads = torch_single
    assert_close("torch DDP x2 vs 1 device", "loss step 1", losses[0], single_losses[0], F32)
    assert_tree_close("torch DDP x2 vs 1 device, grads step 1", grads, single_grads, F32)
    assert_close("torch DDP x2 vs 1 device", "20-step losses", losses, single_losses, TRAJECTORY)


@multidevice.cpu_simulation
def test_data_parallel_across_frameworks(torch_ddp, data, weights):
    losses, grads = jax_dp.train(CFG, data, "jit", weights[1])
    torch_losses, torch_grads = torch_ddp
    assert_tree_close(
        "jax jit x8 vs torch DDP x2, grads step 1",
        convert.flax_to_torch(grads, convert.CHAR_MLP),
        torch_grads,
        F32,
    )
    assert_close("jax jit x8 vs torch DDP x2", "20-step losses", losses, torch_losses, TRAJECTORY)


@multidevice.cpu_simulation
def test_two_jax_processes_agree_with_one_device():
    """Two processes, 2 CPU devices each, joined by jax.distributed on 127.0.0.1 (gloo
    collectives)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    steps = 5
    command = [
        sys.executable,
        "-m",
        "week1_jax.data_parallel",
        f"--coordinator=127.0.0.1:{port}",
        "--num-processes=2",
        *(
            f"--{k}={v}"
            for k, v in [
                ("steps", steps),
                ("batch_size", CFG.batch_size),
                ("n_hidden", CFG.n_hidden),
                ("lr", CFG.lr),
                ("warmup_steps", CFG.warmup_steps),
            ]
        ),
    ]
    procs = [
        subprocess.Popen(
            [*command, f"--process-id={i}"], env=env, stdout=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    try:
        outputs = [
            json.loads(p.communicate(timeout=180)[0].strip().splitlines()[-1]) for p in procs
        ]
    finally:
        for p in procs:
            p.kill()
    assert [o["devices"] for o in outputs] == [4, 4]
    assert_close(
        "2 JAX processes",
        "process 1 vs process 0 losses",
        outputs[1]["losses"],
        outputs[0]["losses"],
        F32,
    )
    # The workers start from the seed's Flax init: compare with one device from that same init.
    _, single = jax_loop.train(
        dataclasses.replace(LOOP_CFG, steps=steps), charlm.load_data(LOOP_CFG)
    )
    assert_close(
        "2 JAX processes x2 devices vs 1 device",
        "5-step losses",
        outputs[0]["losses"],
        single.train_loss,
        TRAJECTORY,
    )


@multidevice.cpu_simulation
def test_bad_device_counts_name_the_numbers(data):
    with pytest.raises(UsageError, match=r"batch_size=36 does not split over 8 devices"):
        jax_dp.train(spec.Config(batch_size=36, steps=1), data, "jit")
    with pytest.raises(UsageError, match=r"devices=16: only 8 available"):
        jax_dp.train(spec.Config(devices=16, steps=1), data, "jit")


@pytest.mark.gpu
def test_single_gpu_ddp_equals_single_device(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    run_dir = multidevice.week1_run_torch(
        "data_parallel", dataclasses.replace(CFG, devices=1), tmp_path
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert_close(
        "torch DDP x1 GPU (nccl) vs 1 GPU",
        "final loss",
        summary["DDP final loss"],
        summary["1 device final loss"],
        TRAJECTORY,
    )
