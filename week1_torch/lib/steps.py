"""The halves of a torch train step the profiler times apart (mirrors week1_jax/lib/steps.py)."""

from __future__ import annotations


def apply_grads(optimizer, scheduler) -> None:
    """The optimizer half of a step: the update from the gradients in each p.grad, then the
    schedule."""
    optimizer.step()
    scheduler.step()
