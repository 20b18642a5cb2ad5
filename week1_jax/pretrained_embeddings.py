"""Pretrained embeddings lab, JAX side: all-MiniLM-L6-v2 in Flax nnx, loaded from the packaged
safetensors through the lab's WEIGHT_MAP, jitted as a pure function of its split state.

Read beside week1_torch/pretrained_embeddings.py; the encoder itself is
week1_jax/lib/bert.py.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx

from labs import pretrained_embeddings as spec
from week1 import convert
from week1.data import minilm
from week1_jax.lib import bert, devices


def build_model(config: minilm.BertConfig, weights: dict | None = None) -> bert.BertModel:
    """The encoder; `weights` (checkpoint names, numpy) mapped to Flax paths by WEIGHT_MAP, or
    Flax's random init (seed 0) when None."""
    if weights is None:
        return bert.BertModel(config, rngs=nnx.Rngs(0))
    return bert.from_weights(config, convert.torch_to_flax(weights, spec.WEIGHT_MAP))


def forward_fn(model: bert.BertModel):
    """A jitted `Batch -> (hidden states, pooled)`, numpy out: every layer, for demos and parity.

    nnx.split once, then jax.jit of a pure function of the state (nnx.jit would walk the
    object graph on every call).
    """
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, ids, type_ids, mask):
        return nnx.merge(graphdef, state)(ids, type_ids, mask)

    def call(batch: minilm.Batch):
        hidden, pooled = forward(state, *devices.to_device(batch.ids, batch.type_ids, batch.mask))
        return [np.asarray(h) for h in hidden], np.asarray(pooled)

    return call


def embed_fn(model: bert.BertModel):
    """A jitted `Batch -> (B, C)` sentence embeddings, on the device (sync before reading a
    clock)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def embed(state, ids, type_ids, mask):
        hidden, _ = nnx.merge(graphdef, state)(ids, type_ids, mask)  # the pooler is dropped by XLA
        return bert.sentence_embeddings(hidden[-1], mask)

    return lambda batch: embed(state, *devices.to_device(batch.ids, batch.type_ids, batch.mask))


def embed_texts(embed, tokenizer, texts: list[str], cfg: spec.Config) -> np.ndarray:
    """(len(texts), C) float32 numpy sentence embeddings (texts: at least one), batched with
    padding."""
    return spec.embed_in_batches(lambda b: np.asarray(embed(b)), tokenizer, texts, cfg)


@functools.cache
def _pretrained_encoder():
    cfg = spec.Config()
    config, weights, tokenizer = spec.pretrained(cfg)
    return embed_fn(build_model(config, weights)), tokenizer, cfg, config.hidden_size


def encode(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings of `texts`: (len(texts), 384) float32, unit rows."""
    embed, tokenizer, cfg, hidden = _pretrained_encoder()
    if not texts:
        return np.zeros((0, hidden), np.float32)
    return embed_texts(embed, tokenizer, list(texts), cfg)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run pretrained_embeddings --framework jax`: the demos, the static vectors, the
    throughput."""
    config, weights, tokenizer = spec.pretrained(cfg)
    model = build_model(config, weights)
    embed = embed_fn(model)
    return spec.run_demos(
        cfg,
        tokenizer,
        forward_fn(model),
        lambda texts: embed_texts(embed, tokenizer, texts, cfg),
        {"jax jit": embed},
        devices.sync,
    )


def bench(cfg: spec.Config) -> dict:
    """`week1 bench pretrained_embeddings` (JAX half): one pass over the bench batches."""
    config, weights, tokenizer = spec.pretrained(cfg)
    embed = embed_fn(build_model(config, weights))
    batches = spec.bench_batches(cfg, tokenizer)
    return spec.time_variants({"jax jit": embed}, batches, cfg, devices.sync, False)
