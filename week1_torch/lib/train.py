"""The one training loop in PyTorch: every torch lab that trains runs through `train`.

The cadence (when to read losses, evaluate, checkpoint, stop) is week1/loop.py's, shared
with JAX; this module adds what is torch's: the step (zero the gradients, forward, backward,
clip, update), reading the losses off the device in one transfer, and checkpoints of the
model, optimizer, scheduler and RNG. torch.compile is applied from outside the step
(week1_torch/lib/parallelize.py), never threaded through the labs. Mirrors
week1_jax/lib/train.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from week1 import loop
from week1_torch.lib import checkpoint, parallelize
from week1_torch.lib.models import get_weights


def make_step(model, optimizer, loss_fn: Callable, *, clip_norm: float = 0.0) -> Callable:
    """step(*batch) -> loss: one update of `model` by `optimizer` on loss_fn(model, *batch).

    The loss comes back detached and on the device (reading it is the loop's business).
    clip_norm > 0 rescales the gradients to that global L2 norm first (Pascanu et al. 2013).
    """

    def step(*batch):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, *batch)
        loss.backward()
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        return loss.detach()

    return step


class Together:
    """Several optimizers (or schedulers) that one step drives, seen by the loop as one: what a
    checkpoint stores (state_dict / load_state_dict) and what steps the schedules (step)."""

    def __init__(self, parts: dict):
        self.parts = parts

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state[name])

    def step(self) -> None:
        for part in self.parts.values():
            part.step()


def read(values: list) -> list:
    """Device scalars (or dicts of them, "loss" first) as Python floats, in one transfer."""
    if isinstance(values[0], dict):
        keys = list(values[0])
        flat = read([v[k] for v in values for k in keys])
        return [
            dict(zip(keys, flat[i : i + len(keys)], strict=True))
            for i in range(0, len(flat), len(keys))
        ]
    return torch.stack([v.reshape(()) for v in values]).double().cpu().tolist()


def train(
    model,
    optimizer,
    step: Callable,
    batch: Callable,
    cadence: loop.Cadence,
    ctx: loop.Context,
    *,
    scheduler=None,
    evaluate: Callable | None = None,
    label: str = "torch",
    history: loop.History | None = None,
    start: int = 0,
) -> loop.History:
    """Run `step(*batch(i))` for the cadence's steps; returns the History.

    step: made by make_step, or the lab's own (returning the loss, or a dict with "loss").
    batch(i) -> the tensors of step i, on the device.
    scheduler: stepped after every update (LambdaLR: update k used schedule(k)).
    evaluate() -> {metric: value}, dropout off.
    ctx.compile: the step runs through parallelize.apply_compile.
    ctx.resume: continue from the newest intact checkpoint in ctx.checkpoint_dir; dropout draws
      from torch's global RNG, which the checkpoint restores.
    start: the step to continue after where the caller restored the state itself (the fsdp
      lab's sharded checkpoint).
    """
    if ctx.resume:
        start = checkpoint.restore_train_state(ctx.checkpoint_dir, model, optimizer, scheduler)
    if ctx.compile:
        parallelize.check_whole_step(model)
    run_step = parallelize.apply_compile(step) if ctx.compile else step

    def one(i: int):
        loss = run_step(*batch(i))
        if scheduler is not None:
            scheduler.step()
        return loss

    def save(i: int) -> None:
        checkpoint.save_train_state(ctx.checkpoint_dir, i, model, optimizer, scheduler)

    return loop.drive(
        cadence,
        ctx,
        start=start,
        step=one,
        read=read,
        evaluate=evaluate,
        save=save if ctx.checkpoint_dir is not None else None,
        weights=lambda: get_weights(model),
        label=("torch.compile" if ctx.compile else "torch") + label.removeprefix("torch"),
        history=history,
    )
