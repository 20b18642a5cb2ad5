"""Vocabulary lab, JAX side: grow a trained embedding for tokens added to the tokenizer, the
new rows initialised to the mean of the old ones; train the char LM on each unit (bytes, BPE
sizes, words). Read beside week1_torch/vocabulary.py; the sweep, the word baseline and the
units' token ids are framework-free (labs/vocabulary.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from labs import vocabulary as spec
from week1 import charlm, convert, loop
from week1.comparison import Curves
from week1_jax.lib.charlm import train


def resize_embedding(emb: nnx.Embed, n_new: int) -> nnx.Embed:
    """A new nnx.Embed with n_new more rows: the old rows copied, the new ones their mean."""
    old = emb.embedding[...]  # (V, C)
    V, C = old.shape
    grown = nnx.Embed(V + n_new, C, param_dtype=old.dtype, rngs=nnx.Rngs(0))
    mean = jnp.broadcast_to(old.mean(0), (n_new, C))  # (n_new, C)
    grown.embedding[...] = jnp.concatenate([old, mean])  # (V + n_new, C)
    return grown


def lm_sweep(cfg: spec.Config, ctx: loop.Context) -> tuple[dict, dict]:
    """The char LM trained on each unit in turn, from the same seed: (unit -> Tokens, unit ->
    (History, parameters)) for the units that finished before a stop request."""
    tokens, trained = spec.units(cfg), {}
    for unit, unit_ids in tokens.items():
        model, history = train(spec.lm_config(cfg), unit_ids, ctx=ctx.part(unit))
        if ctx.stop_requested():
            break
        trained[unit] = (history, sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
    return tokens, trained


def run(cfg: spec.Config, run) -> dict:
    """`week1 run vocabulary --framework jax`: the sweep, the word baseline, added tokens, the
    char LM per unit."""
    added = spec.added_tokens(cfg)
    _, n_old, _, n_new, _ = added
    start = spec.start_embedding(n_old, cfg.n_embd)
    emb = nnx.Embed(n_old, cfg.n_embd, rngs=nnx.Rngs(0))
    emb.embedding[...] = jnp.asarray(start)
    resized = jax.device_get(resize_embedding(emb, n_new).embedding[...])
    summary = spec.report(cfg, added, resized, start, "jax")
    tokens, trained = lm_sweep(cfg, loop.Context.of_run(run))
    return summary | spec.report_lm(cfg, run, tokens, trained, "jax")


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare vocabulary`: the LM on unit `case` from `weights` (torch's names, numpy,
    converted through charlm.WEIGHT_MAP); returns its Curves."""
    unit_ids, lm = spec.units(cfg)[case], spec.lm_config(cfg)
    _, history = train(lm, unit_ids, weights=convert.torch_to_flax(weights, charlm.WEIGHT_MAP),
                       ctx=ctx)  # fmt: skip
    return Curves.of(history)
