"""benchmark parity: both frameworks time the same work.

- every workload's first loss from the same weights and batch (F32; bf16 in the BF16 tier),
  and the loss after one optimizer step (TRAJECTORY: AdamW's first update is lr * sign(g),
  where a gradient near zero may take either sign), at the smallest size of the quick sweep
  (every size of it with the slow cases);
- the model FLOPs: the analytic count against XLA's cost_analysis and torch's FlopCounterMode,
  within 10% or for the reason the lab's FLOP table gives;
- on a GPU (gpu mark): the same losses there, TF32 off, fp32 and bf16.
"""

import numpy as np
import pytest
import torch
from flax import nnx

from labs import benchmark as spec
from labs import rnn
from week1 import convert
from week1.tolerances import BF16, F32, TRAJECTORY, assert_close
from week1_jax import benchmark as jax_lab
from week1_jax.lib import recurrent as jax_recurrent
from week1_torch import benchmark as torch_lab
from week1_torch.lib.models import get_weights

SWEEP = {w: [spec.Point(w, *size) for size in spec.SWEEPS[w]["quick-cpu"]] for w in spec.WORKLOADS}
SMALLEST = [points[0] for points in SWEEP.values()]
LARGER = [
    pytest.param(p, marks=pytest.mark.slow, id=f"{p.workload} {p.label}")
    for points in SWEEP.values()
    for p in points[1:]
]


def weights_of(point: spec.Point) -> tuple[dict, dict]:
    """(torch state_dict weights, the same under the JAX model's names): torch's init for the
    MLP and LSTMs, the lab's numpy init for BERT and word2vec."""
    if point.workload == "bert":
        torch_w = spec.bert_weights(0)
        return torch_w, convert.torch_to_flax(torch_w, spec.BERT_MAP)
    if point.workload == "word2vec":
        w = spec.word2vec_weights(point, 0)
        return w, w
    torch_w = get_weights(torch_lab.WORKLOADS[point.workload](point, "fp32", 0).model)
    if point.workload == "mlp":
        return torch_w, convert.torch_to_flax(torch_w, convert.CHAR_MLP)
    model = jax_recurrent.LSTMLM(
        spec.CHAR_VOCAB, spec.LSTM_EMBD, point.width, builtin=point.workload == "lstm-nn",
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    if point.workload == "lstm":
        return torch_w, convert.torch_to_flax(torch_w, jax_recurrent.weight_map(model))
    # The Flax built-in cell's parameters, by the rnn lab's table (one bias where torch has two).
    layer = {k[4:]: v for k, v in torch_w.items() if k.startswith("rnn.")}
    builtin = {f"rnn.{k}": v for k, v in rnn.to_builtin("lstm", layer, 1).items()}
    rest = {k: v for k, v in torch_w.items() if not k.startswith("rnn.")}
    return torch_w, {**builtin, **convert.torch_to_flax(rest, model.TORCH_ROWS)}


def check_losses(point: spec.Point, precision: str = "fp32") -> None:
    torch_w, jax_w = weights_of(point)
    jax_losses = jax_lab.losses_at(point, precision, jax_w)
    torch_losses = torch_lab.losses_at(point, precision, torch_w)
    check = f"benchmark {point.workload} {point.label} {precision}"
    first, second = (BF16, BF16) if precision == "bf16" else (F32, TRAJECTORY)
    assert_close(check, "loss (step 1)", jax_losses[0], torch_losses[0], first)
    assert_close(check, "loss (step 2)", jax_losses[1], torch_losses[1], second)


@pytest.mark.parametrize("point", SMALLEST, ids=lambda p: f"{p.workload} {p.label}")
def test_same_weights_same_batch_same_losses(point):
    check_losses(point)


@pytest.mark.parametrize("point", LARGER)
def test_same_losses_at_every_size_of_the_quick_sweep(point):
    check_losses(point)


def test_bf16_losses_agree_in_the_bf16_tier():
    check_losses(SWEEP["mlp"][0], "bf16")


def xla_flops(point: spec.Point) -> float:
    """XLA's count for one fp32 training step at `point`, from the lowered step: the lab counts
    the compiled one, the same number to a fraction of a percent, without the compilation."""
    workload = jax_lab.WORKLOADS[point.workload](point, "fp32", 0)
    return jax_lab.counted_flops(workload.step.lower(workload.state, *workload.batch))


def flop_counts(point: spec.Point) -> tuple[float, float]:
    """(XLA's count, FlopCounterMode's count) of one training step at `point`, fp32."""
    torch_workload = torch_lab.WORKLOADS[point.workload](point, "fp32", 0)
    return xla_flops(point), torch_lab.counted_flops(torch_workload)


@pytest.mark.parametrize("point", SMALLEST, ids=lambda p: f"{p.workload} {p.label}")
def test_flop_counts_agree_or_the_table_says_why(point):
    counts = dict(zip(("jax", "torch"), flop_counts(point), strict=True))
    for framework, counted in counts.items():
        ratio = counted / point.flops
        assert ratio > 0 or (framework, point.workload) in spec.WHY, (framework, counted)
        if abs(ratio - 1) > 0.10:
            assert (framework, point.workload) in spec.WHY, f"{framework}: {ratio:.3f}"
    if point.workload in ("mlp", "bert"):  # the matmul-dominated ones: torch counts matmuls
        assert abs(counts["torch"] / point.flops - 1) <= 0.10


def test_xla_counts_a_scan_body_once():
    """The stated reason for the LSTM's XLA count: it equals the analytic count with the
    recurrent product h W_hh (inside the scan) counted for one time step instead of T; the
    input projection and the head, outside the scan, are counted in full."""
    point = SWEEP["lstm"][0]
    B, H, T = point.batch, point.width, point.seq
    recurrent = 3 * 2 * B * T * H * 4 * H  # h_{t-1} W_hh, every step, forward and backward
    one_step = point.flops - recurrent * (T - 1) / T
    assert abs(xla_flops(point) / one_step - 1) <= 0.10


def test_the_analytic_mlp_count_is_the_matmuls():
    """H=128, B=32: fc1 is (32, 8*16) x (8*16, 128), the head (32, 128) x (128, 83); a training
    step is 3 forward passes' worth."""
    point = spec.Point("mlp", 128, 32)
    assert point.flops == 3 * 2 * 32 * (128 * 128 + 128 * 83)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("workload", ["mlp", "bert"])
def test_on_the_gpu_the_workloads_agree(workload, precision):
    """scripts/gpu_check.sh runs this: both frameworks on the GPU (their default device), TF32
    off for fp32 (conftest and the labs' own settings), bf16 in the BF16 tier."""
    assert torch_lab.devices.default_device().type == "cuda"
    assert np.asarray(jax_lab.devices.default_device().platform) != "cpu"
    check_losses(SWEEP[workload][0], precision)
