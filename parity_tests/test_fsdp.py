"""FSDP training equals single-device training (F32; BF16 tier with torch's bf16 policy), in JAX
(8 host devices, 1-D fsdp and 2-D (data, fsdp) meshes) and torch (FSDP2, 2 gloo processes), and
across the two; per-device memory is about 1/N; sharded checkpoints restore onto fewer devices.
"""

import dataclasses
import json

import jax
import multidevice
import pytest
import torch

from labs import fsdp as spec
from week1 import charlm, convert
from week1.config import UsageError
from week1.parallel import loop_config, worker_args
from week1.runs import read_metrics, read_summary
from week1.tolerances import (
    BF16,
    BF16_FINAL_LOSS,
    EXACT,
    F32,
    TRAJECTORY,
    assert_close,
    assert_tree_close,
)
from week1_jax import fsdp as jax_fsdp
from week1_jax.lib import parallel as jax_parallel
from week1_torch import fsdp as torch_fsdp
from week1_torch.lib import charlm as torch_loop
from week1_torch.lib import parallel as torch_parallel

CFG = spec.Config(steps=20, batch_size=32, n_hidden=64, warmup_steps=5, lr=1e-2)
HALF = spec.checkpoint_step(CFG)


@multidevice.cpu_simulation
def test_same_setup_as_data_parallel_tests():
    assert loop_config(CFG) == multidevice.LOOP_CFG  # so the single-device fixtures apply


@pytest.fixture(scope="module")
def jax_fsdp_run(data, weights, tmp_path_factory):
    """8 devices, 1-D fsdp mesh, sharded checkpoint at step 10: (losses, first-step grads,
    checkpoint dir)."""
    directory = tmp_path_factory.mktemp("jax_fsdp")
    losses, grads = jax_fsdp.train(
        CFG, data, jax_fsdp.make_mesh(jax.devices()), weights[1], checkpoint_dir=directory
    )
    return losses, grads, directory


@pytest.fixture(scope="module")
def torch_fsdp_run(tmp_path_factory):
    """Through the CLI: FSDP2 on 2 gloo ranks with a checkpoint at step 10, then resumed on 1 rank.
    Returns ((losses, first-step grads, memory), resumed losses, folder of the ranks' files)."""
    ranks = multidevice.week1_run_torch("fsdp", CFG, tmp_path_factory.mktemp("runs")) / "ranks"
    return (
        torch_parallel.load_result(ranks / "train"),
        torch_parallel.load_result(ranks / "resume")[0],
        ranks,
    )


@multidevice.cpu_simulation
def test_jax_fsdp_equals_single_device(jax_fsdp_run, jax_single):
    losses, grads, _ = jax_fsdp_run
    assert_tree_close("jax fsdp x8 vs 1 device, grads step 1", grads, jax_single[1], F32)
    assert_close("jax fsdp x8 vs 1 device", "20-step losses", losses, jax_single[0], TRAJECTORY)


@multidevice.cpu_simulation
def test_jax_2d_mesh_equals_single_device(data, weights, jax_single):
    mesh = jax_fsdp.make_mesh(jax.devices(), data_axis=2)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4}
    losses, grads = jax_fsdp.train(CFG, data, mesh, weights[1])
    assert_tree_close("jax (data 2, fsdp 4) vs 1 device, grads step 1", grads, jax_single[1], F32)
    assert_close(
        "jax (data 2, fsdp 4) vs 1 device", "20-step losses", losses, jax_single[0], TRAJECTORY
    )


@multidevice.cpu_simulation
def test_jax_checkpoint_from_8_devices_continues_on_4(jax_fsdp_run, data, weights):
    losses, _, directory = jax_fsdp_run
    resumed, _ = jax_fsdp.train(
        CFG,
        data,
        jax_fsdp.make_mesh(jax.devices()[:4]),
        weights[1],
        checkpoint_dir=directory,
        resume=True,
    )
    assert_close(
        "jax fsdp checkpoint x8 -> x4",
        "losses after the restore",
        resumed,
        losses[HALF:],
        TRAJECTORY,
    )


