"""Vocabulary lab, torch side: grow a trained embedding for tokens added to the tokenizer, the
new rows initialised to the mean of the old ones. Read beside week1_jax/vocabulary.py; the
sweep and the word baseline are framework-free (labs/vocabulary.py).
"""

from __future__ import annotations

import torch
from torch import nn

from labs import vocabulary as spec
from week1_torch.lib import devices


def resize_embedding(emb: nn.Embedding, n_new: int) -> nn.Embedding:
    """A new nn.Embedding with n_new more rows: the old rows copied, the new ones their mean."""
    old = emb.weight.detach()  # (V, C)
    V, C = old.shape
    grown = nn.Embedding(V + n_new, C, device=old.device, dtype=old.dtype)
    with torch.no_grad():
        grown.weight[:V] = old
        grown.weight[V:] = old.mean(0)  # (C,) broadcast over the n_new rows
    return grown


def run(cfg: spec.Config, run) -> dict:
    """`week1 run vocabulary --framework torch`: the sweep, the word baseline, added tokens."""
    added = spec.added_tokens(cfg)
    _, n_old, _, n_new, _ = added
    start = spec.start_embedding(n_old, cfg.n_embd)
    emb = nn.Embedding.from_pretrained(torch.from_numpy(start).to(devices.default_device()))
    resized = resize_embedding(emb, n_new).weight.detach().cpu().numpy()
    return spec.report(cfg, added, resized, start, "torch")
