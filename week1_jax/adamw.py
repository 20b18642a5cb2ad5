"""AdamW lab in JAX: our from-scratch adamw against optax.adamw on the char-MLP LM.

The optimizer itself is week1_jax.lib.optim.adamw; this module trains with it.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx

from labs import adamw as spec
from week1 import loop
from week1.charlm import load_data
from week1.timing import time_calls
from week1_jax.lib import charlm as lm
from week1_jax.lib import devices, optim, schedules
from week1_jax.lib.models import get_weights


def library_optimizer(model, cfg: spec.Config) -> nnx.Optimizer:
    """optax.adamw with our schedule, mask and weight decay (optax's default decay is 1e-4: pass
    it)."""
    tx = optax.adamw(
        schedules.from_config(cfg),
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=cfg.weight_decay,
        mask=optim.decay_mask,
    )
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def run(cfg: spec.Config, run) -> dict:
    """Train the LM with ours and with optax.adamw from the same weights; compare the curves."""
    data = load_data(cfg)
    shown = loop.Context(show_progress=True)
    weights = get_weights(lm.build_model(cfg, data.vocab_size))
    histories = {
        "ours": lm.train(cfg, data, weights=weights, ctx=shown)[1],
        "optax.adamw": lm.train(
            cfg,
            data,
            weights=weights,
            optimizer_fn=library_optimizer,
            ctx=shown,
        )[1],
    }
    return spec.report_curves(histories, run, "JAX")


def bench(cfg: spec.Config) -> dict:
    """`week1 bench adamw`: one jitted optimizer update on the LM's parameters, ours vs optax."""
    params = nnx.to_pure_dict(nnx.state(lm.build_model(cfg, load_data(cfg).vocab_size), nnx.Param))
    grads = jax.tree.map(lambda p: 1e-3 * np.ones_like(p), params)
    timings = {}
    for name, tx in (
        ("jax ours", optim.adamw(cfg.lr, weight_decay=cfg.weight_decay, mask=optim.decay_mask)),
        (
            "jax optax.adamw",
            optax.adamw(cfg.lr, weight_decay=cfg.weight_decay, mask=optim.decay_mask),
        ),
    ):

        @jax.jit
        def update(params, opt_state, tx=tx):
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        state = [params, tx.init(params)]

        def step(update=update, state=state):
            state[:] = update(*state)  # thread the new params and state into the next call
            return state[0]

        timings[name] = time_calls(step, devices.sync)
    return timings
