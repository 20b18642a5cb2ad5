"""elmo parity: the biLM and the scalar mix.

- the biLM on our LSTM (week1_torch/lib/recurrent.py) equals one on torch.nn.LSTM from the same
  weights: both directions' losses and every parameter's gradient (F32);
- the JAX biLM equals the torch one from the same (converted) weights: loss, gradients, and
  every layer's states on a ragged batch (F32);
- a padded batch gives each sentence the layers it gets alone (the backward LM reads each row
  reversed within its own length);
- the scalar mix: JAX = torch (F32) and torch float64 = its written-out derivative (F64);
- the sentiment probe's loss and gradients, JAX = torch.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from labs import elmo as spec
from week1 import convert
from week1.tolerances import F32, F64, assert_close, assert_tree_close
from week1_jax import elmo as jax_lab
from week1_jax.lib.models import named_arrays
from week1_torch import elmo as torch_lab

# XLA's cheaper optimisation level: these graphs are tiny, compiling them is the cost.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
CFG = dataclasses.replace(spec.Config(), hidden_size=8, num_layers=2, seed=0)
V, B, T = 50, 3, 7
LENGTHS = np.array([T, 1, 4], np.int32)


def batch(seed: int = 0):
    ids = np.random.default_rng(seed).integers(0, V, size=T + 2 + 200).astype(np.int32)
    return spec.bilm_batch(ids, T, B, seed, 1)  # x, y_fwd, y_bwd: (B, T) each


def jax_loss_and_grads(model, loss, *args):
    """(loss, gradients by torch name) of `loss(model, *args)`, jitted over the split state."""
    graphdef, params = nnx.split(model)
    value_and_grad = jax.value_and_grad(lambda p, *a: loss(nnx.merge(graphdef, p), *a))
    value, grads = jax.jit(value_and_grad, compiler_options=FAST_COMPILE)(params, *args)
    return float(value), convert.flax_to_torch(named_arrays(grads), jax_lab.weight_map(model))


def torch_model(builtin: bool = False):
    return torch_lab.build_model(CFG, V, builtin=builtin)


def torch_loss_and_grads(model, x, y_f, y_b):
    model.zero_grad()
    loss = torch_lab.bilm_loss(model, *torch_lab.as_tensors(x, y_f, y_b))
    loss.backward()
    grads = {n: p.grad.detach().cpu().numpy() for n, p in model.named_parameters()}
    return loss.item(), grads


def test_bilm_ours_equals_torch_nn_lstm():
    ours = torch_model()
    reference = torch_model(builtin=True)
    reference.load_state_dict(ours.state_dict())
    loss, grads = torch_loss_and_grads(ours, *batch())
    ref_loss, ref_grads = torch_loss_and_grads(reference, *batch())
    assert set(grads) == set(ref_grads)
    assert_close("bilm vs torch.nn.LSTM", "loss", loss, ref_loss, F32)
    assert_tree_close("bilm vs torch.nn.LSTM grads", grads, ref_grads, F32)


def test_bilm_jax_equals_torch():
    model = torch_model()
    weights = torch_lab.torch_weights(model)
    loss, grads = torch_loss_and_grads(model, *batch(1))
    jmodel = jax_lab.build_model(CFG, V, weights)
    jloss, named = jax_loss_and_grads(jmodel, jax_lab.bilm_loss, *jax_lab.as_arrays(*batch(1)))
    assert_close("bilm jax vs torch", "loss", jloss, loss, F32)
    assert_tree_close("bilm jax vs torch grads", named, grads, F32)
    # every layer's states on a ragged batch
    ids = batch(2)[0]
    with torch.no_grad():
        layers = torch_lab.elmo_layers(model, ids, LENGTHS)
    jlayers = jax_lab.elmo_layers(jmodel, ids, LENGTHS)
    mask = np.arange(T)[None, :] < LENGTHS[:, None]  # (B, T): real positions
    assert_close(
        "bilm jax vs torch", "layers (real positions)", jlayers[:, mask], layers[:, mask], F32
    )


def test_padded_batch_equals_each_sentence_alone():
    model = torch_model()
    ids = batch(3)[0]
    together = torch_lab.elmo_layers(model, ids, LENGTHS)  # (J, B, T, 2H)
    for i, n in enumerate(LENGTHS):
        alone = torch_lab.elmo_layers(model, ids[i : i + 1, :n], LENGTHS[i : i + 1])
        assert_close("padding", f"row {i}", together[:, i, :n], alone[:, 0], F32)


def mix_inputs(dtype):
    rng = np.random.default_rng(4)
    h = rng.normal(size=(5, 3, 6)).astype(dtype)  # (B, J, D)
    g = rng.normal(size=(5, 6)).astype(dtype)  # d loss / d mix: loss = sum(mix * g)
    s = rng.normal(size=3).astype(dtype)
    gamma = np.asarray([1.7], dtype)
    return h, g, s, gamma


def written_out_mix_grads(h, g, s, gamma) -> dict:
    r"""loss = sum_b,d g_bd * gamma * sum_j w_j h_bjd, w = softmax(s):
    d/dgamma = sum_j w_j <g, h_j>;  d/ds_k = gamma * w_k (<g, h_k> - sum_j w_j <g, h_j>)."""
    w = np.exp(s - s.max())
    w /= w.sum()
    inner = np.einsum("bjd,bd->j", h, g)  # <g, h_j>
    return {"s": gamma * w * (inner - w @ inner), "gamma": np.asarray([w @ inner])}


def torch_mix_grads(h, g, s, gamma, dtype):
    mix = torch_lab.ScalarMix(3).to(dtype)
    with torch.no_grad():
        mix.s.copy_(torch.from_numpy(s))
        mix.gamma.copy_(torch.from_numpy(gamma))
    (mix(torch.from_numpy(h)) * torch.from_numpy(g)).sum().backward()
    return {"s": mix.s.grad.numpy(), "gamma": mix.gamma.grad.numpy()}


def test_scalar_mix_gradients():
    h, g, s, gamma = mix_inputs(np.float64)
    assert_tree_close(
        "scalar mix: torch vs written out",
        torch_mix_grads(h, g, s, gamma, torch.float64),
        written_out_mix_grads(h, g, s, gamma),
        F64,
    )
    h, g, s, gamma = mix_inputs(np.float32)
    mix = jax_lab.ScalarMix(3)
    mix.s[...] = jnp.asarray(s)
    mix.gamma[...] = jnp.asarray(gamma)
    graphdef, params = nnx.split(mix)
    mixed = lambda p: (nnx.merge(graphdef, p)(jnp.asarray(h)) * jnp.asarray(g)).sum()
    jgrads = named_arrays(jax.jit(jax.grad(mixed), compiler_options=FAST_COMPILE)(params))
    assert_tree_close(
        "scalar mix: jax vs torch", jgrads, torch_mix_grads(h, g, s, gamma, torch.float32), F32
    )


def test_probe_loss_and_grads_jax_equals_torch():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(16, 3, 10)).astype(np.float32)
    labels = rng.integers(0, 2, size=16).astype(np.int32)
    torch.manual_seed(0)
    probe = torch_lab.Probe(3, 10, 2)
    with torch.no_grad():
        probe.mix.s.copy_(torch.tensor([0.3, -0.2, 0.5]))
    loss = torch_lab.probe_loss(probe, torch.from_numpy(features), torch.from_numpy(labels).long())
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in probe.named_parameters()}
    jprobe = jax_lab.Probe(3, 10, 2, rngs=nnx.Rngs(0))
    weights = {n: p.detach().numpy() for n, p in probe.named_parameters()}
    jax_lab.load_torch_weights(jprobe, weights)
    jloss, named = jax_loss_and_grads(
        jprobe, jax_lab.probe_loss, jnp.asarray(features), jnp.asarray(labels)
    )
    assert_close("probe jax vs torch", "loss", jloss, loss.item(), F32)
    assert_tree_close("probe jax vs torch grads", named, grads, F32)
