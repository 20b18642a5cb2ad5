"""Tokenizer comparison lab, JAX side: tokenize, pad and batch held-out text into arrays.

The tokenizers themselves are framework-free (labs/tokenizers_compare.py); this is the
step a JAX training job adds: ragged id lists -> padded (B, T) arrays per batch, as one
gather from the concatenated ids. Read beside week1_torch/tokenizers_compare.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from labs import tokenizers_compare as spec
from labs.bench import time_calls


def pipeline(tok: spec.Trained, texts: list[str], batch_size: int, max_length: int) -> list[jax.Array]:
    """Encode `texts`, truncate to max_length, right-pad each batch to its longest row (int32)."""
    ids = tok.encode_batch(texts)
    out = []
    for i in range(0, len(ids), batch_size):
        rows = [row[:max_length] for row in ids[i:i + batch_size]]
        flat = jnp.asarray(np.concatenate([np.asarray(r, np.int32) for r in rows] + [np.zeros(1, np.int32)]))
        lengths = jnp.asarray([len(r) for r in rows])
        starts = jnp.cumsum(lengths) - lengths                               # (B,)
        col = jnp.arange(int(lengths.max()))                                 # (T,)
        out.append(jnp.where(col < lengths[:, None], flat[starts[:, None] + col], tok.pad_id).astype(jnp.int32))
    return out


def run(cfg: spec.Config, run) -> dict:
    """`week1 run tokenizers_compare --framework jax`: train, evaluate, plot, batch."""
    corpus, toks = spec.trained(cfg)
    texts = [t for kind in spec.KINDS for t in corpus.held_out[kind]]
    batches = {name: pipeline(tok, texts, cfg.batch_size, cfg.max_length) for name, tok in toks.items()}
    padding = {f"{name} padding share": float(sum((b == tok.pad_id).sum() for b in batches[name]) /
                                              sum(b.size for b in batches[name])) for name, tok in toks.items()}
    return spec.report(toks, corpus, cfg, run.path("fertility.png")) | padding


def bench(cfg: spec.Config) -> dict:
    """`week1 bench tokenizers_compare` (JAX half): held-out text -> padded arrays, per tokenizer."""
    corpus, toks = spec.trained(cfg)
    texts = [t for kind in spec.KINDS for t in corpus.held_out[kind]]
    return {f"jax {name}": time_calls(lambda tok=tok: pipeline(tok, texts, cfg.batch_size, cfg.max_length),
                                      jax.block_until_ready, warmup=1, iters=5) for name, tok in toks.items()}
