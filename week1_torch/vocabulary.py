"""Vocabulary lab, torch side: grow a trained embedding for tokens added to the tokenizer, the
new rows initialised to the mean of the old ones; train the char LM on each unit (bytes, BPE
sizes, words). Read beside week1_jax/vocabulary.py; the sweep, the word baseline and the
units' token ids are framework-free (labs/vocabulary.py).
"""

from __future__ import annotations

import torch
from torch import nn

from labs import vocabulary as spec
from week1 import loop
from week1.comparison import Curves
from week1_torch.lib import devices
from week1_torch.lib.charlm import build_model, train
from week1_torch.lib.models import get_weights


def resize_embedding(emb: nn.Embedding, n_new: int) -> nn.Embedding:
    """A new nn.Embedding with n_new more rows: the old rows copied, the new ones their mean."""
    old = emb.weight.detach()  # (V, C)
    V, C = old.shape
    grown = nn.Embedding(V + n_new, C, device=old.device, dtype=old.dtype)
    with torch.no_grad():
        grown.weight[:V] = old
        grown.weight[V:] = old.mean(0)  # (C,) broadcast over the n_new rows
    return grown


def lm_sweep(cfg: spec.Config, ctx: loop.Context) -> tuple[dict, dict]:
    """The char LM trained on each unit in turn, from the same seed: (unit -> Tokens, unit ->
    (History, parameters)) for the units that finished before a stop request."""
    tokens, trained = spec.units(cfg), {}
    for unit, unit_ids in tokens.items():
        model, history = train(spec.lm_config(cfg), unit_ids, ctx=ctx.part(unit))
        if ctx.stop_requested():
            break
        trained[unit] = (history, sum(p.numel() for p in model.parameters()))
    return tokens, trained


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run vocabulary --framework torch`: the sweep, the word baseline, added tokens,
    the char LM per unit."""
    added = spec.added_tokens(cfg)
    _, n_old, _, n_new, _ = added
    start = spec.start_embedding(n_old, cfg.n_embd)
    emb = nn.Embedding.from_pretrained(torch.from_numpy(start).to(devices.default_device()))
    resized = resize_embedding(emb, n_new).weight.detach().cpu().numpy()
    summary = spec.report(cfg, added, resized, start, "torch")
    tokens, trained = lm_sweep(cfg, loop.Context.of_run(run, compile))
    return summary | spec.report_lm(cfg, run, tokens, trained, "torch")


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    unit_ids, lm = spec.units(cfg)[case], spec.lm_config(cfg)
    return get_weights(build_model(lm, unit_ids.vocab_size))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare vocabulary`: the LM on unit `case` from `weights` (torch's names, numpy);
    returns its Curves."""
    unit_ids, lm = spec.units(cfg)[case], spec.lm_config(cfg)
    _, history = train(lm, unit_ids, weights=weights, ctx=ctx)
    return Curves.of(history)
