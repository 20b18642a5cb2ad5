"""Run folders: a stable path from the start, a status that says how the run ended; bad input
leaves nothing; failures and interruptions keep the folder."""

import contextlib
import json
import os
import signal

import pytest

from week1.charlm import Config
from week1.config import UsageError
from week1.runs import Diverged, Interrupted, Run, exit_code, read_metrics, read_summary


def test_folder_keeps_its_name_and_says_running_until_closed(tmp_path):
    with Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run:
        run.log(1, loss=2.0)
        assert [p.name for p in tmp_path.iterdir()] == [run.dir.name]
        assert read_summary(run.dir)["status"] == "running"
        checkpoint = run.path("checkpoints")
    assert checkpoint.parent == run.dir and run.dir.exists()
    assert read_metrics(run.dir) == [{"step": 1, "loss": 2.0}]
    assert read_summary(run.dir) == {"status": "ok", "step": 1}


def test_usage_error_leaves_no_folder(tmp_path):
    with pytest.raises(UsageError), Run("lab", "jax", Config(), root=tmp_path, tensorboard=False):
        raise UsageError("bad")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_folder_with_status_error_and_traceback(tmp_path):
    with (
        pytest.raises(FloatingPointError),
        Run("lab", "torch", Config(), root=tmp_path, tensorboard=False) as run,
    ):
        raise FloatingPointError("loss is nan at step 7\nsecond line")
    summary = read_summary(run.dir)
    assert summary["status"] == "failed" and exit_code("failed") == 1
    assert summary["error"] == "FloatingPointError: loss is nan at step 7"
    assert "Traceback" in (run.dir / "error.log").read_text()


def test_divergence_is_its_own_status(tmp_path):
    with (
        pytest.raises(Diverged),
        Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run,
    ):
        run.log(4, loss=1.0)
        raise Diverged(5, "gradient fc1.kernel")
    summary = read_summary(run.dir)
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 5
    assert "gradient fc1.kernel" in summary["error"] and exit_code("diverged") == 3


def test_a_cooperative_run_stops_at_the_step_boundary(tmp_path):
    with Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run:
        assert not run.should_stop()  # the lab says it checks
        os.kill(os.getpid(), signal.SIGTERM)  # handled: only sets the flag
        assert run.should_stop()
        run.log(3, loss=1.0)
    assert read_summary(run.dir) == {"status": "interrupted", "step": 3, "signal": "SIGTERM"}
    assert exit_code("interrupted", signal.SIGTERM) == 143


def test_a_lab_that_never_asks_is_stopped_at_once(tmp_path):
    with (
        pytest.raises(Interrupted),
        Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run,
    ):
        os.kill(os.getpid(), signal.SIGINT)
    assert read_summary(run.dir)["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_a_bad_runs_directory_is_a_usage_error(tmp_path, kind):
    root = tmp_path / "runs"
    if kind == "file":
        root.write_text("not a folder")
    else:
        root.mkdir(mode=0o500)
    if kind == "unwritable" and os.access(root, os.W_OK):
        pytest.skip("running as a user who can write anywhere (root)")
    with pytest.raises(UsageError, match="runs directory"):
        Run("lab", "jax", Config(), root=root, tensorboard=False)


def test_reopen_drops_metrics_past_the_checkpoint(tmp_path):
    with Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run:
        for step in range(1, 6):
            run.log(step, loss=float(step))
    reopened = Run.reopen(run.dir, Config(steps=9), from_step=3, tensorboard=False)
    with reopened:
        reopened.log(4, loss=40.0)
    assert [r["step"] for r in read_metrics(run.dir)] == [1, 2, 3, 4]
    assert json.loads((run.dir / "config.json").read_text())["config"]["steps"] == 9


@pytest.fixture
def early_signals():
    """The command line's handlers, as `week1` runs inside them."""
    from week1 import runs

    with runs.stop_signals_remembered():
        yield runs


def test_a_ctrl_c_python_swallowed_before_the_run_still_stops_it(early_signals, tmp_path, capsys):
    """SIGINT during imports can land in a garbage-collection callback (JAX has one), where
    Python prints "Exception ignored" and drops the KeyboardInterrupt: the signal is remembered,
    the next run ends at once as interrupted, and nothing is printed about the lost exception."""
    import sys
    import types

    try:  # what Python does with an exception raised inside a gc callback
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    except Interrupted as swallowed:
        lost = dict(exc_type=Interrupted, exc_traceback=None, err_msg=None, object=None)
        sys.unraisablehook(types.SimpleNamespace(exc_value=swallowed, **lost))
    assert capsys.readouterr().err == ""
    run = Run("lab", "jax", Config(), root=tmp_path, tensorboard=False)
    with pytest.raises(Interrupted), run:
        raise AssertionError("the lab must not start")
    assert read_summary(run.dir) == {"status": "interrupted", "step": 0, "signal": "SIGINT"}
    assert early_signals._pending_signal is None  # used up: the next run starts


def test_the_command_line_gives_the_handlers_back():
    import sys

    from week1.cli import main

    before = signal.getsignal(signal.SIGINT), sys.unraisablehook
    assert main(["list"]) == 0
    assert (signal.getsignal(signal.SIGINT), sys.unraisablehook) == before


def test_a_lab_that_ran_to_the_end_despite_a_lost_signal_is_ok(tmp_path):
    """A non-cooperative lab whose Interrupted was swallowed by a callback finished its work:
    its status says ok, not interrupted."""
    with Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run:
        with contextlib.suppress(Interrupted):  # swallowed, as inside a callback
            run._on_signal(signal.SIGINT, None)
        run.log(1, loss=1.0)
    assert read_summary(run.dir)["status"] == "ok"
