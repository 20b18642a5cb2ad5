"""week1/loop.py's drive on an open-ended stream: it ends where a step returns END, the last
real step read, evaluated and checkpointed once; a non-finite loss mid-stream is Diverged."""

import math

import pytest

from week1 import loop
from week1.runs import Diverged


def drive_stream(losses: list[float], saved: list, **cadence) -> loop.History:
    """drive over a stream of `losses` (steps 1..len), the steps checkpointed put in `saved`."""

    def step(i: int):
        return losses[i - 1] if i <= len(losses) else loop.END

    history = loop.drive(
        loop.Cadence(steps=3, open_ended=True, **cadence),  # 3: an estimate, below the real end
        loop.BARE,
        start=0,
        step=step,
        read=lambda values: [float(v) for v in values],
        evaluate=lambda: {"val_loss": 0.0},
        save=saved.append,
    )
    return history


@pytest.mark.parametrize("length, evals", [(7, [5, 7]), (10, [5, 10])])
def test_an_exhausted_stream_ends_at_its_last_step_evaluated_and_saved_once(length, evals):
    saved = []
    history = drive_stream([1.0] * length, saved, eval_every=5, checkpoint_every=5, log_every=3)
    assert history.steps == list(range(1, length + 1))
    assert history.eval_steps == evals and saved == evals


def test_an_empty_stream_runs_nothing():
    saved = []
    history = drive_stream([], saved, eval_every=5)
    assert history.steps == [] and history.eval_steps == [] and saved == []


def test_a_nan_mid_stream_is_diverged_at_its_step_with_no_checkpoint_past_it():
    saved = []
    with pytest.raises(Diverged) as raised:
        drive_stream([1.0] * 5 + [math.nan] + [1.0] * 5, saved, checkpoint_every=2, log_every=4)
    assert raised.value.step == 6 and saved == [2, 4]


def test_steps_per_s_is_the_fastest_window_so_a_slowdown_over_half_the_run_does_not_move_it():
    """Four read windows of 10 steps: two at 1 ms a step, one slowed to 1.5 ms (the machine
    busy elsewhere), one with a 50 ms pause. The fastest window says 1 ms (1000 steps/s); the
    median would say 1.25 ms, the plain mean 1 / 2 ms."""
    history = loop.History()
    history.add_train(1, 1.0, 5.0)  # the first step: compilation, never timed
    windows = [0.015, 0.010, 0.060, 0.010]  # seconds for each window of 10 steps
    step = 1
    for seconds in windows:
        for _ in range(10):
            step += 1
            history.add_train(step, 1.0, seconds / 10)
    assert history.steps_per_s == pytest.approx(1000.0)
    assert (len(history.steps) - 1) / history.timed_s == pytest.approx(40 / sum(windows))


def test_steps_per_s_of_a_run_with_no_timed_step_is_zero():
    history = loop.History()
    history.add_train(1, 1.0, 5.0)
    assert history.steps_per_s == 0.0


def test_a_history_saved_before_step_s_still_has_its_mean_speed():
    """An older run folder's History (no step_s, as rnn and regularization reload them)."""
    saved = {
        "steps": [1, 2, 3],
        "train_loss": [3.0, 2.0, 1.0],
        "first_step_s": 5.0,
        "timed_s": 0.02,
    }
    assert loop.History(**saved).steps_per_s == pytest.approx(100.0)
