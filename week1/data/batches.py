"""Deterministic numpy batching, shared by both frameworks (byte-identical batches).

Batch `step` of a run depends only on (seed, step), not on how many batches were
drawn before: a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np


def window_batch(ids: np.ndarray, block_size: int, batch_size: int, seed: int, step: int):
    """Random windows of `block_size` ids and the id that follows each.

    Returns x (B, T) int32 and y (B,) int32.
    """
    if len(ids) <= block_size:
        raise ValueError(f"corpus of {len(ids)} ids is too short for block_size={block_size}")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)  # (B,)
    offsets = starts[:, None] + np.arange(block_size + 1)[None, :]  # (B, T+1)
    windows = ids[offsets].astype(np.int32)  # (B, T+1)
    return windows[:, :-1], windows[:, -1]
