"""Mixed precision: the JAX bf16 policy and torch.autocast agree (BF16 tier); the written-out
loss scaler follows torch.amp.GradScaler step for step; formats and demos agree exactly."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from labs import mixed_precision as spec
from week1 import charlm, convert
from week1.tolerances import BF16, BF16_FINAL_LOSS, EXACT, assert_close, assert_tree_close
from week1_jax import mixed_precision as jmp
from week1_jax.lib import charlm as jtl
from week1_jax.lib import models as jmodels
from week1_jax.lib import precision as jprec
from week1_jax.lib import steps as jsteps
from week1_torch import mixed_precision as tmp
from week1_torch.lib import charlm as ttl
from week1_torch.lib import devices as tdevices
from week1_torch.lib import models as tmodels
from week1_torch.lib import precision as tprec

CFG = spec.Config(batch_size=32, n_hidden=64, steps=20, warmup_steps=5, eval_every=20)
CPU = torch.device("cpu")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data():
    return charlm.load_data(CFG)


def same_start(data, device, monkeypatch):
    monkeypatch.setattr(
        tdevices, "default_device", lambda: device
    )  # where build_model places the model
    torch_model = tmp.build_model(CFG, data.vocab_size, "bf16")
    weights = convert.torch_to_flax(tmodels.get_weights(torch_model), convert.CHAR_MLP)
    return jmp.build_model(CFG, data.vocab_size, "bf16", weights), torch_model, weights


@pytest.mark.parametrize(
    "device", [CPU, pytest.param(torch.device("cuda"), marks=[pytest.mark.gpu, gpu])]
)
def test_bf16_loss_and_grads_jax_equal_torch(data, device, monkeypatch):
    jax_model, torch_model, _ = same_start(data, device, monkeypatch)
    x, y = charlm.train_batch(data, CFG, 1)
    jax_loss, jax_grads = jmp.loss_and_grads(jax_model, *jtl.as_arrays(x, y), jprec.BF16)
    torch_loss, torch_grads = tmp.loss_and_grads(torch_model, *ttl.as_tensors(x, y, device), "bf16")
    assert jax_grads["fc1"]["kernel"][...].dtype == jnp.float32, "master-weight gradients are fp32"
    assert_close("mixed_precision bf16 jax vs torch", "loss", jax_loss, torch_loss.cpu(), BF16)
    named = jmodels.named_arrays(jax_grads)
    assert_tree_close(
        "mixed_precision bf16 grads jax vs torch",
        convert.flax_to_torch(named, convert.CHAR_MLP),
        {n: g.cpu().numpy() for n, g in torch_grads.items()},
        BF16,
    )


def test_bf16_training_final_loss_jax_equal_torch(data, monkeypatch):
    _, torch_model, weights = same_start(data, CPU, monkeypatch)
    _, jax_history, _ = jmp.train(CFG, data, "bf16", weights=weights)
    _, torch_history, _ = tmp.train(CFG, data, "bf16", weights=tmodels.get_weights(torch_model))
    assert_close(
        "mixed_precision bf16 20 steps",
        "final train loss",
        jax_history.train_loss[-1],
        torch_history.train_loss[-1],
        BF16_FINAL_LOSS,
    )
    assert_close(
        "mixed_precision bf16 20 steps",
        "final val loss",
        jax_history.val_loss[-1],
        torch_history.val_loss[-1],
        BF16_FINAL_LOSS,
    )


def test_loss_scaler_follows_grad_scaler():
    """The same finite/overflow sequence: the same scales after every step, the same steps
    skipped."""
    settings = dict(init_scale=2.0**10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    overflow_at = {3, 4, 9, 13}
    scaler = jprec.DynamicLossScale(**settings)
    state, jax_scales, jax_skipped = scaler.init(), [], []
    param = torch.nn.Parameter(torch.ones(2))
    sgd = torch.optim.SGD([param], lr=0.1)
    grad_scaler = tprec.grad_scaler("cpu", **settings)
    torch_scales, torch_skipped = [], []
    for step in range(1, 17):
        g = float("inf") if step in overflow_at else 1.0
        finite = jprec.all_finite(
            scaler.unscale(state, {"w": scaler.scale(state, jnp.array([1.0, g]))})
        )
        state = scaler.update(state, finite)
        jax_scales.append(float(state.scale))
        if not finite:
            jax_skipped.append(step)

        before = param.detach().clone()
        sgd.zero_grad()
        grad_scaler.scale((param * torch.tensor([1.0, g])).sum()).backward()
        grad_scaler.step(sgd)
        grad_scaler.update()
        torch_scales.append(grad_scaler.get_scale())
        if torch.equal(param.detach(), before):
            torch_skipped.append(step)
    assert jax_skipped == torch_skipped == sorted(overflow_at)
    assert_close(
        "mixed_precision loss scale",
        "scale after each step",
        np.array(jax_scales),
        np.array(torch_scales),
        EXACT,
    )
    changes = np.diff(jax_scales)
    assert (changes > 0).any() and (changes < 0).any(), "the sequence should both grow and back off"


def test_fp16_overflow_skips_the_step_in_both(data, monkeypatch):
    """A scale of 2^120 overflows the fp16 backward: both steps skip, keep the weights, halve the
    scale."""
    monkeypatch.setattr(tdevices, "default_device", lambda: CPU)
    torch_model = tmp.build_model(CFG, data.vocab_size, "fp16")
    weights = tmodels.get_weights(torch_model)
    jax_model = jmp.build_model(
        CFG, data.vocab_size, "fp16", convert.torch_to_flax(weights, convert.CHAR_MLP)
    )
    x, y = charlm.train_batch(data, CFG, 7)
    scaled_cfg = dataclasses.replace(CFG, init_scale=2.0**120)
    settings = scaled_cfg.loss_scale
    scaler = jprec.DynamicLossScale(**settings)
    jax_optimizer = jmp.make_optimizer(jax_model, scaled_cfg, "fp16")
    graphdef, state = nnx.split((jax_model, jax_optimizer))
    step = jsteps.jit_on_state(graphdef, jmp.make_train_step_scaled(jprec.FP16, scaler))
    state, jax_out = step(state, jax.random.key(0), *jtl.as_arrays(x, y))
    nnx.update((jax_model, jax_optimizer), state)
    torch_out = tmp.train_step_scaled(
        torch_model,
        *ttl.make_optimizer(torch_model, CFG),
        tprec.grad_scaler("cpu", **settings),
        *ttl.as_tensors(x, y, CPU),
        "fp16",
    )
    assert not bool(jax_out["finite"]) and not bool(torch_out["finite"])
    assert float(jax_out["scale"]) == 2.0**119
    assert_tree_close(
        "mixed_precision skipped step keeps jax weights",
        jmodels.get_weights(jax_model),
        convert.torch_to_flax(weights, convert.CHAR_MLP),
        EXACT,
    )
    assert_tree_close(
        "mixed_precision skipped step keeps torch weights",
        tmodels.get_weights(torch_model),
        weights,
        EXACT,
    )


def test_number_formats_and_demos_jax_equal_torch():
    jax_rows, torch_rows = jprec.number_formats(spec.FORMATS), tprec.number_formats(spec.FORMATS)
    for jax_row, torch_row in zip(jax_rows, torch_rows, strict=True):
        assert_close(
            "mixed_precision formats",
            jax_row[0],
            np.array(jax_row[1:]),
            np.array(torch_row[1:]),
            EXACT,
        )
    jax_demos, torch_demos = jmp.demos(), tmp.demos()
    for demo in spec.DEMOS:
        with np.errstate(
            invalid="ignore"
        ):  # inf - inf in the reported difference; EXACT checks equality
            assert_close(
                "mixed_precision demos",
                demo,
                np.array([jax_demos[demo][f] for f in spec.FORMATS]),
                np.array([torch_demos[demo][f] for f in spec.FORMATS]),
                EXACT,
            )
    # What the demos claim, against numpy's own float16.
    with np.errstate(over="ignore"):
        assert np.isinf(np.float16(300) * np.float16(300)) and np.isinf(
            jax_demos["300 * 300"]["float16"]
        )
    assert np.float16(1e-8) == 0 == jax_demos["gradient 1e-8"]["float16"]
    assert jax_demos["1 + 2^-8"]["bfloat16"] == 1.0
