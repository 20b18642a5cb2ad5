"""Checkpoints with torch.save: model, optimizer, scheduler, step and RNG state.

Each save goes to a temporary file renamed into place, then is sealed with a
sha256 manifest (week1/checkpoints.py): a crash or a second Ctrl-C mid-save
leaves the previous checkpoint intact, and a truncated or corrupted file is
detected before loading and skipped for the one before it. Loading uses
weights_only=True, so a checkpoint file can never run code; a file that loader
refuses (a pickle payload under a forged manifest) is skipped the same way. A
file about to be saved over (a resume that fell back past it) is set aside first.
"""

from __future__ import annotations

import os
import pathlib
import pickle

import torch

from week1 import checkpoints


def _path(directory, step: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"step_{step:08d}.pt"


def candidates(directory) -> list[tuple[int, pathlib.Path]]:
    """Every (step, file) saved in `directory`, intact or not."""
    return [(int(p.stem[5:]), p) for p in pathlib.Path(directory).glob("step_*.pt")]


def latest_step(directory) -> int | None:
    """The newest intact checkpoint's step (broken newer ones are reported and skipped), or None."""
    found = checkpoints.latest_intact(candidates(directory))
    return found[0] if found else None


def save_state(directory, step: int, state: dict, max_to_keep: int = 2) -> pathlib.Path:
    """torch.save `state` as checkpoint `step`: aside, renamed into place, sealed; keeps the
    newest `max_to_keep`."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = _path(directory, step)
    checkpoints.replace(path)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    checkpoints.seal(path)
    for old in sorted(directory.glob("step_*.pt"))[:-max_to_keep]:
        old.unlink()
    checkpoints.prune(directory)
    return path


def load_state(directory, step: int | None = None) -> tuple[int, dict]:
    """(step, state) of checkpoint `step` (default: the newest intact one the weights-only loader
    accepts), tensors on the CPU."""
    if step is not None:
        return step, _load(step, _path(directory, step))
    found = checkpoints.load_newest(candidates(directory), _load, refused=REFUSED)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    return found


# What torch.load(weights_only=True) raises for a file it will not (or cannot) unpickle.
REFUSED = (pickle.UnpicklingError, RuntimeError, EOFError)


def _load(step: int, path: pathlib.Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def save_train_state(
    directory, step: int, model, optimizer, scheduler, max_to_keep: int = 2
) -> pathlib.Path:
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return save_state(directory, step, state, max_to_keep)


def restore_train_state(directory, model, optimizer, scheduler, step: int | None = None) -> int:
    """Load checkpoint `step` (default: the newest intact one) into model, optimizer and
    scheduler; returns the step."""
    step, ckpt = load_state(directory, step)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt["cuda_rng"]:
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])  # dropout masks on the GPU draw from these
    return step
