"""Tokenizer comparison lab, JAX side: tokenize, pad and batch held-out text into arrays.

The tokenizers themselves are framework-free (labs/tokenizers_compare.py); this is the
step a JAX training job adds: ragged id lists -> padded (B, T) arrays per batch, as one
jitted gather from the concatenated ids, then a slice per batch. Read beside
week1_torch/tokenizers_compare.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from labs import tokenizers_compare as spec
from week1_jax.lib import devices


@functools.partial(jax.jit, static_argnames="width")
def _pad_rows(flat, starts, lengths, pad_id, width: int):
    """Row r = flat[starts[r] : starts[r] + lengths[r]], right-padded to `width`: one gather."""
    col = jnp.arange(width)  # (T,)
    return jnp.where(col < lengths[:, None], flat[starts[:, None] + col], pad_id).astype(jnp.int32)


def pipeline(
    tok: spec.Trained, texts: list[str], batch_size: int, max_length: int
) -> list[jax.Array]:
    """Encode `texts`, truncate to max_length, right-pad each batch to its longest row (int32)."""
    rows = [row[:max_length] for row in tok.encode_batch(texts)]
    lengths = np.array([len(r) for r in rows])
    # Pad the ragged ids to a power-of-two length, so few shapes reach the compiler.
    flat = np.zeros(1 << int(lengths.sum()).bit_length(), np.int32)
    flat[: lengths.sum()] = np.concatenate(
        [np.asarray(r, np.int32) for r in rows] + [np.zeros(0, np.int32)]
    )
    starts = np.cumsum(lengths) - lengths
    padded = _pad_rows(
        jnp.asarray(flat), jnp.asarray(starts), jnp.asarray(lengths), tok.pad_id, max_length
    )
    return [
        padded[i : i + batch_size, : int(lengths[i : i + batch_size].max())]
        for i in range(0, len(rows), batch_size)
    ]


def run(cfg: spec.Config, run) -> dict:
    """`week1 run tokenizers_compare --framework jax`: train, evaluate, plot, batch
    (labs/tokenizers_compare.py)."""
    return spec.run_pipelines(cfg, run, pipeline)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench tokenizers_compare` (JAX half): held-out text -> padded arrays, per
    tokenizer."""
    return spec.bench(cfg, "jax", pipeline, devices.sync)
