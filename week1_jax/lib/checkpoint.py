"""Checkpoints with orbax: model parameters, optimizer state (moments, count) and the step.

Orbax wants absolute paths; the manager keeps the last `max_to_keep` steps and
writes each one atomically (a crash mid-save leaves the previous one intact).
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp
from flax import nnx


def manager(directory, max_to_keep: int = 2) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save_train_state(
    mngr: ocp.CheckpointManager, step: int, model: nnx.Module, optimizer: nnx.Optimizer
) -> None:
    state = {
        "model": nnx.to_pure_dict(nnx.state(model, nnx.Param)),
        "optimizer": nnx.to_pure_dict(nnx.state(optimizer)),
    }
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()


def restore_train_state(
    mngr: ocp.CheckpointManager,
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    step: int | None = None,
) -> int:
    """Load checkpoint `step` (default: the latest) into model and optimizer; returns the step."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
    model_state, opt_state = nnx.state(model, nnx.Param), nnx.state(optimizer)
    target = {"model": nnx.to_pure_dict(model_state), "optimizer": nnx.to_pure_dict(opt_state)}
    restored = mngr.restore(step, args=ocp.args.StandardRestore(target))
    nnx.replace_by_pure_dict(model_state, restored["model"])
    nnx.replace_by_pure_dict(opt_state, restored["optimizer"])
    nnx.update(model, model_state)
    nnx.update(optimizer, opt_state)
    return step
