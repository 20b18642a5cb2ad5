"""embedding_tradeoffs parity: the Matryoshka loss and the quantisers.

- the Matryoshka loss (sentence-transformers' MatryoshkaLoss around MultipleNegativesRankingLoss)
  in torch float64 equals it written out with torch.nn.functional.cosine_similarity and a
  log-softmax (F64); the head's loss and gradients from the same weights, batch and dropout
  masks: JAX = torch (F32); the untrained head is the identity (naive truncation);
- int8: JAX = torch = numpy (exact integers); binary: np.packbits and a numpy Hamming count
  (exact); the three searches return the same documents in both frameworks;
- tying: the char LM's loss and gradients, untied and tied, JAX = torch from the same weights
  (F32); the tied embedding's gradient is the sum of its two ends', computed apart with an
  input matrix and an output matrix both set to it (F32, each framework); the parameter
  counts of the table's formula are the models' own (exact).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

from labs import embedding_tradeoffs as spec
from week1 import charlm, convert
from week1.tolerances import EXACT, F32, F64, assert_close, assert_tree_close
from week1_jax import embedding_tradeoffs as jax_lab
from week1_jax.lib import charlm as jax_lm
from week1_jax.lib.models import get_weights as jax_weights
from week1_jax.lib.models import named_arrays
from week1_torch import embedding_tradeoffs as torch_lab
from week1_torch.lib import charlm as torch_lm
from week1_torch.lib.models import get_weights

CFG = dataclasses.replace(spec.Config(), batch_size=8, prefixes="4,8,16", drop=0.2)
B, C = 8, 16


def written_out(a, b, prefixes, scale):
    """sum_m mean_i -log softmax_j(scale * cos(a_i[:m], b_j[:m]))_i; F.cosine_similarity's cos."""
    total = 0.0
    for m in prefixes:
        cos = F.cosine_similarity(a[:, None, :m], b[None, :, :m], dim=-1)  # (B, B)
        log_p = torch.log_softmax(scale * cos, dim=1)
        total = total - log_p.diagonal().mean()
    return total


def test_matryoshka_loss_equals_the_written_out_maths():
    rng = np.random.default_rng(0)
    a, b = (torch.tensor(rng.normal(size=(B, C)), requires_grad=True) for _ in range(2))
    ours = torch_lab.matryoshka_loss(a, b, CFG.prefix_list, CFG.scale)
    reference = written_out(a, b, CFG.prefix_list, CFG.scale)
    assert_close("matryoshka vs written out", "loss", ours.item(), reference.item(), F64)
    grads = torch.autograd.grad(ours, (a, b))
    ref_grads = torch.autograd.grad(reference, (a, b))
    for name, g, r in zip(("a", "b"), grads, ref_grads, strict=True):
        assert_close("matryoshka vs written out", f"d/d{name}", g.numpy(), r.numpy(), F64)


def head_inputs():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(B, 384)).astype(np.float32)
    mask_a, mask_b = spec.dropout_masks(CFG, 3)
    weights = {
        "proj.weight": (np.eye(384) + 0.05 * rng.normal(size=(384, 384))).astype(np.float32),
        "proj.bias": (0.1 * rng.normal(size=384)).astype(np.float32),
    }
    return (e, mask_a, mask_b), weights


def test_head_loss_and_grads_jax_equals_torch():
    """In float64 in both (the loss's scale of 20 amplifies float32's summation-order
    differences in the (384, 384) gradient beyond F32's atol)."""
    batch, weights = head_inputs()
    batch = tuple(x.astype(np.float64) for x in batch)
    model = torch_lab.build_model(CFG, weights).double()
    loss = torch_lab.head_loss(model, *(torch.from_numpy(x) for x in batch), CFG)
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
    with jax.enable_x64(True):
        graphdef, params = nnx.split(jax_lab.build_model(CFG, weights))
        params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
        value_and_grad = jax.value_and_grad(
            lambda p, *b: jax_lab.head_loss(nnx.merge(graphdef, p), *b, CFG)
        )
        jloss, jgrads = jax.jit(value_and_grad)(params, *(jnp.asarray(x) for x in batch))
        named = convert.flax_to_torch(named_arrays(jgrads), jax_lab.WEIGHT_MAP)
        jloss = float(jloss)
    assert_close("matryoshka head jax vs torch", "loss", jloss, loss.item(), F64)
    assert_tree_close("matryoshka head jax vs torch grads", named, grads, F64)


