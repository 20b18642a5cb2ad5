"""Model parallelism equals single-device training (F32 for step 1's loss and every gradient,
TRAJECTORY for 20 steps), in JAX (tensor parallel under jit and under shard_map on a 2 x 4
(data, model) mesh, GPipe over 2 stages on 8 host devices) and torch (DTensor and hand-written
tensor parallelism, GPipe and 1F1B, 2 gloo processes); JAX equals torch from the same weights;
the compiled HLO carries the collectives the formula counts.
"""

import json
import subprocess
import sys

import multidevice
import numpy as np
import pytest

from labs import model_parallel as spec
from week1.config import UsageError
from week1.parallel import worker_args
from week1.tolerances import F32, F64, TRAJECTORY, assert_close, assert_tree_close
from week1_jax import model_parallel as jax_mp
from week1_torch.lib import parallel as torch_parallel

# Small enough to compile quickly: 2 blocks, 4 heads (1 per model device), 2 stages.
CFG = spec.Config(
    steps=20,
    batch_size=16,
    block_size=8,
    n_embd=32,
    n_head=4,
    n_layer=2,
    n_hidden=64,
    warmup_steps=5,
    lr=1e-2,
    tensor_parallel=4,
    stages=2,
    microbatches=2,
    sweep=False,
)


@pytest.fixture(scope="module")
def mp_data():
    return spec.load_data(CFG)


@pytest.fixture(scope="module")
def jax_runs(mp_data):
    """mode -> (step 1's gradients by torch name, the 20 losses, the placed Mode and state)."""
    runs = {}
    for mode in ("single_device", *spec.JAX_MODES):
        history, placed, state, grads = jax_mp.train(CFG, mp_data, mode)
        runs[mode] = grads, history.train_loss, (placed, state)
    return runs


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory):
    """The same from 2 torchrun ranks (the worker's parity mode), as rank 0 wrote them."""
    out = tmp_path_factory.mktemp("ranks")
    torch_parallel.torchrun("week1_torch.model_parallel", 2, worker_args(CFG, out, "parity"),
                            timeout_s=300)  # fmt: skip
    runs = {}
    for mode in ("single_device", *spec.TORCH_MODES):
        losses, grads, _ = torch_parallel.load_result(out / mode)
        runs[mode] = grads, losses, None
    return runs


def check_equal(check: str, run, reference) -> None:
    (grads, losses, _), (ref_grads, ref_losses, _) = run, reference
    assert len(grads) == len(ref_grads) == len(spec.weight_map(CFG.n_layer))
    assert_close(check, "loss step 1", losses[0], ref_losses[0], F32)
    assert_tree_close(f"{check}, grads step 1", grads, ref_grads, F32)
    assert_close(check, "20-step losses", losses, ref_losses, TRAJECTORY)


@multidevice.cpu_simulation
@pytest.mark.parametrize("mode", spec.JAX_MODES)
def test_jax_mode_equals_single_device(mode, jax_runs):
    check_equal(f"jax {mode} vs 1 device", jax_runs[mode], jax_runs["single_device"])


@multidevice.cpu_simulation
@pytest.mark.parametrize("mode", spec.TORCH_MODES)
def test_torch_mode_equals_single_device(mode, torch_runs):
    check_equal(f"torch {mode} x2 vs 1 device", torch_runs[mode], torch_runs["single_device"])


@multidevice.cpu_simulation
@pytest.mark.parametrize("mode", ["single_device", "tensor_parallel", "pipeline_gpipe"])
def test_jax_equals_torch_from_the_same_weights(mode, jax_runs, torch_runs):
    check_equal(f"jax vs torch, {mode}", jax_runs[mode], torch_runs[mode])


@multidevice.cpu_simulation
def test_hlo_collectives_match_the_formula(jax_runs):
    """The shard_map step all-reduces exactly what Megatron's formula counts (4 per block and the
    data axis's gradients) plus the 4-byte loss; the compiler's version at least as much; the
    pipeline ppermutes once per tick each way, bubbles included."""
    placed = {mode: jax_runs[mode][2][0] for mode in spec.JAX_MODES}
    counts, sent = {}, {}
    for mode in spec.JAX_MODES:
        counts[mode], sent[mode] = jax_mp.collectives(placed[mode])
    formula = placed["tensor_parallel_shard_map"].comm_bytes
    loss_pmean = spec.allreduce_bytes(4, 2)  # the loss over the data axis
    assert_close("HLO vs formula", "shard_map TP bytes", sent["tensor_parallel_shard_map"],
                 formula + loss_pmean, F32)  # fmt: skip
    assert counts["tensor_parallel_shard_map"] == {"all-reduce": 4 * CFG.n_layer + 1}
    assert sent["tensor_parallel"] >= formula
    ticks = CFG.microbatches + CFG.stages - 1
    assert counts["pipeline_gpipe"]["collective-permute"] == 2 * (ticks - 1)


