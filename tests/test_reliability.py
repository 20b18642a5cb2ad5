"""Nothing lost, nothing misreported: real signals to real `week1` processes, real corrupted
checkpoints and caches, hostile settings. Each case asserts the exit status, the one line the
user reads, and what is left on disk."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from week1 import catalog, checkpoints
from week1.runs import read_metrics, read_summary

ROOT = catalog.ROOT
SHORT = ["--steps=900", "--checkpoint_every=300", "--eval_every=300", "--sample_chars=10"]


def week1(*args, env=None, cwd=None, timeout=600):
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="200", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "week1", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=full_env,
        timeout=timeout,
    )


def start(*args, env=None):
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="200", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "week1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=full_env,
    )


def wait_for_steps(runs: pathlib.Path, n: int, proc, timeout=300) -> pathlib.Path:
    """The run folder, once its metrics hold step n (the loop is running, past compilation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for metrics in runs.glob("*/metrics.jsonl"):
            lines = metrics.read_text().splitlines()
            if len(lines) >= n:
                return metrics.parent
        time.sleep(0.05)
    raise AssertionError(f"no step {n} within {timeout} s")


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("week1:")]
    assert "Traceback" not in stderr, stderr[-2000:]
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each framework's metrics for the SHORT training_loop run, start to end."""
    out = {}
    for framework in ("jax", "torch"):
        runs = tmp_path_factory.mktemp(f"whole-{framework}")
        done = week1("run", "training_loop", "--framework", framework, *SHORT, "--runs-dir", runs)
        assert done.returncode == 0, done.stderr
        out[framework] = read_metrics(next(runs.iterdir()))
    return out