def test_the_untrained_head_is_truncation():
    e = np.random.default_rng(2).normal(size=(3, 384)).astype(np.float32)
    with torch.no_grad():
        out = torch_lab.build_model(CFG)(torch.from_numpy(e)).numpy()
    assert_close("identity head", "torch", out, e, EXACT)
    assert_close(
        "identity head", "jax", np.asarray(jax_lab.build_model(CFG)(jnp.asarray(e))), e, EXACT
    )


def test_quantisers_jax_torch_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 64)).astype(np.float32)
    scales = np.abs(x).max(axis=0) / np.float32(127)
    reference = np.clip(np.round(x / scales), -127, 127).astype(np.int8)
    t_scales = torch_lab.int8_scales(torch.from_numpy(x))
    j_scales = jax_lab.int8_scales(jnp.asarray(x))
    t8 = torch_lab.quantise_int8(torch.from_numpy(x), t_scales).numpy()
    j8 = np.asarray(jax_lab.quantise_int8(jnp.asarray(x), j_scales))
    assert_close("int8", "torch vs numpy", t8, reference, EXACT)
    assert_close("int8", "jax vs numpy", j8, reference, EXACT)
    packed = np.packbits(x > 0, axis=1)  # (20, 8), most significant bit first
    tb, jb = torch_lab.binarise(torch.from_numpy(x)).numpy(), np.asarray(jax_lab.binarise(x))
    assert_close("binary", "torch vs np.packbits", tb, packed, EXACT)
    assert_close("binary", "jax vs np.packbits", jb, packed, EXACT)
    bits = x > 0
    distances = (bits[:5, None, :] != bits[None, :, :]).sum(axis=-1)  # (5, 20)
    t_ham = torch_lab.hamming(torch.from_numpy(packed[:5]), torch.from_numpy(packed)).numpy()
    j_ham = np.asarray(jax_lab.hamming(jnp.asarray(packed[:5]), jnp.asarray(packed)))
    assert_close("hamming", "torch vs numpy", t_ham, distances, EXACT)
    assert_close("hamming", "jax vs numpy", j_ham, distances, EXACT)


def test_searches_jax_equal_torch():
    rng = np.random.default_rng(4)
    documents = rng.normal(size=(200, 32)).astype(np.float32)
    queries = documents[:30] + 0.5 * rng.normal(size=(30, 32)).astype(np.float32)
    cfg = dataclasses.replace(CFG, rescore=3)
    t, j = torch_lab.search(queries, documents, cfg), jax_lab.search(queries, documents, cfg)
    assert set(t) == set(j) == {"int8", "binary", "binary + rescore"}
    for name in t:
        assert_close("search", name, j[name], t[name], EXACT)


LM = charlm.Config(block_size=4, n_embd=6, n_hidden=16)  # a small char LM
V = 11


def lm_batch():
    """(x (8, 4), y (8,)) int ids below V."""
    rng = np.random.default_rng(5)
    return rng.integers(0, V, size=(8, LM.block_size)), rng.integers(0, V, size=8)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_char_lm_loss_and_grads_jax_equals_torch(tied):
    """From torch's initial weights (converted by charlm.weight_map): the loss and every
    parameter's gradient on one batch, JAX = torch (F32)."""
    lm = dataclasses.replace(LM, tied=tied)
    model = torch_lm.build_model(lm, V)
    weights = get_weights(model)
    x, y = lm_batch()
    loss = torch_lm.loss_fn(model, *torch_lm.as_tensors(x, y))
    loss.backward()
    grads = {n: p.grad.cpu().numpy() for n, p in model.named_parameters()}
    table = charlm.weight_map(lm)
    jax_model = jax_lm.build_model(lm, V, convert.torch_to_flax(weights, table))
    jax_loss, jax_grads = nnx.value_and_grad(jax_lm.loss_fn)(jax_model, *jax_lm.as_arrays(x, y))
    check = f"char LM {'tied' if tied else 'untied'} jax vs torch"
    assert_close(check, "loss", float(jax_loss), loss.item(), F32)
    named = convert.flax_to_torch(named_arrays(jax_grads), table)
    assert_tree_close(f"{check} grads", named, grads, F32)


