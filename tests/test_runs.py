"""Run folders: a stable path from the start, a status that says how the run ended; bad input
leaves nothing; failures and interruptions keep the folder."""

import contextlib
import json
import os
import signal

import pytest

from week1.charlm import Config
from week1.config import UsageError, as_dict
from week1.runs import (
    Diverged,
    Interrupted,
    Run,
    exit_code,
    read_config,
    read_metrics,
    read_summary,
)


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
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    with (
        pytest.raises(Interrupted),
        Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run,
    ):
        os.kill(os.getpid(), signal.SIGINT)
    assert read_summary(run.dir)["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


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


def test_resume_keeps_the_start_settings_and_records_each_resume(tmp_path):
    """Issue 21 case 5: `resume --steps=N` rewrote config.json as if the run had started with N."""
    with Run("lab", "jax", Config(steps=5), root=tmp_path, tensorboard=False) as run:
        run.log(5, loss=1.0)
    with Run.reopen(run.dir, Config(steps=9), from_step=5, tensorboard=False) as again:
        again.log(6, loss=1.0)
    with Run.reopen(run.dir, Config(steps=12), from_step=9, tensorboard=False) as again:
        again.log(10, loss=1.0)
    saved = json.loads((run.dir / "config.json").read_text())
    assert saved["config"]["steps"] == 5
    assert [(r["from_step"], r["changed"]) for r in saved["resumes"]] == [
        (5, {"steps": [5, 9]}),
        (9, {"steps": [9, 12]}),
    ]
    assert all(r["at"] for r in saved["resumes"])
    now = read_config(run.dir)
    assert now.config == as_dict(Config(steps=12)) and now.started_with["steps"] == 5


def test_a_resume_that_restores_an_earlier_step_does_not_duplicate_metrics(tmp_path):
    """The command line reopens at the newest checkpoint by its manifest; the lab may fall back
    further (a refused file): the rows from its first logged step on are replaced."""
    with Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run:
        for step in range(1, 7):
            run.log(step, loss=float(step))
    with Run.reopen(run.dir, Config(), from_step=6, tensorboard=False) as again:
        for step in range(4, 8):
            again.log(step, loss=10.0 * step)
    assert [(r["step"], r["loss"]) for r in read_metrics(run.dir)] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0), (7, 70.0)
    ]  # fmt: skip


def test_old_run_folders_read_as_framework_and_compile(tmp_path):
    """config.json before issue 20: framework "torch-compile", no compile field, no resumes."""
    for framework, want in [("torch-compile", ("torch", True)), ("jax", ("jax", False))]:
        folder = tmp_path / framework
        folder.mkdir()
        old = {"lab": "training_loop", "framework": framework, "config": as_dict(Config())}
        (folder / "config.json").write_text(json.dumps(old))
        saved = read_config(folder)
        assert (saved.framework, saved.compile) == want
        assert saved.config == as_dict(Config()) and saved.resumes == []


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"bare {constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    """Issue 21 case 6: an interrupted run's summary.json held a bare NaN."""
    with Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run:
        run.log(1, loss=float("nan"))
        run.close("interrupted", {"final_val_loss": float("nan"), "best": float("inf")})
    summary = _strict((run.dir / "summary.json").read_text())
    assert summary["final_val_loss"] is None and summary["best"] is None
    assert _strict((run.dir / "metrics.jsonl").read_text())["loss"] is None


def test_a_signal_while_the_folder_is_set_up_ends_it_interrupted(tmp_path, monkeypatch):
    """Issue 21 case 6: SIGINT about a second after start (TensorBoard's import) left the folder
    saying "running" for good."""
    import tensorboard.summary

    def interrupted_import(*args, **kwargs):
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(tensorboard.summary, "Writer", interrupted_import)
    with pytest.raises(Interrupted):
        Run("lab", "jax", Config(), root=tmp_path)
    (folder,) = tmp_path.iterdir()
    assert read_summary(folder) == {"status": "interrupted", "step": 0, "signal": "SIGINT"}


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
