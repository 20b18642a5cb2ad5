"""The parity tiers of DESIGN.md, and the one function every parity test compares through.

`assert_close` measures the max abs and max rel difference, records them (so
`week1 parity` can print a table per check and tensor), then asserts.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tier:
    name: str
    rtol: float
    atol: float


EXACT = Tier("EXACT", 0.0, 0.0)
F64 = Tier("F64", 1e-10, 1e-12)
F32 = Tier("F32", 1e-5, 1e-6)
TRAJECTORY = Tier("TRAJECTORY", 1e-4, 1e-6)  # F32 losses after many steps
BF16 = Tier("BF16", 1.6e-2, 1e-3)
BF16_FINAL_LOSS = Tier("BF16_FINAL_LOSS", 1e-2, 0.0)  # final loss within 1%

# Set by parity_tests/conftest.py when `week1 parity` asks for a report.
REPORT_ENV = "WEEK1_PARITY_REPORT"


@dataclasses.dataclass(frozen=True)
class Diff:
    check: str
    tensor: str
    tier: str
    max_abs: float
    max_rel: float
    ok: bool


def measure(a, b, tier: Tier, check: str = "", tensor: str = "") -> Diff:
    """Max abs and max rel difference of a vs b (b is the reference) under `tier`."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise AssertionError(f"{check}/{tensor}: shape {a.shape} != {b.shape}")
    if tier is EXACT:
        ok = bool(np.array_equal(a, b))
        if a.dtype.kind in "fiub":
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            max_abs = float(diff.max(initial=0.0))
        else:
            max_abs = 0.0 if ok else float("inf")
        return Diff(check, tensor, tier.name, max_abs, max_abs, ok)
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    diff = np.abs(a64 - b64)
    max_abs = float(diff.max(initial=0.0))
    max_rel = float((diff / np.maximum(np.abs(b64), np.finfo(np.float64).tiny)).max(initial=0.0))
    ok = bool(np.all(diff <= tier.atol + tier.rtol * np.abs(b64)))
    return Diff(check, tensor, tier.name, max_abs, max_rel, ok)


def record(diff: Diff) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(diff)) + "\n")


def assert_close(check: str, tensor: str, actual, reference, tier: Tier) -> Diff:
    """Compare, record, and fail with the numbers if `actual` is outside `tier` of `reference`."""
    diff = measure(actual, reference, tier, check, tensor)
    record(diff)
    assert diff.ok, (
        f"{check}/{tensor}: outside {tier.name} (rtol={tier.rtol}, atol={tier.atol}): "
        f"max abs {diff.max_abs:.3g}, max rel {diff.max_rel:.3g}"
    )
    return diff


def assert_tree_close(check: str, actual: dict, reference: dict, tier: Tier) -> list[Diff]:
    """assert_close on every tensor of two name -> array dicts with the same keys."""
    assert sorted(actual) == sorted(reference), (
        f"{check}: keys {sorted(actual)} != {sorted(reference)}"
    )
    return [
        assert_close(check, name, actual[name], reference[name], tier) for name in sorted(reference)
    ]
