"""lr_schedules lab in JAX: the applied learning rate per update, and the LM trained with each.

The schedules themselves are in week1_jax/schedules.py.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax

from labs import lr_schedules as spec
from week1 import loop
from week1.charlm import SCHEDULES, load_data
from week1_jax.lib import charlm as lm
from week1_jax.lib import schedules


def applied_lrs(schedule, n: int) -> np.ndarray:
    """The lr optax applies at updates 0..n-1: SGD on one parameter with gradient 1 moves it by
    -lr."""
    tx = optax.sgd(schedule)
    param = jnp.zeros(())
    state = tx.init(param)
    lrs = []
    for _ in range(n):
        update, state = tx.update(jnp.ones(()), state, param)
        lrs.append(-float(update))
    return np.array(lrs)


def run(cfg: spec.Config, run) -> dict:
    data = load_data(cfg)
    shown = loop.Context(show_progress=True)
    lrs = {
        name: applied_lrs(
            schedules.by_name(name, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr),
            max(spec.key_steps(cfg)) + 1,
        )
        for name in SCHEDULES
    }
    histories = {
        name: lm.train(dataclasses.replace(cfg, schedule=name), data, ctx=shown)[1]
        for name in SCHEDULES
    }
    return spec.report(lrs, histories, cfg, run, "JAX")
