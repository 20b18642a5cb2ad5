"""`week1 compare`'s runs in their own processes, taking turns (week1/commands/interleave.py):
the turns alternate, the curves are those of one run in this process, and a worker's error
reaches the caller with its type while every worker ends."""

import multiprocessing
import pathlib

import pytest

from labs import training_loop as spec
from week1 import loop
from week1.commands.interleave import Interleaved
from week1.config import override
from week1.runs import Diverged

RUNS = {"eager": ("torch", False), "jax": ("jax", False)}


def _cfg(*settings):
    return override(spec.Config(**spec.COMPARE_TEST), list(settings))


def test_the_runs_take_turns_and_train_as_they_would_alone():
    """A turn at every read window (turn_s=0): eager, JAX, eager, JAX, ... and each run's
    losses equal the same run made here, outside the workers."""
    from week1_torch import training_loop as torch_lab

    cfg = _cfg("--steps=120")
    with Interleaved("training_loop", cfg, RUNS, turn_s=0) as workers:
        curves = workers.case("lm")
    names = [name for name, _ in workers.turns]
    # a window ends at step 1, at every evaluation (10, 20, ...) and every 50 steps
    assert len(names) >= 8 and names == ["eager", "jax"] * (len(names) // 2), workers.turns
    assert workers.turns[-2:] == [("eager", "done"), ("jax", "done")]
    eager_steps = [step for name, step in workers.turns[:-2] if name == "eager"]
    assert eager_steps[0] == 1 and eager_steps == sorted(eager_steps)
    alone = torch_lab.compare_run(cfg, "lm", torch_lab.start_weights(cfg, "lm"), loop.BARE)
    assert curves["eager"].train_loss == alone.train_loss
    assert curves["jax"].steps == alone.steps
    assert not multiprocessing.active_children()


def test_an_error_in_a_run_reaches_the_caller_and_every_worker_ends():
    cfg = _cfg("--lr=1e12")
    with (
        pytest.raises(Diverged, match="non-finite") as raised,
        Interleaved("training_loop", cfg, RUNS) as workers,
    ):
        workers.case("lm")
    assert raised.value.step >= 1 and "in the compare worker" in "".join(raised.value.__notes__)
    assert not multiprocessing.active_children()


def test_process_0_of_a_run_s_workers_takes_its_turns_through_the_relay():
    """A run whose steps happen in worker processes (torchrun's ranks, JAX's processes on a CPU)
    relays its turns to process 0 (week1.parallel.turns_relayed): each step process 0 hands over
    reaches the run's turn, in order, and process 0 goes on only once it returns; other ranks
    and processes outside a compare take no turns."""
    import os
    import subprocess
    import sys

    from week1.parallel import relayed_turn, turns_relayed

    script = ("from week1.parallel import relayed_turn\n"
              "turn = relayed_turn()\n"
              "print(turn is None)\n"
              "for step in (50, 100, 150):\n"
              "    turn(step) if turn else None\n")  # fmt: skip
    taken = []
    with turns_relayed(taken.append) as env:
        assert set(env) == {"WEEK1_TURNS", "WEEK1_TURNS_KEY"}
        first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               env={**os.environ, **env}, timeout=60)  # fmt: skip
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               env={**os.environ, **env, "RANK": "1"}, timeout=60)  # fmt: skip
    assert (first.returncode, first.stdout) == (0, "False\n"), first.stderr
    assert (other.returncode, other.stdout) == (0, "True\n"), other.stderr
    assert taken == [50, 100, 150]
    assert "WEEK1_TURNS" not in os.environ and relayed_turn() is None
    with turns_relayed(None) as env:  # a run that takes no turns
        assert env == {}


@pytest.mark.parametrize("handled", [True, False])
def test_a_terminated_worker_ends_the_processes_it_started(handled):
    """The parent ends a worker mid-case with terminate() (SIGTERM). With end_on_sigterm the
    worker unwinds and its clean-ups kill what it started (JAX's compare processes, which
    ignore SIGINT and survive SIGTERM); without it Python ends at once and they live on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = ("import contextlib, subprocess, sys\n"
              "from week1.commands.interleave import end_on_sigterm\n"
              f"end_on_sigterm() if {handled} else None\n"
              "with contextlib.ExitStack() as stack:\n"
              "    child = subprocess.Popen([sys.executable, '-c', 'import time;time.sleep(60)'])\n"
              "    stack.callback(child.kill)\n"
              "    print(child.pid, flush=True)\n"
              "    child.wait()\n")  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(worker.stdout.readline())
    worker.terminate()
    assert worker.wait(timeout=30) == (128 + signal.SIGTERM if handled else -signal.SIGTERM)
    time.sleep(0.5)
    state = pathlib.Path(f"/proc/{child}/stat")
    alive = state.exists() and state.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    if alive:
        os.kill(child, signal.SIGKILL)
    assert alive is not handled