def both_ends_torch(weights: dict, x: np.ndarray, y: np.ndarray):
    """(dL/dE of the tied model, dL/dE_in, dL/dW_out): the second and third from the same
    computation written with two matrices, E_in (V, C) for the input rows and W_out (C, V) for
    the output, both set to the tied E."""
    lm = dataclasses.replace(LM, tied=True)
    model = torch_lm.build_model(lm, V, weights)
    x, y = torch_lm.as_tensors(x, y)
    torch_lm.loss_fn(model, x, y).backward()
    E = model.wte.weight.detach()
    E_in = E.clone().requires_grad_()
    W_out = E.T.clone().requires_grad_()  # (C, V)
    h = E_in[x].reshape(len(x), -1)  # (B, T*C)
    g = model.proj(torch.tanh(model.ln(model.fc1(h))))  # (B, C)
    F.cross_entropy(g @ W_out + model.head_bias, y).backward()  # (B, V)
    return model.wte.weight.grad.numpy(), E_in.grad.numpy(), W_out.grad.numpy()


def both_ends_jax(weights: dict, x: np.ndarray, y: np.ndarray):
    """both_ends_torch in JAX."""
    lm = dataclasses.replace(LM, tied=True)
    model = jax_lm.build_model(lm, V, convert.torch_to_flax(weights, charlm.TIED_WEIGHT_MAP))
    x, y = jax_lm.as_arrays(x, y)
    tied = named_arrays(nnx.grad(jax_lm.loss_fn)(model, x, y))["wte.embedding"]

    def untied(E_in, W_out):
        h = E_in[x].reshape(x.shape[0], -1)  # (B, T*C)
        g = model.proj(jnp.tanh(model.ln(model.fc1(h))))  # (B, C)
        logits = g @ W_out + model.head_bias[...]  # (B, V)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    E = model.wte.embedding[...]
    grad_in, grad_out = jax.grad(untied, argnums=(0, 1))(E, E.T)
    return np.asarray(tied), np.asarray(grad_in), np.asarray(grad_out)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_tied_embedding_gradient_is_the_sum_of_both_ends(framework):
    """grad_E(tied) = grad_in + grad_out^T (F32); neither end alone is the whole of it."""
    weights = get_weights(torch_lm.build_model(dataclasses.replace(LM, tied=True), V))
    x, y = lm_batch()
    tied, grad_in, grad_out = (both_ends_jax if framework == "jax" else both_ends_torch)(
        weights, x, y
    )
    check = f"tied embedding gradient ({framework})"
    assert_close(check, "grad_E = grad_in + grad_out^T", tied, grad_in + grad_out.T, F32)
    assert not np.allclose(tied, grad_in, atol=1e-4), "the output side is missing"
    assert not np.allclose(tied, grad_out.T, atol=1e-4), "the input side is missing"


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_parameter_counts(tied):
    """charlm.Config.n_params and the table's output_params count the models' own parameters,
    in both frameworks (exact)."""
    lm = dataclasses.replace(LM, tied=tied)
    sizes = {n: a.size for n, a in get_weights(torch_lm.build_model(lm, V)).items()}
    jax_sizes = [a.size for a in jax_weights(jax_lm.build_model(lm, V)).values()]
    assert sum(sizes.values()) == sum(jax_sizes) == lm.n_params(V)
    output = sum(size for n, size in sizes.items() if n.startswith(("head", "proj")))
    assert output == spec.output_params(lm, V)
