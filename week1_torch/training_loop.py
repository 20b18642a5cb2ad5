"""Training loop lab in PyTorch: the char-MLP LM, trained by the one loop written out in
week1/loop.py (the cadence) and week1_torch/lib/train.py (the step and checkpoints).

Read beside week1_jax/training_loop.py: the same functions in the same order.
"""

from __future__ import annotations

from labs import training_loop as spec
from week1 import charlm, loop
from week1.comparison import Curves
from week1.timing import time_calls
from week1_torch.lib import devices
from week1_torch.lib import train as trainer
from week1_torch.lib.charlm import as_tensors, build_model, loss_fn, make_optimizer, sample, train
from week1_torch.lib.models import get_weights
from week1_torch.lib.parallelize import apply_compile


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run training_loop --framework torch [--compile]`: train, evaluate, sample,
    checkpoint."""
    data = charlm.load_data(cfg)
    model, history = train(cfg, data, ctx=loop.Context.of_run(run, compile))
    if run.should_stop():
        return history.summary()
    prompt = charlm.prompt_ids(data, cfg)
    ids = sample(model, prompt, cfg.sample_chars, cfg.temperature, cfg.seed)
    return spec.summary(cfg, data, history, ids)


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    data = charlm.load_data(cfg)
    return get_weights(build_model(cfg, data.vocab_size))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare training_loop`: train from `weights` (torch's names, numpy); returns its
    Curves. `case` is "lm", the lab's only one."""
    data = charlm.load_data(cfg)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench training_loop`: one train step (forward, backward, AdamW), eager and
    compiled."""
    data = charlm.load_data(cfg)
    x, y = as_tensors(*charlm.train_batch(data, cfg, 1))
    timings = {}
    for name, compiled in (("torch eager", False), ("torch.compile", True)):
        model = build_model(cfg, data.vocab_size)
        optimizer, scheduler = make_optimizer(model, cfg)
        step = trainer.make_step(model, optimizer, loss_fn)
        step = apply_compile(step) if compiled else step

        def call(step=step, scheduler=scheduler):
            loss = step(x, y)
            scheduler.step()
            return loss

        timings[name] = time_calls(call, devices.sync)
    return timings
