"""backprop parity: the hand-written backward pass of the char MLP equals torch.autograd and
jax.grad of the library CharMLP per tensor (F64 in float64, F32 in float32), the two hand-written
versions equal each other, and central finite differences confirm the float64 gradients."""

import functools

import numpy as np
import pytest
import torch

from labs import backprop as spec
from week1.tolerances import F32, assert_close
from week1_jax import backprop as jax_lab
from week1_torch import backprop as torch_lab

CFG = spec.Config(block_size=4, n_embd=8, n_hidden=16, batch_size=16, fd_coords=2)
LABS = {"jax": jax_lab, "torch": torch_lab}


@functools.cache
def setup():
    x, y, vocab_size = spec.load_batch(CFG)
    return x, y, spec.init_weights(CFG, vocab_size)


def inputs(framework):
    x, y, weights = setup()
    if framework == "torch":
        return torch.as_tensor(x, dtype=torch.long), torch.as_tensor(y, dtype=torch.long), weights
    return x, y, weights


@pytest.mark.parametrize("dtype", list(spec.TIERS))
@pytest.mark.parametrize("framework", list(LABS))
def test_hand_backward_equals_autograd(framework, dtype):
    lab = LABS[framework]
    x, y, weights = inputs(framework)
    ours_loss, ours = lab.hand_grads(weights, x, y, dtype)
    ref_loss, ref = lab.autograd_grads(weights, x, y, dtype, CFG)
    tier = spec.TIERS[dtype]
    assert set(ours) == set(ref) == set(weights)
    assert_close(f"backprop {framework} {dtype}", "loss", ours_loss, ref_loss, tier)
    for name in ref:
        assert ours[name].shape == weights[name].shape
        assert_close(f"backprop {framework} {dtype}", name, ours[name], ref[name], tier)


@pytest.mark.parametrize("dtype", list(spec.TIERS))
def test_jax_and_torch_hand_backward_agree(dtype):
    grads = {}
    for framework, lab in LABS.items():
        x, y, weights = inputs(framework)
        grads[framework] = lab.hand_grads(weights, x, y, dtype)[1]
    for name in grads["torch"]:
        assert_close(
            f"backprop jax vs torch {dtype}",
            name,
            grads["jax"][name],
            grads["torch"][name],
            spec.TIERS[dtype],
        )


@pytest.mark.parametrize("framework", list(LABS))
def test_finite_differences_confirm_the_float64_gradients(framework):
    lab = LABS[framework]
    x, y, weights = inputs(framework)
    grads = lab.hand_grads(weights, x, y, "float64")[1]
    rows = spec.finite_differences(lambda w: lab.loss64(w, x, y), weights, grads, CFG)
    assert [r[1] for r in rows] == list(weights) and all(r[-1] for r in rows), rows
    # and a wrong gradient is caught: the check can fail
    wrong = dict(grads, **{"ln.weight": grads["ln.weight"] * 1.01})
    bad = spec.finite_differences(lambda w: lab.loss64(w, x, y), weights, wrong, CFG)
    assert not dict((r[1], r[-1]) for r in bad)["ln.weight"]


def test_unseen_characters_get_exactly_zero_embedding_gradient():
    x, y, weights = inputs("torch")
    grads = torch_lab.hand_grads(weights, x, y, "float64")[1]["wte.weight"]
    unseen = np.setdiff1d(np.arange(len(grads)), x.numpy())
    assert len(unseen) and not grads[unseen].any()
    assert_close("backprop", "unseen rows", grads[unseen], np.zeros_like(grads[unseen]), F32)


@pytest.mark.parametrize("framework", list(LABS))
def test_run_prints_every_tensor_ok(framework, capsys):
    summary = LABS[framework].run(CFG, None)
    assert summary["all ok"] and summary["tensors checked"] == 3 * len(setup()[2])
    assert "gradients: hand-written backward" in capsys.readouterr().out
