"""The parity tiers of DESIGN.md, and the one function every parity test compares through.

`assert_close` measures the max abs and max rel difference and the headroom, records them
(so `week1 parity` can print a table per check and tensor), then asserts.

Headroom is the quantity the tier's assert compares, as a ratio: the worst element's
|a - b| / (atol + rtol * |b|), so 1.0 is exactly at the tier's limit and anything above
fails. It is what tells a comfortable check from one that passes by a hair.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

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
    headroom: float  # worst |a - b| / (atol + rtol * |b|): 1.0 = at the tier's limit
    rtol: float
    atol: float


def measure(a, b, tier: Tier, check: str = "", tensor: str = "") -> Diff:
    """Max abs and max rel difference of a vs b (b is the reference) and the headroom under
    `tier`. ok is exactly headroom <= 1 (an element with 0 allowed passes only when equal)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise AssertionError(f"{check}/{tensor}: shape {a.shape} != {b.shape}")
    if a.dtype.kind not in "fiub" or b.dtype.kind not in "fiub":  # strings, objects: EXACT only
        ok = bool(np.array_equal(a, b))
        gap = 0.0 if ok else float("inf")
        return Diff(check, tensor, tier.name, gap, gap, ok, gap, tier.rtol, tier.atol)
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, handled below
        diff = np.abs(a64 - b64)
    if tier is EXACT:
        ok = bool(np.array_equal(a, b))
        diff = np.where(a == b, 0.0, diff)  # equal infinities differ by 0, not inf - inf = NaN
        headroom = 0.0 if ok else float("inf")  # nothing allowed: any difference is too far
    else:
        allowed = tier.atol + tier.rtol * np.abs(b64)
        ok = bool(np.all(diff <= allowed))
        # diff / allowed, with 0/0 = 0 (equal where nothing is allowed) and NaN = inf (never ok).
        ratio = np.divide(diff, allowed, out=np.where(diff > 0, np.inf, 0.0), where=allowed > 0)
        headroom = float(np.where(np.isnan(diff), np.inf, ratio).max(initial=0.0))
    max_abs = float(diff.max(initial=0.0))
    max_rel = float((diff / np.maximum(np.abs(b64), np.finfo(np.float64).tiny)).max(initial=0.0))
    return Diff(check, tensor, tier.name, max_abs, max_rel, ok, headroom, tier.rtol, tier.atol)


def current_test() -> tuple[str, str]:
    """(lab, pytest node id) of the running parity test, from pytest's PYTEST_CURRENT_TEST
    ("parity_tests/test_<lab>.py::test_x[param] (call)"; inherited by worker processes);
    ("", "") outside pytest."""
    node = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    stem = pathlib.PurePath(node.split("::", 1)[0]).stem
    return (stem[len("test_") :] if stem.startswith("test_") else ""), node


def record(diff: Diff) -> None:
    """Append the comparison, with its lab and test, as one JSON line to $WEEK1_PARITY_REPORT."""
    path = os.environ.get(REPORT_ENV)
    if path:
        lab, test = current_test()
        line = json.dumps({**dataclasses.asdict(diff), "lab": lab, "test": test})
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def assert_close(check: str, tensor: str, actual, reference, tier: Tier) -> Diff:
    """Compare, record, and fail with the numbers if `actual` is outside `tier` of `reference`
    (a shape mismatch is recorded as a failure, infinitely far, before it is raised)."""
    try:
        diff = measure(actual, reference, tier, check, tensor)
    except AssertionError:
        inf = float("inf")
        record(Diff(check, tensor, tier.name, inf, inf, False, inf, tier.rtol, tier.atol))
        raise
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
