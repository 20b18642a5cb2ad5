"""Data-parallel training equals single-device training on the same global batch (F32),
in JAX (pmap, jit + NamedSharding, shard_map on 8 host devices), in torch (DDP, 2 gloo
processes), across the two, and across two JAX processes joined by jax.distributed.
"""

import dataclasses
import json

import jax
import multidevice
import pytest
import torch

from labs import data_parallel as spec
from week1 import convert
from week1.config import UsageError
from week1.runs import read_metrics, read_summary
from week1.tolerances import F32, TRAJECTORY, assert_close, assert_tree_close
from week1_jax import data_parallel as jax_dp
from week1_torch import data_parallel as torch_dp
from week1_torch.lib import parallel as torch_parallel

CFG = multidevice.CFG
LOOP_CFG = multidevice.LOOP_CFG


@pytest.fixture(scope="module")
def torch_ddp_run(tmp_path_factory):
    """`week1 run data_parallel --framework torch`: the run folder (DDP in 2 processes)."""
    return multidevice.week1_run_torch("data_parallel", CFG, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def torch_ddp(torch_ddp_run):
    """DDP through the CLI: (losses, first-step grads) from rank 0."""
    losses, grads, _ = torch_parallel.load_result(torch_ddp_run / "ranks" / "train")
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
def test_torch_hand_all_reduce_equals_ddp(torch_ddp_run, torch_ddp, torch_single):
    """all_reduce_mean, written out, after a plain backward on each rank's rows gives DDP's
    first-step gradients, and the single device's on the whole batch."""
    _, hand, _ = torch_parallel.load_result(torch_ddp_run / "ranks" / torch_dp.HAND)
    _, ddp_grads = torch_ddp
    assert hand.keys() == ddp_grads.keys()
    assert_tree_close("torch all-reduce by hand vs DDP, grads step 1", hand, ddp_grads, F32)
    assert_tree_close("torch all-reduce by hand vs 1 device, grads step 1", hand,
                      torch_single[1], F32)  # fmt: skip
    summary = read_summary(torch_ddp_run)
    assert summary["all-reduce by hand vs DDP, step-1 grads max |diff|"] <= F32.atol


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


def _train_losses(run_dir, key: str = "train_loss") -> list[float]:
    return [row[key] for row in read_metrics(run_dir) if key in row]


@multidevice.cpu_simulation
def test_two_torch_nodes_equal_one_node(torch_ddp, tmp_path):
    """Two `week1 run data_parallel --framework torch --nnodes=2 --node_rank=R` on 127.0.0.1, one
    process each, against one machine's two processes (torch_ddp): the same global batch."""
    nodes = multidevice.week1_run_two_nodes("data_parallel", "torch", CFG, tmp_path)
    first, second = (_train_losses(run_dir) for run_dir in nodes)
    assert len(first) == CFG.steps
    assert_close("torch DDP 2 nodes", "node 1 vs node 0 losses", second, first, F32)
    assert_close("torch DDP 2 nodes x1 vs 1 node x2", "losses", first, torch_ddp[0], F32)


@multidevice.cpu_simulation
def test_two_jax_processes_equal_one_node(data, tmp_path):
    """Two `week1 run data_parallel --framework jax --coordinator=127.0.0.1:PORT
    --num_processes=2 --process_id=I`, one CPU device each (jax.distributed, gloo), against jit
    on this process's 8 devices from the same (Flax) init: the same global batch."""
    cfg = dataclasses.replace(CFG, steps=10, method="jit")
    nodes = multidevice.week1_run_two_nodes("data_parallel", "jax", cfg, tmp_path)
    first, second = (_train_losses(run_dir, "jit_train_loss") for run_dir in nodes)
    assert len(first) == cfg.steps
    assert read_summary(nodes[0])["processes"] == 2
    assert_close("jax jit 2 processes", "process 1 vs process 0 losses", second, first, F32)
    one_node, _ = jax_dp.train(cfg, data, "jit")
    assert_close("jax jit 2 processes x1 vs 1 process x8", "losses", first, one_node, F32)


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


@multidevice.cpu_simulation
@pytest.mark.slow
def test_torch_ddp_compiled_equals_eager(torch_ddp, tmp_path):
    """`week1 run data_parallel --framework torch --compile`: the DDP model through torch.compile
    in every rank, the same losses as eager DDP."""
    run_dir = multidevice.week1_run_torch("data_parallel", CFG, tmp_path, "--compile")
    assert read_summary(run_dir)["status"] == "ok"
    losses, _, _ = torch_parallel.load_result(run_dir / "ranks" / "train")
    assert_close("torch DDP x2 compiled vs eager", "losses", losses, torch_ddp[0], TRAJECTORY)
