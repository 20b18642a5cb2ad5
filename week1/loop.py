"""The training loop's cadence, written once for both frameworks.

Every lab that trains runs the same loop: take a step, now and then read the losses off the
device, evaluate, checkpoint, log, and stop cleanly when asked. What differs between the
frameworks (how a step runs, how a loss is read, how a checkpoint is written) comes in as
functions; each framework's library wraps this in its one training loop
(week1_jax/lib/train.py, week1_torch/lib/train.py), and the labs plug their model, loss and
batches into that. word2vec's sparse updates drive it from lib/embeddings.py.

    for step in start+1 .. end:                      steps count from 1
        loss = step(i)                               stays on the device
        END instead of a loss -> the stream ran out  (word2vec: its length is subsampled)
            step i-1 ends the run as a last step does; `end` was an estimate
        every log_every steps, and before anything that needs the numbers:
            read the pending losses in one transfer  (float(loss) per step drains a GPU queue)
            a non-finite one -> Diverged(first such step); no checkpoint past it
            evaluate (every eval_every, and the last step), checkpoint (every
            checkpoint_every, the last step, and where a stop is asked)
        a stop asked (SIGINT/SIGTERM through the run) -> checkpoint this step, return

What the caller decides (where checkpoints go, resume, logging, stop requests, torch.compile)
is a `Context`, not a pile of train() parameters: a lab's `run` makes one from its Run,
`week1 compare` and the tests make their own.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pathlib
import time
from collections.abc import Callable

import numpy as np

from week1.report import progress
from week1.runs import Diverged

LOG_EVERY = 50  # steps between reads of the losses from the device
END = object()  # what step(i) returns where an open-ended stream has no step i


@dataclasses.dataclass(frozen=True)
class Context:
    """What a training run is given from outside the lab.

    checkpoint_dir: where checkpoints go (None: none are written).
    resume: continue from the newest intact checkpoint in checkpoint_dir.
    log: log(step, **metrics), the run's metrics.jsonl and TensorBoard.
    should_stop: () -> bool, asked after every step (a signal arrived).
    stop_at: stop (and checkpoint) after this step, before the schedule's end.
    compile: torch only: run the step through torch.compile (JAX always jits).
    show_progress: a progress bar.
    turn: (step) -> None, called between read windows with the last step taken, before the
      next window's clock starts; it may block while other runs take their turns
      (`week1 compare` times its runs of a case interleaved this way).
    """

    checkpoint_dir: pathlib.Path | None = None
    resume: bool = False
    log: Callable | None = None
    should_stop: Callable[[], bool] | None = None
    stop_at: int | None = None
    compile: bool = False
    show_progress: bool = False
    turn: Callable[[int], None] | None = None

    @classmethod
    def of_run(cls, run, compile: bool = False) -> Context:
        """A `week1 run` (or resume): the run folder's checkpoints, metrics and signals."""
        return cls(
            checkpoint_dir=run.checkpoint_dir,
            resume=run.resume,
            log=run.log,
            should_stop=run.should_stop,
            compile=compile,
            show_progress=True,
        )

    def part(self, name: str, *, checkpoints: bool = False) -> Context:
        """The context of `name`, one of several trainings in one run (an ablation's arms, a
        lab's precisions or methods): its metrics logged as "name/metric", and checkpoints only
        when asked (the trainings would share the run's folder)."""
        log = self.log
        if log is not None:

            def log(step, **metrics):
                self.log(step, **{f"{name}/{k}": v for k, v in metrics.items()})

        kept = {} if checkpoints else {"checkpoint_dir": None, "resume": False}
        return dataclasses.replace(self, log=log, **kept)

    def stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()


BARE = Context()  # no checkpoints, logging, signals or compile: what tests and compares start from


@dataclasses.dataclass(frozen=True)
class Cadence:
    """When to do what; steps count from 1 and `steps` is the schedule's last (open_ended: an
    estimate, for the progress bar only; the stream ends where a step returns END)."""

    steps: int
    eval_every: int = 0  # 0: evaluate after the last step only
    checkpoint_every: int = 0  # 0: checkpoint the last step only (and where a stop is asked)
    log_every: int = LOG_EVERY
    open_ended: bool = False

    @classmethod
    def of(cls, cfg, **changes) -> Cadence:
        """From a lab Config's `steps`, `eval_every` and `checkpoint_every` (those it has)."""
        fields = {f: getattr(cfg, f) for f in ("steps", "eval_every", "checkpoint_every")}
        return cls(**{k: v for k, v in fields.items() if v is not None}, **changes)

    def is_last(self, step: int) -> bool:
        return step == self.steps and not self.open_ended

    def is_eval_step(self, step: int) -> bool:
        return self.is_last(step) or (self.eval_every > 0 and step % self.eval_every == 0)

    def is_checkpoint_step(self, step: int) -> bool:
        every = self.checkpoint_every
        return self.is_last(step) or (every > 0 and step % every == 0)


