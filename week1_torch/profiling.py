"""Profiling lab in PyTorch: torch.profiler trace of the char LM's step, cut into synced phases.

Read beside week1_jax/profiling.py. Every phase ends in `devices.sync`
(torch.cuda.synchronize on a GPU, where kernels run asynchronously; the CPU is
synchronous already). The tracing is week1_torch/lib/profiler.py's, shared
with `week1 profile <lab>`.
"""

from __future__ import annotations

import torch

from labs import profiling as spec
from week1 import charlm, profiler
from week1_torch.lib import charlm as base
from week1_torch.lib import devices, parallelize, steps
from week1_torch.lib.profiler import profile


def grads_of(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    loss = base.loss_fn(model, x, y)
    loss.backward()
    return loss.detach()


def profile_phases(cfg: spec.Config, compile: bool = False) -> profiler.Phases:
    """The char LM's training step (char-MLP, AdamW) as data / forward_backward / optimizer
    phases; `compile`: the forward_backward phase through torch.compile (applied from outside,
    lib/parallelize), its first call compiling."""
    data = charlm.load_data(cfg)
    model = base.build_model(cfg, data.vocab_size)
    optimizer, scheduler = base.make_optimizer(model, cfg)
    gradients = parallelize.apply_compile(grads_of) if compile else grads_of

    def batch(step):
        xy = base.as_tensors(*charlm.train_batch(data, cfg, step))
        devices.sync(xy)
        return xy

    def forward_backward(xy):
        loss = gradients(model, optimizer, *xy)
        devices.sync(loss)
        return loss, None  # the gradients stay in each p.grad

    def optimizer_step(_loss_and_grads):
        steps.apply_grads(optimizer, scheduler)
        devices.sync()

    return profiler.Phases(batch, forward_backward, optimizer_step, torch.profiler.record_function)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run profiling --framework torch`: trace and break down the char LM's step."""
    breakdown, ops, trace_file = profile(
        profile_phases(cfg, compile), cfg.profile_steps, run.path("trace"), cfg.top_ops
    )
    title = "torch.compile" if compile else "torch"
    return profiler.summarise(title, breakdown, ops, trace_file.relative_to(run.path("")))
