"""embedding_viz lab in JAX: the linear algebra of the maps (normalisation, PCA by SVD, cosine
neighbours) in jax.numpy; t-SNE and trustworthiness are scikit-learn's (labs/embedding_viz.py).

Read beside week1_torch/embedding_viz.py: the same functions in the same order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from labs import embedding_viz as spec
from week1 import loop
from week1.data import vectors
from week1_jax.lib import devices, embeddings


def normalise(rows: np.ndarray) -> jax.Array:
    """(N, C) rows scaled to unit length, on the default device."""
    (x,) = devices.to_device(rows, dtype=jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnums=1)
def pca(x: jax.Array, k: int) -> jax.Array:
    """(N, k) coordinates of the rows on their first k principal axes: the top right singular
    vectors of the centred rows, each signed so that its largest-|value| entry is positive
    (scikit-learn's svd_flip, so the maps match its PCA's)."""
    centred = x - x.mean(axis=0, keepdims=True)  # (N, C)
    _, _, vt = jnp.linalg.svd(centred, full_matrices=False)  # (min(N, C), C)
    axes = vt[:k]  # (k, C)
    biggest = jnp.abs(axes).argmax(axis=1)  # (k,)
    signs = jnp.sign(axes[jnp.arange(len(axes)), biggest])
    return centred @ (axes * signs[:, None]).T  # (N, k)


def nearest(wv: vectors.WordVectors, words: list[str], k: int) -> dict:
    """The k cosine neighbours of each word (as the vocabulary spells it): {word: [(w, s)]}."""
    unit = normalise(wv.vectors)  # (V, C)
    rows = [wv.key_to_index[w] for w in words]
    (index,) = devices.to_device(np.array(rows), dtype=jnp.int32)
    sims = unit[index] @ unit.T  # (Q, V)
    sims = sims.at[jnp.arange(len(rows)), index].set(-jnp.inf)  # not the word itself
    top_values, top_index = jax.lax.top_k(sims, k)
    values, found = np.asarray(top_values), np.asarray(top_index)
    return {
        w: [(wv.words[j], float(s)) for j, s in zip(found[q], values[q], strict=True)]
        for q, w in enumerate(words)
    }


def trained_vectors(cfg: spec.Config) -> vectors.WordVectors:
    """The --vectors file, else a small skip-gram model trained with the library loop."""
    loaded = spec.load_trained(cfg)
    if loaded is not None:
        return loaded
    settings = spec.small_model_settings(cfg)
    shown = loop.Context(show_progress=True)
    trained = embeddings.fit(spec.load_sentences(cfg), settings, ctx=shown)
    return vectors.WordVectors(trained.words, trained.vectors)


def project(name: str, wv: vectors.WordVectors, points: spec.Points, cfg: spec.Config):
    """The points' unit vectors, PCA to 2 and to pca_dims, then t-SNE and trustworthiness."""
    unit = normalise(wv.vectors[points.rows])  # (N, C)
    k = min(cfg.pca_dims, *unit.shape)
    two, many = np.asarray(pca(unit, 2)), np.asarray(pca(unit, k))
    return spec.project(name, points, np.asarray(unit), two, many, cfg)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run embedding_viz --framework jax`: maps of the trained (and pretrained) vectors,
    trustworthiness, neighbours, the PNG and the projector files."""
    return spec.run_maps(run, cfg, lambda: trained_vectors(cfg), project, nearest)
