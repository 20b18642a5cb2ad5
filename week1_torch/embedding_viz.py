"""embedding_viz lab in PyTorch: the linear algebra of the maps (normalisation, PCA by SVD,
cosine neighbours) in torch; t-SNE and trustworthiness are scikit-learn's (labs/embedding_viz.py).

Read beside week1_jax/embedding_viz.py: the same functions in the same order.
"""

from __future__ import annotations

import numpy as np
import torch

from labs import embedding_viz as spec
from week1 import loop
from week1.data import vectors
from week1_torch.lib import devices, embeddings


def normalise(rows: np.ndarray) -> torch.Tensor:
    """(N, C) rows scaled to unit length, on the default device."""
    (x,) = devices.to_device(rows, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def pca(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) coordinates of the rows on their first k principal axes: the top right singular
    vectors of the centred rows, each signed so that its largest-|value| entry is positive
    (scikit-learn's svd_flip, so the maps match its PCA's)."""
    centred = x - x.mean(dim=0, keepdim=True)  # (N, C)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)  # (min(N, C), C)
    axes = vt[:k]  # (k, C)
    biggest = axes.abs().argmax(dim=1)  # (k,)
    signs = torch.sign(axes[torch.arange(len(axes), device=axes.device), biggest])
    return centred @ (axes * signs[:, None]).T  # (N, k)


def nearest(wv: vectors.WordVectors, words: list[str], k: int) -> dict:
    """The k cosine neighbours of each word (as the vocabulary spells it): {word: [(w, s)]}."""
    unit = normalise(wv.vectors)  # (V, C)
    rows = [wv.key_to_index[w] for w in words]
    (index,) = devices.to_device(np.array(rows), dtype=torch.long)
    sims = unit[index] @ unit.T  # (Q, V)
    sims[torch.arange(len(rows), device=sims.device), index] = -torch.inf  # not the word itself
    top = torch.topk(sims, k, dim=1)
    values, found = top.values.cpu().numpy(), top.indices.cpu().numpy()
    return {
        w: [(wv.words[j], float(s)) for j, s in zip(found[q], values[q], strict=True)]
        for q, w in enumerate(words)
    }


def trained_vectors(cfg: spec.Config, compile: bool = False) -> vectors.WordVectors:
    """The --vectors file, else a small skip-gram model trained with the library loop (its
    update through torch.compile with `compile`)."""
    loaded = spec.load_trained(cfg)
    if loaded is not None:
        return loaded
    settings = spec.small_model_settings(cfg)
    sentences = spec.load_sentences(cfg)
    shown = loop.Context(show_progress=True, compile=compile)
    trained = embeddings.fit(sentences, settings, ctx=shown)
    return vectors.WordVectors(trained.words, trained.vectors)


def project(name: str, wv: vectors.WordVectors, points: spec.Points, cfg: spec.Config):
    """The points' unit vectors, PCA to 2 and to pca_dims, then t-SNE and trustworthiness."""
    with embeddings.cpu_threads(cfg.threads):
        unit = normalise(wv.vectors[points.rows])  # (N, C)
        k = min(cfg.pca_dims, *unit.shape)
        two, many = pca(unit, 2).cpu().numpy(), pca(unit, k).cpu().numpy()
    return spec.project(name, points, unit.cpu().numpy(), two, many, cfg)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run embedding_viz --framework torch [--compile]`: maps of the trained (and
    pretrained) vectors, trustworthiness, neighbours, the PNG and the projector files."""
    return spec.run_maps(run, cfg, lambda: trained_vectors(cfg, compile), project, nearest)
