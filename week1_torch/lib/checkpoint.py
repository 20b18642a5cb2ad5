"""Checkpoints with torch.save: model, optimizer, scheduler, step and RNG state.

Each save goes to a temporary file renamed into place (a crash mid-save leaves
the previous checkpoint intact); loading uses weights_only=True, so a checkpoint
file can never run code.
"""

from __future__ import annotations

import os
import pathlib

import torch


def _path(directory, step: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"step_{step:08d}.pt"


def latest_step(directory) -> int | None:
    steps = sorted(int(p.stem[5:]) for p in pathlib.Path(directory).glob("step_*.pt"))
    return steps[-1] if steps else None


def save_train_state(
    directory, step: int, model, optimizer, scheduler, max_to_keep: int = 2
) -> pathlib.Path:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = _path(directory, step)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        tmp,
    )
    os.replace(tmp, path)
    for old in sorted(directory.glob("step_*.pt"))[:-max_to_keep]:
        old.unlink()
    return path


def restore_train_state(directory, model, optimizer, scheduler, step: int | None = None) -> int:
    """Load checkpoint `step` (default: the latest) into model, optimizer and scheduler; returns
    the step."""
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    ckpt = torch.load(_path(directory, step), weights_only=True, map_location="cpu")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt["cuda_rng"]:
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])  # dropout masks on the GPU draw from these
    return ckpt["step"]
