"""Checkpoints with orbax: model parameters, optimizer state (moments, count) and the step.

Orbax wants absolute paths; the manager keeps the last `max_to_keep` steps and
writes each one atomically (a temporary folder renamed into place). Each
finished step is then sealed with a sha256 manifest (week1/checkpoints.py), so
a corrupted or truncated checkpoint is detected before loading and skipped for
the one before it; a step folder about to be saved over (a resume that fell back
past it reaches that step again: orbax would refuse with StepAlreadyExistsError,
every retry) is set aside first, kept as `<step>.broken`.
"""

from __future__ import annotations

import os
import pathlib

import orbax.checkpoint as ocp
from flax import nnx

from week1 import checkpoints


def manager(directory, max_to_keep: int = 2) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def candidates(mngr: ocp.CheckpointManager) -> list[tuple[int, pathlib.Path]]:
    """Every (step, folder) in the manager's directory, intact or not (read from the disk: the
    manager's own list is cached, and a broken step may have been set aside since)."""
    return checkpoints.candidates_in("jax", mngr.directory)


def latest_step(mngr: ocp.CheckpointManager) -> int | None:
    """The newest intact checkpoint's step (broken newer ones are reported and skipped), or None."""
    found = checkpoints.latest_intact(candidates(mngr))
    return found[0] if found else None


def save_state(mngr: ocp.CheckpointManager, step: int, state) -> None:
    """Save a pytree of arrays as checkpoint `step`, wait for it, and seal it."""
    checkpoints.replace(pathlib.Path(mngr.directory) / str(step))
    mngr.reload()  # its list of steps, after a set-aside here or in latest_intact
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()
    checkpoints.seal(pathlib.Path(mngr.directory) / str(step))
    checkpoints.prune(mngr.directory)


def load_state(mngr: ocp.CheckpointManager, target, step: int | None = None) -> tuple[int, dict]:
    """(step, state) of checkpoint `step` (default: the newest intact one), shaped like `target`."""
    step = latest_step(mngr) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
    return step, mngr.restore(step, args=ocp.args.StandardRestore(target))


def save_train_state(
    mngr: ocp.CheckpointManager, step: int, model: nnx.Module, optimizer: nnx.Optimizer
) -> None:
    state = {
        "model": nnx.to_pure_dict(nnx.state(model, nnx.Param)),
        "optimizer": nnx.to_pure_dict(nnx.state(optimizer)),
    }
    save_state(mngr, step, state)


def restore_train_state(
    mngr: ocp.CheckpointManager,
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    step: int | None = None,
) -> int:
    """Load checkpoint `step` (default: the newest intact one) into model and optimizer;
    returns the step."""
    model_state, opt_state = nnx.state(model, nnx.Param), nnx.state(optimizer)
    target = {"model": nnx.to_pure_dict(model_state), "optimizer": nnx.to_pure_dict(opt_state)}
    step, restored = load_state(mngr, target, step)
    nnx.replace_by_pure_dict(model_state, restored["model"])
    nnx.replace_by_pure_dict(opt_state, restored["optimizer"])
    nnx.update(model, model_state)
    nnx.update(optimizer, opt_state)
    return step
