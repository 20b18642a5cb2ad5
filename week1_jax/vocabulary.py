"""Vocabulary lab, JAX side: grow a trained embedding for tokens added to the tokenizer, the
new rows initialised to the mean of the old ones. Read beside week1_torch/vocabulary.py; the
sweep and the word baseline are framework-free (labs/vocabulary.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from labs import vocabulary as spec


def resize_embedding(emb: nnx.Embed, n_new: int) -> nnx.Embed:
    """A new nnx.Embed with n_new more rows: the old rows copied, the new ones their mean."""
    old = emb.embedding[...]  # (V, C)
    V, C = old.shape
    grown = nnx.Embed(V + n_new, C, param_dtype=old.dtype, rngs=nnx.Rngs(0))
    mean = jnp.broadcast_to(old.mean(0), (n_new, C))  # (n_new, C)
    grown.embedding[...] = jnp.concatenate([old, mean])  # (V + n_new, C)
    return grown


def run(cfg: spec.Config, run) -> dict:
    """`week1 run vocabulary --framework jax`: the sweep, the word baseline, added tokens."""
    added = spec.added_tokens(cfg)
    _, n_old, _, n_new, _ = added
    start = spec.start_embedding(n_old, cfg.n_embd)
    emb = nnx.Embed(n_old, cfg.n_embd, rngs=nnx.Rngs(0))
    emb.embedding[...] = jnp.asarray(start)
    resized = jax.device_get(resize_embedding(emb, n_new).embedding[...])
    return spec.report(cfg, added, resized, start, "jax")
