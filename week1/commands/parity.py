"""`week1 parity [lab]`: run the parity tests, then print every recorded comparison.

Each parity test compares through week1.tolerances.assert_close, which appends
(check, tensor, tier, max abs, max rel, ok) to the file named by
$WEEK1_PARITY_REPORT; this command sets it, runs pytest, and tabulates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from week1 import catalog, report
from week1.tolerances import REPORT_ENV


def run_parity(lab_id: str | None, pytest_args: list[str]) -> int:
    target = os.path.join(str(catalog.ROOT), "parity_tests")
    if lab_id is not None:
        catalog.require_implemented(lab_id)
        target = os.path.join(target, f"test_{lab_id}.py")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "parity.jsonl")
        env = dict(os.environ, **{REPORT_ENV: path})
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", target, *pytest_args],
            env=env,
            cwd=str(catalog.ROOT),
        )
        diffs = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                diffs = [json.loads(line) for line in f]
    rows = [
        (
            d["check"],
            d["tensor"],
            d["tier"],
            d["max_abs"],
            d["max_rel"],
            "ok" if d["ok"] else "FAIL",
        )
        for d in diffs
    ]
    report.table(
        f"parity: {lab_id or 'all labs'} ({len(rows)} comparisons)",
        ["check", "tensor", "tier", "max abs", "max rel", ""],
        rows,
    )
    return code
