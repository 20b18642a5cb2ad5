"""Pretrained embeddings lab, torch side: all-MiniLM-L6-v2 in torch, loaded from the packaged
safetensors by the checkpoint's own names (WEIGHT_MAP's first column), run eager or compiled,
and timed against transformers' BertModel on the same batches.

Read beside week1_jax/pretrained_embeddings.py; the encoder itself is
week1_torch/lib/bert.py.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from labs import pretrained_embeddings as spec
from week1.data import minilm
from week1_torch.lib import bert, devices
from week1_torch.lib.models import set_weights


def build_model(config: minilm.BertConfig, weights: dict | None = None) -> bert.BertModel:
    """The encoder in eval mode on the default device; `weights` (checkpoint names, numpy), or
    torch's random init (seed 0) when None."""
    torch.manual_seed(0)
    model = bert.BertModel(config)
    if weights is not None:
        set_weights(model, {name: weights[name] for name, _, _ in spec.WEIGHT_MAP})
    return devices.place(model).eval()


def forward_fn(model: bert.BertModel):
    """`Batch -> (hidden states, pooled)`, numpy out: every layer, for demos and parity."""

    def call(batch: minilm.Batch):
        tensors = devices.to_device(batch.ids, batch.type_ids, batch.mask, dtype=torch.long)
        with torch.inference_mode():
            hidden, pooled = model(*tensors)
        return [h.cpu().numpy() for h in hidden], pooled.cpu().numpy()

    return call


def embed_fn(model: bert.BertModel, compile: bool = False):
    """`Batch -> (B, C)` sentence embeddings, on the device; torch.compile'd if asked."""

    def embed(ids, type_ids, mask):
        hidden, _ = model(ids, type_ids, mask)
        return bert.sentence_embeddings(hidden[-1], mask)

    embed = torch.compile(embed) if compile else embed

    def call(batch: minilm.Batch):
        tensors = devices.to_device(batch.ids, batch.type_ids, batch.mask, dtype=torch.long)
        with torch.inference_mode():
            return embed(*tensors)

    return call


def embed_texts(embed, tokenizer, texts: list[str], cfg: spec.Config) -> np.ndarray:
    """(len(texts), C) float32 numpy sentence embeddings (texts: at least one), batched with
    padding."""
    return spec.embed_in_batches(lambda b: embed(b).float().cpu().numpy(), tokenizer, texts, cfg)


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


def _transformers_embed_fn():
    """The reference: transformers' BertModel from the same folder (its default attention
    kernel), with the same pooling."""
    from transformers import BertModel
    from transformers.utils import logging

    logging.disable_progress_bar()  # its weight-loading bar would cut through our tables
    model = devices.place(BertModel.from_pretrained(str(minilm.model_dir()))).eval()

    def call(batch: minilm.Batch):
        ids, type_ids, mask = devices.to_device(
            batch.ids, batch.type_ids, batch.mask, dtype=torch.long
        )
        with torch.inference_mode():
            out = model(input_ids=ids, token_type_ids=type_ids, attention_mask=mask)
            return bert.sentence_embeddings(out.last_hidden_state, mask)

    return call


def _variants(model: bert.BertModel) -> dict:
    return {
        "torch eager": embed_fn(model),
        "torch.compile": embed_fn(model, compile=True),
        "transformers": _transformers_embed_fn(),
    }


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run pretrained_embeddings --framework torch [--compile]`: the demos (through
    torch.compile with --compile), the static vectors, the throughput of every variant."""
    config, weights, tokenizer = spec.pretrained(cfg)
    model = build_model(config, weights)
    embed = embed_fn(model, compile=compile)
    return spec.run_demos(
        cfg,
        tokenizer,
        forward_fn(model),
        lambda texts: embed_texts(embed, tokenizer, texts, cfg),
        _variants(model),
        devices.sync,
    )


def bench(cfg: spec.Config) -> dict:
    """`week1 bench pretrained_embeddings` (torch half): eager, compiled, transformers."""
    config, weights, tokenizer = spec.pretrained(cfg)
    model = build_model(config, weights)
    batches = spec.bench_batches(cfg, tokenizer)
    return spec.time_variants(_variants(model), batches, cfg, devices.sync, False)
