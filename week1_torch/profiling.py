"""Profiling lab in PyTorch: torch.profiler trace of the training_loop step, cut into synced phases.

Read beside week1_jax/profiling.py. Every phase ends in a sync
(`torch.cuda.synchronize` on a GPU, where kernels run asynchronously; the CPU
is synchronous already).
"""
from __future__ import annotations

import pathlib

import torch
from torch.profiler import ProfilerActivity

from labs import profiling as spec
from labs import training_loop
from week1_torch import training_loop as base


def grads_of(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    loss = base.loss_fn(model, x, y)
    loss.backward()
    return loss.detach()


def apply_grads(optimizer, scheduler):
    optimizer.step()
    scheduler.step()


def profile_phases(cfg: spec.Config) -> spec.Phases:
    """The training_loop step (char-MLP, AdamW) as data / forward_backward / optimizer phases."""
    data = training_loop.load_data(cfg)
    model = base.build_model(cfg, data.vocab_size)
    optimizer, scheduler = base.make_optimizer(model, cfg)

    def batch(step):
        xy = base.as_tensors(*training_loop.train_batch(data, cfg, step))
        base.sync(xy)
        return xy

    def forward_backward(xy):
        loss = grads_of(model, optimizer, *xy)
        base.sync(loss)
        return loss, None   # the gradients stay in each p.grad

    def optimizer_step(_loss_and_grads):
        apply_grads(optimizer, scheduler)
        base.sync(None)

    return spec.Phases(batch, forward_backward, optimizer_step, torch.profiler.record_function)


def op_category(events) -> str:
    """CUDA kernels where the step ran on a GPU, else aten operators (and autograd nodes) on the CPU."""
    return "kernel" if any(event.get("cat") == "kernel" for event in events) else "cpu_op"


def profile(phases: spec.Phases, steps: int, trace_dir, top_n: int):
    """Time `steps` steps under torch.profiler; returns (Breakdown, top operations, trace file)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    trace_dir = pathlib.Path(trace_dir)
    with torch.profiler.profile(activities=activities,
                                on_trace_ready=torch.profiler.tensorboard_trace_handler(str(trace_dir))):
        breakdown = spec.time_steps(phases, steps)
    trace_file = max(trace_dir.glob("*.pt.trace.json*"), key=lambda p: p.stat().st_mtime)
    events = spec.read_chrome_trace(trace_file)
    category = op_category(events)
    return breakdown, spec.top_ops(events, lambda event: event.get("cat") == category, top_n), trace_file


def run(cfg: spec.Config, run) -> dict:
    """`week1 run profiling --framework torch`: trace and break down the training_loop step."""
    breakdown, ops, trace_file = profile(profile_phases(cfg), cfg.profile_steps, run.path("trace"), cfg.top_ops)
    return spec.summarise("torch", breakdown, ops, trace_file.relative_to(run.path("")))
