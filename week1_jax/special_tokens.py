"""Special tokens lab in JAX: the padded batch as arrays, and the masked next-token loss.

Read beside week1_torch/special_tokens.py; the batch itself is built framework-free
in labs/special_tokens.py (numpy), so both frameworks see the same ids.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labs import special_tokens as spec
from week1_jax.lib import devices
from week1_jax.lib.losses import masked_cross_entropy


def as_arrays(batch: dict) -> dict:
    """The numpy batch (ids, attention_mask, type_ids, labels) as int32 arrays on the default
    device."""
    return dict(zip(batch, devices.to_device(*batch.values(), dtype=jnp.int32), strict=True))


def logits_fn(params: dict, ids):
    """The toy model: embed each token, project to vocabulary logits. (B, T) -> (B, T, V)."""
    return params["embed"][ids] @ params["w"] + params["b"]


def loss_fn(params: dict, batch: dict):
    """Next-token cross-entropy over real tokens only, divided by their number."""
    logits = logits_fn(params, batch["ids"][:, :-1])  # predict token t+1 from t
    loss_sum, n_tokens = masked_cross_entropy(logits, batch["labels"][:, 1:], spec.IGNORE_INDEX)
    return loss_sum / n_tokens


def loss_counting_padding(params: dict, batch: dict):
    """The mistake the mask prevents: every position, padding included, counts as a target."""
    logits = logits_fn(params, batch["ids"][:, :-1])
    loss_sum, n_tokens = masked_cross_entropy(logits, batch["ids"][:, 1:], spec.IGNORE_INDEX)
    return loss_sum / n_tokens


loss_and_grads = jax.jit(jax.value_and_grad(loss_fn))


def run(cfg: spec.Config, run) -> dict:
    """`week1 run special_tokens --framework jax`: build the batch, report both losses."""
    tok = spec.tokenizer(cfg)
    batch = spec.lm_batch(tok, cfg)
    init = spec.init_params(cfg, len(tok.vocab))
    params = dict(zip(init, devices.to_device(*init.values()), strict=True))
    loss, _ = loss_and_grads(params, as_arrays(batch))
    return spec.summarize(
        float(loss), float(loss_counting_padding(params, as_arrays(batch))), batch, tok
    )
