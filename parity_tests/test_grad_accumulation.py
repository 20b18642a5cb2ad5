"""Gradient accumulation: k micro-batches == one big batch (F64, each framework), JAX == torch
(F32).

The trap is tested too: normalising each micro-batch by its own token count
must *differ* from the big batch, since the padded micro-batches have different
numbers of real tokens.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from labs import grad_accumulation as spec
from week1 import charlm, convert
from week1.tolerances import F32, F64, assert_tree_close, measure
from week1_jax import grad_accumulation as jga
from week1_jax.lib import charlm as jtl
from week1_jax.lib import models as jmodels
from week1_jax.lib import precision, steps
from week1_torch import grad_accumulation as tga
from week1_torch.lib import charlm as ttl
from week1_torch.lib import models as tmodels

CFG = spec.Config(batch_size=32, micro_batches=4, n_hidden=64, steps=10, warmup_steps=2)


@pytest.fixture(scope="module")
def batch():
    data = charlm.load_data(CFG)
    x, y = spec.padded_batch(data, CFG, 3)
    xs, ys = spec.split_micro_batches(x, y, CFG.micro_batches)
    assert len(set((ys != spec.IGNORE_INDEX).sum(axis=1))) > 1, (
        "micro-batches should differ in real tokens"
    )
    return data.vocab_size, x, y, xs, ys


def jax_grads(grads) -> dict:
    return jmodels.named_arrays(grads)


def torch_grads(grads) -> dict:
    return {name: g.detach().numpy() for name, g in grads.items()}


def assert_trap_differs(check, wrong: dict, reference: dict):
    """Per-micro-batch normalisation must be visibly off (far outside even the BF16 tier)."""
    worst = max(measure(wrong[n], reference[n], F32).max_rel for n in reference)
    assert worst > 1e-2, (
        f"{check}: per-micro-batch normalisation matched the big batch (max rel {worst:.3g})"
    )


def test_jax_scan_equals_big_batch_f64(batch):
    vocab, x, y, xs, ys = batch
    with jax.enable_x64(True):
        model = precision.apply_policy(jtl.build_model(CFG, vocab), precision.FP64)
        _, reference = jga.big_batch_grads(model, jnp.asarray(x), jnp.asarray(y))
        reference = jax_grads(reference)
        for normalise in spec.NORMALISATIONS:
            _, grads = jga.accumulate_grads(
                model, *jga.as_arrays(xs, ys, spec.normalisers(ys, normalise))
            )
            if normalise == "total":
                assert_tree_close(
                    "grad_accumulation jax scan f64", jax_grads(grads), reference, F64
                )
            else:
                assert_trap_differs("jax scan", jax_grads(grads), reference)


def test_jax_multisteps_equals_big_batch_update_f64(batch):
    """k MultiSteps calls leave the same parameters as one AdamW step on the big batch."""
    vocab, x, y, xs, ys = batch
    with jax.enable_x64(True):
        big = precision.apply_policy(jtl.build_model(CFG, vocab), precision.FP64)
        big_opt = jtl.make_optimizer(big, CFG)
        for _ in range(2):  # the 2nd update has a non-zero learning rate after warmup's lr(0) = 0
            _, grads = jga.big_batch_grads(big, jnp.asarray(x), jnp.asarray(y))
            big_opt.update(big, grads)
        multi = precision.apply_policy(jtl.build_model(CFG, vocab), precision.FP64)
        multi_opt = jga.make_multisteps_optimizer(multi, CFG, accumulator_dtype=jnp.float64)
        graphdef, state = nnx.split((multi, multi_opt))
        update = steps.jit_on_state(graphdef, jga.multisteps_step)
        for _ in range(2):
            arrays = jga.as_arrays(xs, ys, spec.normalisers(ys, "total"))
            state, _ = update(state, jax.random.key(0), *arrays)
        nnx.update((multi, multi_opt), state)
        assert_tree_close(
            "grad_accumulation jax MultiSteps f64",
            jmodels.get_weights(multi),
            jmodels.get_weights(big),
            F64,
        )


def test_torch_loop_equals_big_batch_f64(batch):
    vocab, x, y, xs, ys = batch
    model = ttl.build_model(CFG, vocab).double()
    _, reference = tga.big_batch_grads(
        model, torch.from_numpy(x).long(), torch.from_numpy(y).long()
    )
    reference = torch_grads(reference)
    for normalise in spec.NORMALISATIONS:
        xs_t, ys_t, _ = tga.as_tensors(xs, ys, spec.normalisers(ys, normalise))
        norms = torch.from_numpy(spec.normalisers(ys, normalise))  # float64
        _, grads = tga.accumulate_grads(model, xs_t, ys_t, norms)
        if normalise == "total":
            assert_tree_close(
                "grad_accumulation torch loop f64", torch_grads(grads), reference, F64
            )
        else:
            assert_trap_differs("torch loop", torch_grads(grads), reference)


def test_accumulated_grads_jax_equal_torch_f32(batch):
    vocab, x, y, xs, ys = batch
    torch_model = ttl.build_model(CFG, vocab)
    weights = tmodels.get_weights(torch_model)
    jax_model = jtl.build_model(CFG, vocab, convert.torch_to_flax(weights, convert.CHAR_MLP))
    norms = spec.normalisers(ys, "total")
    jax_loss, jgrads = jga.accumulate_grads(jax_model, *jga.as_arrays(xs, ys, norms))
    torch_loss, tgrads = tga.accumulate_grads(torch_model, *tga.as_tensors(xs, ys, norms))
    assert_tree_close(
        "grad_accumulation jax vs torch",
        {"loss": np.asarray(jax_loss)},
        {"loss": torch_loss.numpy()},
        F32,
    )
    assert_tree_close(
        "grad_accumulation jax vs torch",
        convert.flax_to_torch(jax_grads(jgrads), convert.CHAR_MLP),
        torch_grads(tgrads),
        F32,
    )


def test_config_rejects_uneven_split():
    from week1.config import UsageError

    with pytest.raises(UsageError, match="multiple of micro_batches"):
        dataclasses.replace(CFG, batch_size=30).check()
