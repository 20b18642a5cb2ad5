"""Tokenizer comparison lab, torch side: tokenize, pad and batch held-out text into tensors.

The tokenizers themselves are framework-free (labs/tokenizers_compare.py); this is the
step a torch training job adds: ragged id lists -> padded (B, T) tensors per batch.
Read beside week1_jax/tokenizers_compare.py.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from labs import tokenizers_compare as spec
from week1_torch.lib import devices


def pipeline(
    tok: spec.Trained, texts: list[str], batch_size: int, max_length: int
) -> list[torch.Tensor]:
    """Encode `texts`, truncate to max_length, right-pad each batch to its longest row (int32),
    on the default device."""
    ids = tok.encode_batch(texts)
    device = devices.default_device()
    return [
        pad_sequence(
            [torch.tensor(row[:max_length], dtype=torch.int32) for row in ids[i : i + batch_size]],
            batch_first=True,
            padding_value=tok.pad_id,
        ).to(device)
        for i in range(0, len(ids), batch_size)
    ]


def run(cfg: spec.Config, run) -> dict:
    """`week1 run tokenizers_compare --framework torch`: train, evaluate, plot, batch
    (labs/tokenizers_compare.py)."""
    return spec.run_pipelines(cfg, run, pipeline)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench tokenizers_compare` (torch half): held-out text -> padded tensors, per
    tokenizer."""
    return spec.bench(cfg, "torch", pipeline, devices.sync)