@pytest.mark.parametrize("framework, signum", [("jax", signal.SIGINT), ("torch", signal.SIGTERM)])
def test_signal_checkpoints_and_resume_is_exact(framework, signum, uninterrupted, tmp_path):
    proc = start("run", "training_loop", "--framework", framework, *SHORT, "--runs-dir", tmp_path)
    run_dir = wait_for_steps(tmp_path, 350, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum
    assert one_line(stderr).endswith(f"continue with: week1 resume {run_dir}")
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["signal"] == signum.name
    stopped = summary["step"]
    assert 350 <= stopped < 900
    sealed = [p for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".sha256.json")]
    assert any(str(stopped) in p.name or f"{stopped:08d}" in p.name for p in sealed)

    resumed = week1("resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert read_summary(run_dir)["status"] == "ok"
    assert read_metrics(run_dir) == uninterrupted[framework], "resume must equal no interruption"


def test_a_second_ctrl_c_stops_at_once_and_leaves_checkpoints_intact(tmp_path):
    proc = start("run", "training_loop", "--framework", "torch", "--steps=100000",
                 "--checkpoint_every=50", "--runs-dir", tmp_path)  # fmt: skip
    run_dir = wait_for_steps(tmp_path, 120, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert read_summary(run_dir)["status"] == "interrupted"
    found = [p for p in (run_dir / "checkpoints").glob("step_*.pt")]
    assert found and all(checkpoints.check(p) is None for p in found)


def test_corrupt_latest_checkpoint_falls_back_then_none_intact_is_one_line(tmp_path):
    proc = start("run", "training_loop", "--framework", "torch", "--steps=2000",
                 "--checkpoint_every=100", "--runs-dir", tmp_path)  # fmt: skip
    run_dir = wait_for_steps(tmp_path, 450, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    files = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert len(files) == 2
    data = bytearray(files[-1].read_bytes())
    files[-1].write_bytes(bytes(data[: len(data) // 2]))  # truncated, as by a full disk

    resumed = week1("resume", run_dir, "--steps=1")  # nothing to train: the check runs first
    assert resumed.returncode == 2
    assert f"checkpoint of step {int(files[-1].stem[5:])} is not usable" in resumed.stderr
    for f in files:
        f.write_bytes(b"garbage")
    resumed = week1("resume", run_dir)
    assert resumed.returncode == 2
    assert one_line(resumed.stderr).startswith("week1: error: no intact checkpoint")


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_a_diverging_run_says_so(framework, tmp_path):
    done = week1("run", "training_loop", "--framework", framework, "--lr=1e30",
                 "--warmup_steps=0", "--steps=200", "--runs-dir", tmp_path)  # fmt: skip
    assert done.returncode == 3, done.stderr
    line = one_line(done.stderr)
    assert "diverged: non-finite loss" in line
    assert "no checkpoint was written before it" in line, "issue 21 case 6: it said 'kept'"
    run_dir = next(tmp_path.iterdir())
    summary = read_summary(run_dir)
    assert summary["status"] == "diverged" and summary["diverged_at_step"] >= 1
    if framework == "jax":  # issue 21 case 1: a FileNotFoundError traceback, exit 1
        exported = week1("export", run_dir, tmp_path / "hub")
        assert exported.returncode == 2
        assert "has no intact checkpoint to export (status: diverged)" in one_line(exported.stderr)
        assert not (tmp_path / "hub").exists()


def test_the_monitoring_labs_deliberate_nan_stop_exits_3(tmp_path):
    done = week1("run", "monitoring", "--framework", "jax", "--nan_step=30", "--steps=60",
                 "--checkpoint_every=10", "--runs-dir", tmp_path)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "step 30: non-finite gradient" in one_line(done.stderr)
    assert "last good checkpoint: step 30" not in done.stderr
    assert read_summary(next(tmp_path.iterdir()))["status"] == "diverged"


def test_a_corrupt_data_cache_is_rebuilt(tmp_path):
    data = tmp_path / "data"
    first = week1("prepare", "training_loop", "--out", data)
    assert first.returncode == 0, first.stderr
    ids = np.load(data / "shakespeare_chars.npy")
    (data / "shakespeare_chars.npy").write_bytes(b"\x93NUMPY garbage")
    again = week1("run", "training_loop", "--framework", "jax", "--steps=3", "--warmup_steps=0",
                  "--runs-dir", tmp_path / "runs", env={"WEEK1_DATA": str(data)})  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "cache" in again.stderr and "corrupt" in again.stderr and "rebuilding" in again.stderr
    assert np.array_equal(np.load(data / "shakespeare_chars.npy"), ids)


def hostile_cases(tmp: pathlib.Path):
    a_file = tmp / "a-file"
    a_file.write_text("x")
    run = ["run", "training_loop", "--framework", "jax"]
    return [
        (run + ["--runs-dir", a_file], {}, "is a file"),
        (run + ["--runs-dir", tmp / "r"], {"WEEK1_DATA": str(a_file)}, "data directory"),
        (run + ["--lr=inf", "--runs-dir", tmp / "r"], {}, "lr=inf: must be a finite number"),
        (run + ["--seed=-1", "--runs-dir", tmp / "r"], {}, "seed=-1"),
        (run + ["--block_size=1000000000", "--runs-dir", tmp / "r"], {}, "GiB"),
        (run + ["--steps=3", "--steps=4", "--runs-dir", tmp / "r"], {}, "given twice"),
        (run + ["--final_lr=1", "--runs-dir", tmp / "r"], {}, "final_lr=1.0"),
        (["resume", tmp], {}, "not a run folder"),
        (["bench", "training_loop", "--json", tmp], {}, "--json"),
        (["run", "nosuchlab", "--help"], {}, "unknown lab"),
    ]


def test_hostile_inputs_are_one_line_exit_2_and_leave_nothing(tmp_path):
    for args, env, words in hostile_cases(tmp_path):
        before = sorted(p.name for p in tmp_path.rglob("*"))
        done = week1(*args, env=env)
        assert done.returncode == 2, (args, done.stderr[-1500:])
        line = one_line(done.stderr)
        assert line.startswith("week1: error:") and words in line, (args, done.stderr)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before, args


def test_resume_refuses_what_it_cannot_do(tmp_path):
    done = week1("run", "profiling", "--framework", "torch", "--profile_steps=2", "--runs-dir",
                 tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_dir = next(tmp_path.iterdir())
    no_checkpoint = week1("resume", run_dir)
    assert no_checkpoint.returncode == 2 and "no checkpoint to resume from" in no_checkpoint.stderr
    other = week1("resume", run_dir, "--lr=1")
    assert other.returncode == 2 and "only --steps=N" in other.stderr


def test_run_help_lists_the_settings():
    done = week1("run", "training_loop", "--help")
    assert done.returncode == 0
    for words in ("--lr", "> 0", "peak learning rate", "--seed", "in [0, 4294967295]"):
        assert words in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("lab", ["data_parallel", "fsdp"])
def test_torchrun_labs_20_times_with_the_default_port_taken(lab, tmp_path):
    """torchrun rendezvous on a free port of its own, and every rank shuts down cleanly."""
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 29500))
        busy.listen()
        for attempt in range(20):
            done = week1("run", lab, "--framework", "torch", "--steps=4", "--runs-dir",
                         tmp_path / str(attempt))  # fmt: skip
            assert done.returncode == 0, (attempt, done.stderr[-2000:])
            assert "terminate called" not in done.stderr
            summary = json.loads(next((tmp_path / str(attempt)).glob("*/summary.json")).read_text())
            assert summary["status"] == "ok"


class _Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint would carry."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_unrun(tmp_path):
    """Even sealed (its manifest rewritten to match, as an attacker would), a torch checkpoint
    whose pickle calls os.system is refused by the weights-only loader, and nothing runs."""
    import pickle

    import torch

    from week1_torch.lib import checkpoint

    marker = tmp_path / "payload-ran"
    path = checkpoint.save_state(tmp_path, 1, {"w": torch.zeros(2)})
    torch.save({"w": torch.zeros(2), "evil": _Payload(marker)}, path)
    checkpoints.seal(path)
    assert checkpoints.check(path) is None  # the manifest matches: only the loader stands guard
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load_state(tmp_path, 1)
    assert not marker.exists()


def _main(*args, capsys) -> tuple[int, str, str]:
    """`week1 ARGS` in this process (the frameworks are imported once for the file)."""
    from week1.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _train_steps(run_dir: pathlib.Path) -> list[int]:
    return [row["step"] for row in read_metrics(run_dir) if "train_loss" in row]


def test_torch_export_and_resume_past_a_refused_checkpoint(tmp_path, capsys):
    """Issue 21 cases 1, 3, 5: export of a finished run takes its final weights and names the
    step; a checkpoint the weights-only loader refuses is skipped (export and resume fall back
    to the one before, set it aside, run nothing); `resume --steps` keeps the start settings."""
    import torch

    from week1 import hub

    runs = tmp_path / "runs"
    code, _, err = _main("run", "training_loop", "--framework", "torch", "--steps=30",
                         "--checkpoint_every=20", "--eval_every=10", "--sample_chars=10",
                         "--runs-dir", runs, capsys=capsys)  # fmt: skip
    assert code == 0, err
    (run_dir,) = runs.iterdir()
    code, out, err = _main("export", run_dir, tmp_path / "final", capsys=capsys)
    assert code == 0 and "exported step 30 of" in out, err
    assert hub.read_config(tmp_path / "final")[1]["week1"]["step"] == 30

    marker = tmp_path / "payload-ran"
    newest = run_dir / "checkpoints" / "step_00000030.pt"
    torch.save({"model": {}, "evil": _Payload(marker)}, newest)
    checkpoints.seal(newest)  # a forged manifest: only the loader stands guard
    code, out, err = _main("export", run_dir, tmp_path / "fallback", capsys=capsys)
    assert code == 0, err
    assert "checkpoint of step 30 is not usable (refused by the loader: UnpicklingError" in err
    assert "set aside as step_00000030.pt.broken" in err and not marker.exists()
    assert "exported step 20 " in out and "the run reached step 30" in " ".join(out.split())

    code, out, err = _main("resume", run_dir, "--steps=40", capsys=capsys)
    assert code == 0, err
    assert "from step 20" in out and not marker.exists()
    assert (run_dir / "checkpoints" / "step_00000030.pt.broken").exists()
    assert read_summary(run_dir)["status"] == "ok"
    assert _train_steps(run_dir) == list(range(1, 41)), "each step once, the resumed ones anew"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["steps"] == 30 and saved["framework"] == "torch"
    assert [(r["from_step"], r["changed"]) for r in saved["resumes"]] == [(20, {"steps": [30, 40]})]
    code, out, err = _main("export", run_dir, tmp_path / "resumed", capsys=capsys)
    assert code == 0 and "exported step 40 of" in out, err
    card = (tmp_path / "resumed" / "README.md").read_text()
    assert "week1 run training_loop --framework torch --steps=30 --warmup_steps=30" in card
    assert f"week1 resume runs/{run_dir.name} --steps=40" in card


def test_jax_export_then_a_corrupt_newest_checkpoint_is_set_aside(tmp_path, capsys):
    """Issue 21 cases 1, 2 and issue 20's old folders: a 20-step JAX run exports (it had no
    checkpoint: FileNotFoundError); a truncated newest orbax step no longer blocks the resume
    with StepAlreadyExistsError; a folder in the old config.json layout resumes."""
    from week1 import hub

    runs = tmp_path / "runs"
    code, _, err = _main("run", "training_loop", "--framework", "jax", "--steps=20",
                         "--eval_every=10", "--sample_chars=10", "--runs-dir", runs,
                         capsys=capsys)  # fmt: skip
    assert code == 0, err
    (run_dir,) = runs.iterdir()
    code, out, err = _main("export", run_dir, tmp_path / "final", capsys=capsys)
    assert code == 0 and "exported step 20 of" in out, err
    assert hub.read_config(tmp_path / "final")[1]["week1"]["step"] == 20
    code, _, err = _main("resume", run_dir, "--steps=30", capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir()) == ["20", "30"]

    victim = max((p for p in (run_dir / "checkpoints" / "30").rglob("*") if p.is_file()),
                 key=lambda p: p.stat().st_size)  # fmt: skip
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    saved = json.loads((run_dir / "config.json").read_text())  # as week1 wrote it before
    old = {"lab": "training_loop", "framework": "jax", "config": {**saved["config"], "steps": 30}}
    (run_dir / "config.json").write_text(json.dumps(old))
    code, _, err = _main("resume", run_dir, capsys=capsys)  # it failed so at every retry
    assert code == 0, err
    assert "checkpoint of step 30 is not usable (checksum mismatch" in err
    assert "set aside as 30.broken" in err
    code, _, err = _main("resume", run_dir, "--steps=40", capsys=capsys)
    assert code == 0, err
    assert (run_dir / "checkpoints" / "30.broken").is_dir()
    assert read_summary(run_dir)["status"] == "ok"
    assert _train_steps(run_dir) == list(range(1, 41))