@multidevice.cpu_simulation
def test_jax_memory_per_device_is_about_1_over_n(data):
    _, params, _, opt_state = jax_parallel.init_state(multidevice.LOOP_CFG, data.vocab_size)
    memory = jax_fsdp.memory_bytes(params, opt_state, jax_fsdp.make_mesh(jax.devices()))
    leftover = data.vocab_size * 4  # the head bias: 83 divides by nothing, so it stays whole
    assert memory["params sharded"] <= memory["params replicated"] / 8 + leftover
    assert (
        memory["optimizer sharded"] <= memory["optimizer replicated"] / 8 + 2 * leftover + 4
    )  # + the step count


@multidevice.cpu_simulation
@pytest.mark.parametrize("data_axis", [1, 2])
def test_jax_step_gathers_the_parameters_for_the_forward_and_again_for_the_backward(
    data, data_axis
):
    """FSDP2's reshard_after_forward (ZeRO-3), counted in the compiled step's HLO: twice the
    sharded parameters' bytes all-gathered per step; XLA left to itself gathers 1.28x and keeps
    the whole parameters from the forward to the backward pass."""
    graphdef, params, tx, opt_state = jax_parallel.init_state(multidevice.LOOP_CFG, data.vocab_size)
    mesh = jax_fsdp.make_mesh(jax.devices(), data_axis)
    x, y = charlm.train_batch(data, multidevice.LOOP_CFG, 0)
    moved = jax_fsdp.collective_bytes(graphdef, tx, mesh, params, opt_state, x, y)
    assert moved["all-gather"] == 2 * moved["sharded parameters"], moved


@multidevice.cpu_simulation
def test_jax_mismatched_checkpoint_is_one_line(jax_fsdp_run, data):
    with pytest.raises(
        UsageError,
        match=r"^checkpoint does not fit the model: fc1.bias is \(64,\) there, "
        r"the model wants \(32,\)$",
    ):
        jax_fsdp.train(
            dataclasses.replace(CFG, n_hidden=32),
            data,
            jax_fsdp.make_mesh(jax.devices()),
            checkpoint_dir=jax_fsdp_run[2],
            resume=True,
        )


@multidevice.cpu_simulation
def test_torch_fsdp_equals_single_device(torch_fsdp_run, torch_single):
    (losses, grads, _), _, _ = torch_fsdp_run
    assert_tree_close("torch FSDP x2 vs 1 device, grads step 1", grads, torch_single[1], F32)
    assert_close("torch FSDP x2 vs 1 device", "20-step losses", losses, torch_single[0], TRAJECTORY)


