"""scripts/gpu_check.sh cannot rot unexercised: its CPU run (`--cpu`) runs every stage a GPU
machine runs, smaller, and must pass, with the summary saying so stage by stage and the
benchmark's outputs (results.json, results.md, PNGs) beside it. The summary is rewritten after
every stage, so a check stopped mid-way leaves its report. The plan (scripts/gpu_plan.py) refuses
stage limits that exceed the total, and a dry run's estimate that exceeds a stage's limit."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
PLAN = ROOT / "scripts" / "gpu_plan.py"
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_plan  # noqa: E402

STAGES = ["env", "parity", "devices", "gpu_basics_jax", "gpu_basics_torch", "benchmark"]


def test_the_cpu_dry_run_passes_every_stage(tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    failed = {s["stage"]: (out / f"{s['stage']}.txt").read_text()[-1500:]
              for s in summary["stages"] if s["status"] not in ("pass", "skipped")}  # fmt: skip
    assert done.returncode == 0 and not failed, (done.stdout[-2000:], failed)
    stages = [s["stage"] for s in summary["stages"]]
    assert stages[: len(STAGES)] == STAGES
    first = (out / "summary.md").read_text().splitlines()
    assert first[0].startswith("# gpu_check: pass (cpu")
    assert [line.split(":")[0] for line in first[2 : 2 + len(stages)]] == [f"- {s}" for s in stages]
    results = json.loads((out / "benchmark_results.json").read_text())
    assert {r["framework"] for r in results["rows"] if "median_s" in r} == {"jax", "torch"}
    assert results["measured_peaks"], "the benchmark found gpu_basics' peaks beside it"
    assert (out / "step_time.png").exists() and (out / "results.md").exists()
    assert json.loads((out / "parity.json").read_text())["exit_status"] == 0
    # the device sweep ran on the CPU in place of the GPU (WEEK1_DEVICE_SWEEP=cpu)
    assert " passed" in (out / "devices.txt").read_text()


def test_a_failing_stage_fails_the_check(tmp_path):
    """A parity failure (here pytest refuses an option given through PYTEST_ADDOPTS) makes the
    exit status 1 and the summary say FAIL; a short total leaves the later stages out."""
    out = tmp_path / "report"
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TOTAL_S="10",
               PYTEST_ADDOPTS="--no-such-option")  # fmt: skip
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    status = {s["stage"]: s["status"] for s in summary["stages"]}
    assert done.returncode == 1 and summary["status"] == "FAIL" and status["parity"] == "FAIL"
    assert (out / "summary.md").read_text().startswith("# gpu_check: FAIL (cpu")


def test_the_report_is_written_as_the_stages_end(tmp_path):
    """Killed after its first stage, the check has already written summary.json with it."""
    out = tmp_path / "report"
    check = subprocess.Popen(
        ["bash", str(SCRIPT), "--cpu", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHON=sys.executable), start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (out / "summary.json").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        summary = json.loads((out / "summary.json").read_text())
    finally:
        os.killpg(check.pid, signal.SIGKILL)
        check.wait()
    assert summary["stages"][0]["stage"] == "env" and summary["stages"][0]["status"] == "pass"
    assert summary["stages"][0]["limit_s"] == gpu_plan.LIMITS["env"]


def test_a_gpu_plan_whose_limits_exceed_the_total_is_refused_before_it_starts(tmp_path):
    out = tmp_path / "report"
    done = subprocess.run(
        ["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TOTAL_S="300"),
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "more than the 300 s total" in done.stdout
    assert not (out / "stages.tsv").exists()  # refused before any stage ran
    assert sum(gpu_plan.LIMITS.values()) <= gpu_plan.TOTAL_S == 420  # the default plan fits


def dry_run_folder(tmp_path, compile_s: float) -> pathlib.Path:
    """What a dry run leaves, made up: every stage passed in 10 s (env 10 s), the parity stage
    skipped 19 GPU tests, each benchmark compile took `compile_s` on the CPU."""
    from labs import benchmark as spec

    out = tmp_path / f"dry-{compile_s}"
    out.mkdir()
    (out / "stages.tsv").write_text(
        "".join(f"{name}\tpass\t10\texit 0\n" for name in gpu_plan.LIMITS)
    )
    (out / "parity.txt").write_text("... 19 skipped, 300 deselected in 12.0s\n")
    rows = [
        {"workload": w, "variant": v, "median_s": 0.01, "compile_s": compile_s,
         "first_s": compile_s}
        for w in spec.WORKLOADS for v in ("jax jit", "torch eager", "torch.compile")
    ]  # fmt: skip
    (out / "benchmark_results.json").write_text(json.dumps({"rows": rows}))
    return out


@pytest.mark.parametrize(("compile_s", "fits"), [(0.5, True), (60.0, False)])
def test_the_dry_run_estimate_refuses_a_stage_that_cannot_fit(tmp_path, compile_s, fits):
    """The estimate scales the CPU run's compiles to the GPU machine (HOST: H200_ENV_S over
    the CPU's env seconds); a benchmark whose compiles took a minute each cannot fit 120 s."""
    out = dry_run_folder(tmp_path, compile_s)
    done = subprocess.run([sys.executable, str(PLAN), "estimate", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    plan = json.loads((out / "plan.json").read_text())
    by_stage = {s["stage"]: s for s in plan["stages"]}
    assert set(by_stage) == set(gpu_plan.LIMITS) and by_stage["env"]["seconds"] == 5.0
    host = gpu_plan.H200_ENV_S / 10
    assert by_stage["parity"]["seconds"] == pytest.approx(
        10 * host + gpu_plan.CUDA_INIT_S + 19 * gpu_plan.GPU_TEST_S
    )
    assert (done.returncode, plan["fits"], by_stage["benchmark"]["fits"]) == (
        (0, True, True) if fits else (2, False, False)
    ), done.stdout
    assert ("plan fits" in done.stdout) == fits
    if not fits:
        assert "plan refused: benchmark: estimated" in done.stdout


def test_week1_parity_gpu_is_refused_without_a_gpu(monkeypatch):
    """`week1 parity --gpu` runs the whole suite on the GPU: on this machine it is refused
    (exit 2, one line), and a run that landed on the CPU would not count as a GPU run."""
    from week1 import cli
    from week1.commands import parity

    monkeypatch.setattr("week1.machine.nvidia_gpus", lambda: [])
    assert cli.main(["parity", "--gpu", "--json", "/dev/null"]) == 2
    assert parity.off_the_gpu({"jax": "gpu:NVIDIA H200 x1", "torch": "NVIDIA H200"}) is None
    assert "jax ran on cpu:cpu x8" in parity.off_the_gpu({"jax": "cpu:cpu x8", "torch": "H200"})


def test_a_parity_run_stopped_at_its_time_limit_still_writes_its_json(tmp_path):
    """The first H200 run's parity stage ran out of time and left no report: now SIGTERM (what
    `timeout` sends) stops pytest and the command writes what was recorded, exit 128 + 15."""
    out = tmp_path / "parity.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "week1", "parity", "--json", str(out), "adamw"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    children = pathlib.Path(f"/proc/{run.pid}/task/{run.pid}/children")
    deadline = time.monotonic() + 120
    while not children.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.2)  # until the command has started pytest
    time.sleep(3)  # inside pytest's collection or its first tests
    os.killpg(run.pid, signal.SIGTERM)  # the whole group, as timeout does
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, output[-2000:]
    doc = json.loads(out.read_text())
    assert doc["exit_status"] == 128 + signal.SIGTERM and isinstance(doc["comparisons"], list)
