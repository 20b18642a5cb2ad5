"""Literal weight maps between torch state_dict names and Flax parameter paths (numpy only).

Each table row is (torch name, flax path, how to turn the torch array into the
Flax one). Linear: torch stores (out, in), Flax (in, out): a transpose. Conv1d:
torch (out, in, k), Flax (k, in, out).
"""

from __future__ import annotations

import numpy as np

SAME = "same"
TRANSPOSE = "transpose"  # (out, in) <-> (in, out)
CONV1D = "conv1d"  # (out, in, k) <-> (k, in, out)

CHAR_MLP = (
    # torch            flax                 transform
    ("wte.weight", "wte.embedding", SAME),
    ("fc1.weight", "fc1.kernel", TRANSPOSE),
    ("fc1.bias", "fc1.bias", SAME),
    ("ln.weight", "ln.scale", SAME),
    ("ln.bias", "ln.bias", SAME),
    ("head.weight", "head.kernel", TRANSPOSE),
    ("head.bias", "head.bias", SAME),
)

# Each transform is its own inverse (reversing the axes twice restores them): one table serves
# both directions.
_TRANSFORM = {SAME: lambda a: a, TRANSPOSE: lambda a: a.T, CONV1D: lambda a: a.transpose(2, 1, 0)}


def _check(names, table, column: int) -> None:
    want = {row[column] for row in table}
    if set(names) != want:
        raise ValueError(
            f"weights do not match the table: missing {sorted(want - set(names))}, "
            f"unexpected {sorted(set(names) - want)}"
        )


def torch_to_flax(weights: dict[str, np.ndarray], table) -> dict[str, np.ndarray]:
    _check(weights, table, 0)
    return {
        flax: np.ascontiguousarray(_TRANSFORM[how](np.asarray(weights[torch])))
        for torch, flax, how in table
    }


def flax_to_torch(weights: dict[str, np.ndarray], table) -> dict[str, np.ndarray]:
    _check(weights, table, 1)
    return {
        torch: np.ascontiguousarray(_TRANSFORM[how](np.asarray(weights[flax])))
        for torch, flax, how in table
    }