@multidevice.cpu_simulation
def test_torch_shards_are_dim0_chunks(torch_fsdp_run, data):
    """shard_rows, written out, cuts every parameter as fully_shard does, on each of the 2 ranks
    (exactly); an odd vocabulary size makes the embedding's and head's shards uneven."""
    *_, ranks = torch_fsdp_run
    files = sorted((ranks / torch_fsdp.SHARDS).iterdir())
    assert [f.name for f in files] == ["rank0", "rank1"]
    shards = [torch_parallel.load_result(f)[1] for f in files]
    for rank, arrays in enumerate(shards):
        hand = {k.removeprefix("hand/"): v for k, v in arrays.items() if k.startswith("hand/")}
        fsdp = {k.removeprefix("fsdp/"): v for k, v in arrays.items() if k.startswith("fsdp/")}
        assert hand.keys() == fsdp.keys() and hand
        assert_tree_close(f"torch shard_rows vs fully_shard, rank {rank}", hand, fsdp, EXACT)
    V = data.vocab_size
    assert [len(s["fsdp/head.weight"]) for s in shards] == [(V + 1) // 2, V // 2]


@multidevice.cpu_simulation
def test_torch_checkpoint_from_2_ranks_continues_on_1(torch_fsdp_run):
    (losses, _, _), resumed, _ = torch_fsdp_run
    assert_close(
        "torch FSDP checkpoint x2 -> x1",
        "losses after the restore",
        resumed,
        losses[HALF:],
        TRAJECTORY,
    )


@multidevice.cpu_simulation
def test_torch_memory_per_rank_is_about_1_over_n(torch_fsdp_run):
    (_, _, memory), _, _ = torch_fsdp_run
    # dim 0 splits unevenly (83 rows: 42 on rank 0, 41 on rank 1): a little over a half
    assert memory["params sharded"] <= 0.51 * memory["params replicated"]
    assert memory["optimizer sharded"] <= 0.51 * memory["optimizer replicated"]


@multidevice.cpu_simulation
def test_torch_mismatched_checkpoint_is_one_line(torch_fsdp_run, data):
    model = torch_loop.build_model(
        dataclasses.replace(multidevice.LOOP_CFG, n_hidden=32), data.vocab_size
    )
    with pytest.raises(
        UsageError,
        match=r"^checkpoint does not fit the model: fc1.bias is \(64,\) there, "
        r"the model wants \(32,\)$",
    ):
        torch_fsdp.restore_checkpoint(torch_fsdp_run[2] / "checkpoint", model, None, None)


@multidevice.cpu_simulation
def test_torch_fsdp_bf16_policy_within_bf16_tier(torch_single, tmp_path):
    """MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) on 2 ranks vs fp32 on one
    device."""
    torch_parallel.torchrun(
        "week1_torch.fsdp",
        2,
        worker_args(dataclasses.replace(CFG, mixed_precision=True), tmp_path, "train"),
        timeout_s=300,
    )
    losses, grads, _ = torch_parallel.load_result(tmp_path / "train")
    assert_close(
        "torch FSDP x2 bf16 vs 1 device fp32", "loss step 1", losses[0], torch_single[0][0], BF16
    )
    assert_tree_close(
        "torch FSDP x2 bf16 vs 1 device fp32, grads step 1", grads, torch_single[1], BF16
    )
    assert_close(
        "torch FSDP x2 bf16 vs 1 device fp32",
        "final loss",
        losses[-1],
        torch_single[0][-1],
        BF16_FINAL_LOSS,
    )


@multidevice.cpu_simulation
def test_fsdp_across_frameworks(jax_fsdp_run, torch_fsdp_run):
    losses, grads, _ = jax_fsdp_run
    (torch_losses, torch_grads, _), _, _ = torch_fsdp_run
    assert_tree_close(
        "jax fsdp x8 vs torch FSDP x2, grads step 1",
        convert.flax_to_torch(grads, convert.CHAR_MLP),
        torch_grads,
        F32,
    )
    assert_close("jax fsdp x8 vs torch FSDP x2", "20-step losses", losses, torch_losses, TRAJECTORY)


@pytest.mark.gpu
def test_single_gpu_fsdp_equals_single_device(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    run_dir = multidevice.week1_run_torch("fsdp", dataclasses.replace(CFG, devices=1), tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    for name in ("final loss x1", "final loss resumed on x1"):
        assert_close(
            "torch FSDP x1 GPU (nccl) vs 1 GPU",
            name,
            summary[name],
            summary["final loss 1 device"],
            TRAJECTORY,
        )


@multidevice.cpu_simulation
@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_fsdp_on_two_nodes_equals_one_device(framework, tmp_path):
    """`week1 run fsdp` as two "nodes" on 127.0.0.1 (torch: c10d rendezvous; JAX:
    jax.distributed, one CPU device each): both see the same losses, and the final one is the
    single-device run's (each run trains that too, from the same seed)."""
    cfg = dataclasses.replace(CFG, steps=10)
    nodes = multidevice.week1_run_two_nodes("fsdp", framework, cfg, tmp_path)
    first, second = ([r["train_loss"] for r in read_metrics(n)] for n in nodes)
    assert len(first) == cfg.steps
    assert_close(f"{framework} FSDP 2 nodes", "node 1 vs node 0 losses", second, first, F32)
    summary = read_summary(nodes[0])
    assert_close(f"{framework} FSDP 2 nodes vs 1 device", "final loss", first[-1],
                 summary["final loss 1 device"], TRAJECTORY)  # fmt: skip
