"""Training loop lab in JAX/Flax: the char-MLP LM, trained by the one loop written out in
week1/loop.py (the cadence) and week1_jax/lib/train.py (the jitted step and checkpoints).

Read beside week1_torch/training_loop.py: the same functions in the same order.
"""

from __future__ import annotations

import jax
from flax import nnx

from labs import training_loop as spec
from week1 import charlm, convert, loop
from week1.comparison import Curves
from week1.timing import time_calls
from week1_jax.lib import devices
from week1_jax.lib.charlm import (
    as_arrays,
    build_model,
    make_optimizer,
    make_train_step,
    sample,
    train,
)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run training_loop --framework jax`: train, evaluate, sample, checkpoint."""
    data = charlm.load_data(cfg)
    model, history = train(cfg, data, ctx=loop.Context.of_run(run))
    if run.should_stop():
        return history.summary()
    prompt = charlm.prompt_ids(data, cfg)
    ids = sample(model, prompt, cfg.sample_chars, cfg.temperature, cfg.seed)
    return spec.summary(cfg, data, history, ids)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare training_loop`: train from `weights` (torch's names, numpy, converted through
    charlm.WEIGHT_MAP); returns its Curves. `case` is "lm", the lab's only one."""
    data = charlm.load_data(cfg)
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    _, history = train(cfg, data, weights=flax_weights, ctx=ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench training_loop`: one jitted train step (forward, backward, AdamW)."""
    data = charlm.load_data(cfg)
    model = build_model(cfg, data.vocab_size)
    graphdef, state = nnx.split((model, make_optimizer(model, cfg)))
    step = make_train_step(graphdef)
    x, y = as_arrays(*charlm.train_batch(data, cfg, 1))
    key = jax.random.key(cfg.seed)

    def call():  # the state is donated: each call takes the one the last returned
        nonlocal state
        state, loss = step(state, key, x, y)
        return state, loss

    return {"jax jit": time_calls(call, devices.sync)}
