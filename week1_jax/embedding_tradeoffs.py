"""Embedding trade-offs lab in JAX: the word2vec dimension sweep (lib/embeddings.fit), a
Matryoshka projection head on frozen MiniLM, int8 and binary quantisation, the char LM untied and
tied (lib/charlm.py).

Read beside week1_torch/embedding_tradeoffs.py: the same functions in the same order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import embedding_tradeoffs as spec
from week1 import convert, loop
from week1_jax.lib import bert, charlm, devices, embeddings, optim, schedules
from week1_jax.lib import train as trainer
from week1_jax.lib.models import set_weights

# torch name -> Flax path (the head's one linear layer)
WEIGHT_MAP = (
    ("proj.weight", "proj.kernel", convert.TRANSPOSE),
    ("proj.bias", "proj.bias", convert.SAME),
)


def shrink(z, m: int):
    """sentence-transformers' Matryoshka shrink: the first m dimensions, L2-normalised
    (F.normalize's eps: the norm is clamped at 1e-12)."""
    z = z[..., :m]
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def matryoshka_loss(a, b, prefixes, scale: float):
    r"""MatryoshkaLoss(MultipleNegativesRankingLoss), weights 1::

        L = sum_m CE(scale * cos(a_i[:m], b_j[:m]) over j, target j = i)

    a, b (B, C): two views of the same B texts; in-batch negatives."""
    target = jnp.arange(a.shape[0])
    total = 0.0
    for m in prefixes:
        logits = scale * shrink(a, m) @ shrink(b, m).T  # (B, B)
        total = total + optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
    return total


class Head(nnx.Module):
    """z = W e + b on a frozen 384-d sentence vector, W = I and b = 0 at the start (so that the
    untrained head is naive truncation)."""

    def __init__(self, dim: int = 384):
        self.proj = nnx.Linear(
            dim,
            dim,
            kernel_init=lambda key, shape, dtype: jnp.eye(shape[0], dtype=dtype),
            rngs=nnx.Rngs(0),
        )

    def __call__(self, e):
        return self.proj(e)


def build_model(cfg: spec.Config, weights=None) -> Head:
    model = Head()
    if weights is not None:
        set_weights(model, convert.torch_to_flax(weights, WEIGHT_MAP))
    return model


def make_optimizer(model, cfg: spec.Config) -> nnx.Optimizer:
    tx = optim.adamw(
        schedules.from_config(cfg), weight_decay=cfg.weight_decay, mask=optim.decay_mask
    )
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def as_arrays(*arrays: np.ndarray):
    """float32 numpy arrays as jax arrays on the default device."""
    return devices.to_device(*arrays, dtype=jnp.float32)


def head_loss(model: Head, e, mask_a, mask_b, cfg: spec.Config):
    """The Matryoshka loss of two dropout views of the same frozen vectors e (B, 384)."""
    return matryoshka_loss(model(e * mask_a), model(e * mask_b), cfg.prefix_list, cfg.scale)


def evaluate(model: Head, queries, documents, cfg: spec.Config) -> dict:
    """{"val_loss": the Matryoshka loss of held-out (query, document) pairs, no dropout}."""
    loss = matryoshka_loss(model(queries), model(documents), cfg.prefix_list, cfg.scale)
    return {"val_loss": float(loss)}


def train(cfg: spec.Config, data: dict, *, weights: dict | None = None, ctx=loop.BARE):
    """Train the head on data["train"] (N, 384) MiniLM vectors; held-out loss on
    data["queries"] / data["documents"]. Returns (model, History)."""
    model = build_model(cfg, weights)
    optimizer = make_optimizer(model, cfg)
    queries, documents = as_arrays(data["queries"], data["documents"])

    def step(model, optimizer, key, *batch):
        value, grads = nnx.value_and_grad(lambda m, *b: head_loss(m, *b, cfg))(model, *batch)
        optimizer.update(model, grads)
        return value

    history = trainer.train(
        model,
        optimizer,
        step,
        lambda i: as_arrays(*spec.head_batch(data["train"], cfg, i)),
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: evaluate(model, queries, documents, cfg),
        label="jax matryoshka",
    )
    return model, history


def int8_scales(documents):
    """Per-dimension scales s_d = max_i |x_id| / 127 (C,)."""
    return jnp.maximum(jnp.abs(documents).max(axis=0), 1e-12) / 127.0


def quantise_int8(x, scales):
    """round(x / s) clipped to [-127, 127], int8 (round half to even, as torch.round)."""
    return jnp.clip(jnp.round(x / scales), -127, 127).astype(jnp.int8)


def binarise(x):
    """The sign bits of x (N, C), packed 8 to a byte, most significant first: (N, C / 8) uint8."""
    bits = (x > 0).astype(jnp.uint8).reshape(x.shape[0], -1, 8)  # (N, C/8, 8)
    weights = jnp.array([128, 64, 32, 16, 8, 4, 2, 1], dtype=jnp.uint8)
    return (bits * weights).sum(axis=-1, dtype=jnp.uint8)


def hamming(a, b):
    """Hamming distances between packed bit rows: a (Q, B), b (N, B) uint8 -> (Q, N) int32."""
    xor = jnp.bitwise_xor(a[:, None, :], b[None, :, :])  # (Q, N, B)
    return jax.lax.population_count(xor).astype(jnp.int32).sum(axis=-1)


def search(queries: np.ndarray, documents: np.ndarray, cfg: spec.Config) -> dict:
    """The quantised searches' top 10 per query: {"int8", "binary", "binary + rescore"}."""
    q, d = as_arrays(spec.unit(queries), spec.unit(documents))
    scales = int8_scales(d)
    d8 = quantise_int8(d, scales).astype(jnp.float32) * scales  # what the int8 index scores
    int8 = jax.lax.top_k(q @ d8.T, 10)[1]
    distance = hamming(binarise(q), binarise(d))  # (Q, N)
    # the stable order of (distance, index): ties go to the lower document index
    order = jnp.argsort(distance, axis=1, stable=True)
    binary = order[:, :10]
    candidates = order[:, : 10 * cfg.rescore]  # (Q, R)
    rescored = jnp.einsum("qc,qrc->qr", q, d[candidates])  # float query . float documents
    best = jnp.argsort(-rescored, axis=1, stable=True)[:, :10]
    rescore = jnp.take_along_axis(candidates, best, axis=1)
    return {
        name: np.asarray(t)
        for name, t in (("int8", int8), ("binary", binary), ("binary + rescore", rescore))
    }


def project(model: Head, x: np.ndarray) -> np.ndarray:
    """The trained head on numpy vectors: x (N, 384) -> z (N, 384)."""
    return np.asarray(model(as_arrays(x)[0]))


def run(cfg: spec.Config, run) -> dict:
    """`week1 run embedding_tradeoffs --framework jax`: the parts cfg.parts names
    (labs/embedding_tradeoffs.py)."""
    parts = spec.Parts(
        fit=embeddings.fit,
        encode=bert.encode,
        train=train,
        project=project,
        search=search,
        train_lm=charlm.train,
    )
    return spec.run_parts(cfg, run, parts)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare embedding_tradeoffs`: the Matryoshka head from `weights` (torch names) on the
    same batches and masks; returns its Curves."""
    data = spec.minilm_vectors(cfg, bert.encode)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return spec.compare_curves(history)
