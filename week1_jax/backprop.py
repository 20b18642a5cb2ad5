"""Backprop lab, JAX side: the char-MLP's forward and backward written by hand, against
jax.grad of week1_jax.lib.models.CharMLP. Read beside week1_torch/backprop.py; the derivation of
every line is in labs/backprop.py. Flax keeps Linear kernels as (in, out), so the transposes
sit on the other side: hpre = hcat @ W1, dW1 = hcat.T @ dhpre.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from flax import nnx

from labs import backprop as spec
from week1 import convert
from week1_jax.lib.models import CharMLP, named_arrays, set_weights

DTYPES = {"float64": jnp.float64, "float32": jnp.float32}


@jax.jit  # one compilation instead of one per operation (the F64 and F32 runs: one each)
def forward(w: dict, x, y):
    """Loss and the intermediates the backward pass needs. w: Flax-named arrays."""
    B, T = x.shape
    emb = w["wte.embedding"][x]  # (B, T, C) gather
    hcat = emb.reshape(B, -1)  # (B, T*C)
    hpre = hcat @ w["fc1.kernel"] + w["fc1.bias"]  # (B, H)
    mean = hpre.mean(1, keepdims=True)  # (B, 1)
    var = ((hpre - mean) ** 2).mean(1, keepdims=True)  # (B, 1) biased, as LayerNorm
    rstd = (var + spec.EPS) ** -0.5  # (B, 1)
    xhat = (hpre - mean) * rstd  # (B, H)
    hln = xhat * w["ln.scale"] + w["ln.bias"]  # (B, H)
    h = jnp.tanh(hln)  # (B, H)
    logits = h @ w["head.kernel"] + w["head.bias"]  # (B, V)
    logp = jax.nn.log_softmax(logits, axis=1)  # (B, V)
    loss = -logp[jnp.arange(B), y].mean()
    return loss, dict(x=x, hcat=hcat, xhat=xhat, rstd=rstd, h=h, probs=jnp.exp(logp))


@jax.jit
def backward(w: dict, cache: dict, y) -> dict:
    """dL/dw for every tensor, each line the chain rule applied to one forward line."""
    x, h, xhat = cache["x"], cache["h"], cache["xhat"]
    B, T = x.shape
    V, C = w["wte.embedding"].shape
    dlogits = cache["probs"].at[jnp.arange(B), y].add(-1)  # (B, V) p - onehot(y)
    dlogits = dlogits / B  # the mean over the batch
    g = {"head.kernel": h.T @ dlogits, "head.bias": dlogits.sum(0)}  # (H, V), (V,)
    dh = dlogits @ w["head.kernel"].T  # (B, H)
    dhln = dh * (1 - h**2)  # (B, H) tanh' = 1 - tanh^2
    g["ln.scale"], g["ln.bias"] = (dhln * xhat).sum(0), dhln.sum(0)  # (H,), (H,)
    dxhat = dhln * w["ln.scale"]  # (B, H)
    dhpre = cache["rstd"] * (
        dxhat - dxhat.mean(1, keepdims=True) - xhat * (dxhat * xhat).mean(1, keepdims=True)
    )  # (B, H)
    g["fc1.kernel"], g["fc1.bias"] = cache["hcat"].T @ dhpre, dhpre.sum(0)  # (T*C, H), (H,)
    demb = (dhpre @ w["fc1.kernel"].T).reshape(B, T, C)  # (B, T*C) -> (B, T, C)
    dwte = jnp.zeros_like(w["wte.embedding"])  # (V, C)
    g["wte.embedding"] = dwte.at[x.reshape(-1)].add(demb.reshape(-1, C))  # scatter-add
    return g


@nnx.jit
def module_loss_and_grads(model: CharMLP, x, y):
    """Mean cross-entropy of the library model and its jax.grad, compiled once per dtype."""

    def loss_fn(model):
        logp = jax.nn.log_softmax(model(x), axis=1)  # (B, V)
        return -logp[jnp.arange(len(y)), y].mean()

    return nnx.value_and_grad(loss_fn)(model)


def autograd_grads(weights: dict, x, y, dtype: str, cfg: spec.Config) -> tuple[float, dict]:
    """The reference: loss and jax.grad gradients of the Flax CharMLP at these (torch-named)
    weights, returned with torch names."""
    V = weights["wte.weight"].shape[0]
    with _precision(dtype):
        model = CharMLP(
            V, cfg.block_size, cfg.n_embd, cfg.n_hidden, param_dtype=DTYPES[dtype], rngs=nnx.Rngs(0)
        )
        set_weights(model, convert.torch_to_flax(weights, spec.WEIGHT_MAP))
        loss, grads = module_loss_and_grads(model, jnp.asarray(x), jnp.asarray(y))
        return float(loss), convert.flax_to_torch(named_arrays(grads), spec.WEIGHT_MAP)


def hand_grads(weights: dict, x, y, dtype: str) -> tuple[float, dict]:
    """Our forward and backward at these (numpy, torch-named) weights, as torch-named numpy."""
    with _precision(dtype):
        w = {
            n: jnp.asarray(a, DTYPES[dtype])
            for n, a in convert.torch_to_flax(weights, spec.WEIGHT_MAP).items()
        }
        loss, cache = forward(w, jnp.asarray(x), jnp.asarray(y))
        grads = {n: jax.device_get(g) for n, g in backward(w, cache, jnp.asarray(y)).items()}
        return float(loss), convert.flax_to_torch(grads, spec.WEIGHT_MAP)


def loss64(weights: dict, x, y) -> float:
    """The float64 loss of our forward: what the finite differences move."""
    with _precision("float64"):
        w = {n: jnp.asarray(a) for n, a in convert.torch_to_flax(weights, spec.WEIGHT_MAP).items()}
        return float(forward(w, jnp.asarray(x), jnp.asarray(y))[0])


def run(cfg: spec.Config, run) -> dict:
    """`week1 run backprop --framework jax`: the per-tensor table, float64 and float32."""
    x, y, vocab_size = spec.load_batch(cfg)  # (B, T), (B,)
    weights = spec.init_weights(cfg, vocab_size)
    rows, loss_rows, ours = [], [], {}
    for dtype in spec.TIERS:
        ours_loss, ours[dtype] = hand_grads(weights, x, y, dtype)
        ref_loss, ref = autograd_grads(weights, x, y, dtype, cfg)
        loss_rows.append((dtype, ours_loss, ref_loss, abs(ours_loss - ref_loss)))
        rows += spec.compare(dtype, ours[dtype], ref, "jax.grad")
    rows += spec.finite_differences(lambda w: loss64(w, x, y), weights, ours["float64"], cfg)
    return spec.report(rows, loss_rows)


def _precision(dtype: str):
    """float64 needs JAX's x64 mode, switched on only for the float64 work."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
