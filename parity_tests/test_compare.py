"""`week1 compare` for every lab that trains: a short compare per lab (its COMPARE_TEST
settings, a few steps) whose JAX and torch train-loss curves stay within the case's tier, and
`--all`'s summary carrying the per-lab tables' numbers."""

import json
import subprocess
import sys

import pytest

from week1 import catalog
from week1.commands import compare

# The environment lab's cases build MiniLM and compile BERT's step in both frameworks (about a
# minute even at 3 steps); model_parallel's start two torchrun groups (about 30 s of CPU, and
# its parity tests already hold each mode to one device); data_parallel's compare takes the
# path of fsdp's (torchrun ranks beside JAX processes, which CI runs); long_range's,
# embedding_tradeoffs', rnn's and mixed_precision's take the one-process path of the others,
# at 12-15 s each (their parity tests hold every case, fp16's loss scaling included): their
# short compares run with the slow cases, not in CI.
SLOW = {"environment", "model_parallel", "data_parallel", "long_range", "embedding_tradeoffs",
        "rnn", "mixed_precision"}  # fmt: skip


@pytest.mark.parametrize(
    "lab_id",
    [pytest.param(lab, marks=pytest.mark.slow) if lab in SLOW else lab
     for lab in compare.comparable_labs()],
)  # fmt: skip
def test_a_short_compare_stays_within_the_tier(lab_id, tmp_path):
    spec = catalog.spec(lab_id)
    overrides = [f"--{k}={v}" for k, v in spec.COMPARE_TEST.items()]
    cfg = compare.lab_config(lab_id, overrides, quick=False)
    rows = compare.compare(lab_id, cfg, runs_root=tmp_path, compile=False)
    assert [row["case"] for row in rows] == [case.name for case in spec.compare_cases(cfg)]
    for row in rows:
        assert row["steps"] >= 2, row
        if row["differs"]:  # said why, in one line, and shown: never held to the tier
            assert "\n" not in row["differs"] and row["headroom"] is None
            continue
        assert row["within_tier"], (
            f"{lab_id}/{row['case']}: train losses {row['max_abs_loss_diff']:.3g} apart, "
            f"headroom {row['headroom']:.3g} of {row['tier']}"
        )
    (run_dir,) = tmp_path.iterdir()
    for row in rows:
        assert (run_dir / row["png"]).stat().st_size > 0


def test_the_all_summary_carries_the_per_lab_numbers(tmp_path):
    """`week1 compare --all` over one lab: the summary's rows are the lab's own compare rows
    (the ones its run folder recorded), in the Markdown table too."""
    markdown, summary = tmp_path / "compare.md", tmp_path / "compare.json"
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from week1.commands import compare; "
         "sys.exit(compare.compare_all(['training_loop'], quick=True, runs_root=sys.argv[1], "
         "compile=False, markdown=sys.argv[2], json_path=sys.argv[3]))",
         str(tmp_path / "runs"), str(markdown), str(summary)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(summary.read_text())["cases"]
    (run_dir,) = (tmp_path / "runs").iterdir()
    recorded = json.loads((run_dir / "summary.json").read_text())["cases"]
    assert rows == recorded and [r["lab"] for r in rows] == ["training_loop"]
    cells = compare.summary_rows(rows)[0]
    assert "| " + " | ".join(cells) + " |" in markdown.read_text()


def test_a_lab_without_training_is_refused_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "week1", "compare", "bpe", f"--runs-dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "bpe" in done.stderr and "training_loop" in done.stderr
    assert not any(tmp_path.iterdir())
