"""embedding_tradeoffs parity: the Matryoshka loss and the quantisers.

- the Matryoshka loss (sentence-transformers' MatryoshkaLoss around MultipleNegativesRankingLoss)
  in torch float64 equals it written out with torch.nn.functional.cosine_similarity and a
  log-softmax (F64); the head's loss and gradients from the same weights, batch and dropout
  masks: JAX = torch (F32); the untrained head is the identity (naive truncation);
- int8: JAX = torch = numpy (exact integers); binary: np.packbits and a numpy Hamming count
  (exact); the three searches return the same documents in both frameworks.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from labs import embedding_tradeoffs as spec
from week1 import convert
from week1.tolerances import EXACT, F64, assert_close, assert_tree_close
from week1_jax import embedding_tradeoffs as jax_lab
from week1_jax.lib.models import named_arrays
from week1_torch import embedding_tradeoffs as torch_lab

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