def test_hlo_parser_reads_groups_and_tuples():
    hlo = (
        "%a = f32[16,64]{1,0} all-reduce(%x), replica_groups=[2,4]<=[8], to_apply=%add\n"
        "%b = (f32[8]{0}, f32[8]{0}) all-reduce(%y, %z), replica_groups={{0,1},{2,3}}\n"
        "%c = f32[4]{0} collective-permute(%w), source_target_pairs={{0,1}}\n"
        "%d = f32[4]{0} add(%c, %c)\n"
    )
    counts, sent = spec.hlo_collectives(hlo, 8)
    assert counts == {"all-reduce": 2, "collective-permute": 1}
    expected = spec.allreduce_bytes(16 * 64 * 4, 4) + spec.allreduce_bytes(2 * 8 * 4, 2) + 16
    assert sent == pytest.approx(expected)


def test_measured_bubble_recovers_the_formula_from_ideal_step_times():
    """Step times of an ideal pipeline, T(m) = (m + p - 1) t, give back (p-1)/(m+p-1)."""
    for stages in (2, 4):
        ms = spec.sweep_microbatches("pipeline_gpipe", stages)
        seconds = [(m + stages - 1) * 0.013 for m in ms]
        formula = [spec.bubble_formula(stages, m) for m in ms]
        assert_close("ideal pipeline", f"bubble, p={stages}", spec.measured_bubble(ms, seconds),
                     formula, F64)  # fmt: skip


@multidevice.cpu_simulation
def test_bad_splits_name_the_value(mp_data):
    with pytest.raises(UsageError, match=r"tensor_parallel=3: must divide n_head=4"):
        spec.Config(n_head=4, tensor_parallel=3).check()
    with pytest.raises(UsageError, match=r"stages=3: must divide n_layer=4"):
        spec.Config(stages=3).check()
    with pytest.raises(UsageError, match=r"devices=16: only 8 available"):
        jax_mp.setup(spec.Config(devices=16), mp_data, "tensor_parallel")


@pytest.mark.slow
@multidevice.cpu_simulation
@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_week1_run_writes_every_mode_and_the_sweep(framework, tmp_path):
    """`week1 run model_parallel` end to end (small): one summary entry per mode, at float32
    rounding from one device, and the bubble sweep; torch's 1F1B keeps fewer activations on
    stage 0 than GPipe once m > p."""
    small = {
        **{
            k: getattr(CFG, k)
            for k in ("batch_size", "block_size", "n_embd", "n_head", "n_layer", "n_hidden", "lr")
        },
        "steps": 30,
        "warmup_steps": 5,
        "stages": 2,
        "microbatches": 2,
    }
    command = [
        sys.executable,
        "-m",
        "week1",
        "run",
        "model_parallel",
        "--framework",
        framework,
        f"--runs-dir={tmp_path}",
        *(f"--{k}={v}" for k, v in small.items()),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(tmp_path.iterdir()).joinpath("summary.json").read_text())
    modes = spec.JAX_MODES if framework == "jax" else spec.TORCH_MODES
    for mode in modes:
        assert summary[mode]["max_abs_loss_diff_vs_single_device"] < 1e-4
        assert summary[mode]["devices"] > 1
    sweep = summary["bubble_sweep"]
    assert sweep["pipeline_gpipe microbatches"] == list(spec.SWEEP_MICROBATCHES)
    if framework == "torch":  # p = 2: 1F1B runs m = 2, 4, 8
        gpipe = np.array(sweep["pipeline_gpipe activation bytes"])
        one_f_one_b = np.array(sweep["pipeline_1f1b activation bytes"])
        assert np.all(np.diff(gpipe) > 0)
        assert np.all(one_f_one_b[1:] < gpipe[2:])