@dataclasses.dataclass
class History:
    """What a training run measured; both frameworks fill it the same way.

    evals maps a metric name ("val_loss", "val_acc", ...) to its value at each of eval_steps;
    per_step holds other per-step numbers a step returns beside its loss (a gradient norm).
    """

    steps: list = dataclasses.field(default_factory=list)  # step of each train loss
    train_loss: list = dataclasses.field(default_factory=list)
    eval_steps: list = dataclasses.field(default_factory=list)
    evals: dict = dataclasses.field(default_factory=dict)
    per_step: dict = dataclasses.field(default_factory=dict)
    first_step_s: float = 0.0  # the first step: compilation (jit, torch.compile) plus one step
    timed_s: float = 0.0  # the steps after it (evaluation and checkpoints excluded)
    step_s: list = dataclasses.field(default_factory=list)  # each of those steps' seconds

    def add_train(self, step: int, loss: float, seconds: float, log=None, **extra) -> None:
        if self.steps:
            self.timed_s += seconds
            self.step_s.append(seconds)
        else:
            self.first_step_s = seconds
        self.steps.append(step)
        self.train_loss.append(loss)
        for name, value in extra.items():
            self.per_step.setdefault(name, []).append(value)
        if log:
            log(step, train_loss=loss, **extra)

    def add_eval(self, step: int, log=None, **metrics: float) -> None:
        self.eval_steps.append(step)
        for name, value in metrics.items():
            self.evals.setdefault(name, []).append(value)
        if log:
            log(step, **metrics)

    @property
    def val_steps(self) -> list:
        return self.eval_steps

    @property
    def val_loss(self) -> list:
        return self.evals.get("val_loss", [])

    @property
    def steps_per_s(self) -> float:
        """Steady-state speed: 1 / the fastest read window's step time, after the first step.

        A step's time is its read window's mean (the loop reads the losses every log_every
        steps and times the window). Other work on the machine only ever adds time, so the
        window least disturbed by it is the closest to what the run itself costs (as
        labs/model_parallel.fastest). A median is not enough on a shared machine: this 2-core
        VM slowed a 1 ms compiled step by 1.3-1.5x for 0.3-2 s at a time, over half of a short
        run's windows (grad_accumulation's compare read compile/JAX from 0.41 to 0.79 with
        the median of its 12 windows).
        """
        if self.step_s:
            return 1.0 / float(np.min(self.step_s))
        # a History saved before step_s existed (an older run folder's): the plain mean
        return (len(self.steps) - 1) / self.timed_s if self.timed_s > 0 else 0.0

    def summary(self) -> dict:
        finals = {f"final_{name}": values[-1] for name, values in self.evals.items() if values}
        return {
            "final_train_loss": self.train_loss[-1] if self.train_loss else None,
            **finals,
            "first_step_s": self.first_step_s,
            "steps_per_s": self.steps_per_s,
        }


def non_finite_what(weights: dict[str, np.ndarray]) -> str:
    """What a Diverged error names: the loss, and the first parameter (in the map's order) that
    holds a NaN or Inf, if one already does."""
    bad = next((name for name, w in weights.items() if not np.all(np.isfinite(w))), None)
    return "loss" if bad is None else f"loss (first non-finite parameter: {bad})"


def drive(
    cadence: Cadence,
    ctx: Context,
    *,
    start: int,
    step: Callable,
    read: Callable,
    evaluate: Callable | None = None,
    save: Callable | None = None,
    settle: Callable | None = None,
    weights: Callable | None = None,
    label: str = "",
    history: History | None = None,
) -> History:
    """Run steps start+1 .. end (cadence.steps, or ctx.stop_at) and return the History.

    step(i) -> the loss of step i on the device, or a dict {"loss": ..., other scalars}; or END
      where the stream has no step i (cadence.open_ended: its length is not known up front):
      step i-1 was the last, read, evaluated and checkpointed as a last step is.
    read(values) -> the same values as Python floats, in one transfer from the device.
    evaluate() -> {metric: value}, at cadence.is_eval_step steps.
    save(i): write a checkpoint of step i (cadence.is_checkpoint_step, the end, a stop).
    settle(): make the model objects see the latest step's state before they are read
      (JAX's functional state; torch has nothing to do).
    weights() -> {name: numpy array}, for naming a non-finite parameter in Diverged.
    """
    history = History() if history is None else history
    end = cadence.steps if ctx.stop_at is None else ctx.stop_at
    total = max(end - start, 0)
    if cadence.open_ended and ctx.stop_at is None:
        end = math.inf  # cadence.steps was an estimate: the progress bar's total
    steps = range(start + 1, end + 1) if end < math.inf else itertools.count(start + 1)
    pending, since = [], time.perf_counter()  # [(step, value on the device)] not read yet
    with progress(label, total, ctx.show_progress, estimated=cadence.open_ended) as advance:
        for i in steps:
            value = step(i)
            ran_out = value is END
            if ran_out:
                i -= 1  # the stream has no step i + 1: step i was its last
                if i == start:
                    break
                # what a last step does, less what step i's own cadence already did
                stopping = True
                evaluating = evaluate is not None and not cadence.is_eval_step(i)
                saving = save is not None and not cadence.is_checkpoint_step(i)
            else:
                pending.append((i, value))
                stopping = ctx.stop_requested()
                last = i == end
                saving = save is not None and (stopping or last or cadence.is_checkpoint_step(i))
                evaluating = evaluate is not None and cadence.is_eval_step(i)
                reading = i == start + 1 or last or len(pending) >= cadence.log_every
                if not (saving or evaluating or stopping or reading):
                    advance()
                    continue
            if settle is not None:
                settle()
            if pending:
                values = read([value for _, value in pending])
                seconds = (time.perf_counter() - since) / len(pending)
                for (at, _), value in zip(pending, values, strict=True):
                    extra = value if isinstance(value, dict) else {"loss": value}
                    loss = extra.pop("loss")
                    if not math.isfinite(loss):
                        raise Diverged(at, non_finite_what(weights()) if weights else "loss")
                    history.add_train(at, loss, seconds, ctx.log, **extra)
                pending = []
            if evaluating:
                history.add_eval(i, ctx.log, **evaluate())
            if saving:
                save(i)
            if not ran_out:  # else step i advanced the bar when it ran
                advance(history.train_loss[-1])
            if stopping:
                break
            if ctx.turn is not None:
                ctx.turn(i)
            since = time.perf_counter()  # evaluation and checkpoints are not training time
    return history
