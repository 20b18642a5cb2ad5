"""scripts/gpu_check.sh cannot rot unexercised: its CPU dry run (`--cpu`) runs every stage a GPU
machine runs, smaller, and must pass, with the summary saying so stage by stage and the
benchmark's outputs (results.json, results.md, PNGs) beside it."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_cpu_dry_run_passes_every_stage(tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    failed = {s["stage"]: (out / f"{s['stage']}.txt").read_text()[-1500:]
              for s in summary["stages"] if s["status"] not in ("pass", "skipped")}  # fmt: skip
    assert done.returncode == 0 and not failed, (done.stdout[-2000:], failed)
    stages = [s["stage"] for s in summary["stages"]]
    assert stages[:5] == ["env", "parity", "gpu_basics_jax", "gpu_basics_torch", "benchmark"]
    first = (out / "summary.md").read_text().splitlines()
    assert first[0].startswith("# gpu_check: pass (cpu")
    assert [line.split(":")[0] for line in first[2 : 2 + len(stages)]] == [f"- {s}" for s in stages]
    results = json.loads((out / "benchmark_results.json").read_text())
    assert {r["framework"] for r in results["rows"] if "median_s" in r} == {"jax", "torch"}
    assert results["measured_peaks"], "the benchmark found gpu_basics' peaks beside it"
    assert (out / "step_time.png").exists() and (out / "results.md").exists()
    assert json.loads((out / "parity.json").read_text())["exit_status"] == 0


def test_a_failing_stage_fails_the_check(tmp_path):
    """A parity failure (here pytest refuses an option given through PYTEST_ADDOPTS) makes the
    exit status 1 and the summary say FAIL; a short total leaves the later stages out."""
    out = tmp_path / "report"
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TOTAL_S="30",
               PYTEST_ADDOPTS="--no-such-option")  # fmt: skip
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    status = {s["stage"]: s["status"] for s in summary["stages"]}
    assert done.returncode == 1 and summary["status"] == "FAIL" and status["parity"] == "FAIL"
    assert (out / "summary.md").read_text().startswith("# gpu_check: FAIL (cpu")
