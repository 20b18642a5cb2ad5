"""Lab: training stability, monitoring and debugging.

What it teaches
---------------
What to watch while a model trains, and how to stop cleanly when it breaks:

- Gradient norms, global and per layer: ||g|| = sqrt(sum_i g_i^2). A global
  norm that climbs by orders of magnitude comes before a divergence; one layer
  whose norm is far from the others points at the culprit.
- Update/parameter ratio per layer, ||theta_t - theta_{t-1}|| / ||theta_{t-1}||:
  around 1e-3 is healthy for Adam-style optimizers; 1e-1 means the layer is
  being rewritten every step, 1e-5 that it has stopped learning.
- Gradient clipping by global norm: if ||g|| > c, every gradient is scaled by
  c / ||g|| (the direction is kept). `optax.clip_by_global_norm` and
  `torch.nn.utils.clip_grad_norm_` compute the same thing.
- A NaN or Inf in the loss or in any gradient stops the run with a message
  naming the step and the first non-finite tensor. The checks run inside the
  step, on the device, and come back with the loss (every LOG_EVERY steps, and
  before every evaluation and checkpoint: no host sync per step); the loop stops
  at the bad step before it is logged and before anything after it is
  checkpointed, so the last checkpoint, written at a good step, stays as it
  was and is what a resume or an export sees. A loss spike (loss > spike_factor
  x its running mean) stops the run too.

Everything is logged per step to metrics.jsonl and TensorBoard
(`tensorboard --logdir runs/`): train_loss, grad_norm, grad_norm/<layer>,
update_ratio/<layer>, clipped (1 when clipping acted).

How to read the results
-----------------------
- `week1 run monitoring --framework jax --nan_step=120` injects a NaN into
  each gradient of layer `nan_layer` at step 120: the run stops with
  "step 120: non-finite gradient fc1.bias; stopped before the update (last
  good checkpoint: step 100)" (torch names fc1.weight, the first of fc1's
  tensors in its parameter order), the run folder keeps that checkpoint, and
  summary.json says why it stopped.
- Parity: clipped gradients, global and per-layer norms are the same in both
  frameworks (F32 tier).
- `week1 compare monitoring` trains the watched, clipped loop in both frameworks from
  torch's start on the same batches: the curves overlap to float32 rounding; steps/s
  include the watching (norms, ratios, finiteness checks, read with the loss).

Run it:  week1 run monitoring --framework jax   (or torch)
         week1 compare monitoring

History: docs/history.md#pascanu-2013
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

from week1 import charlm, checkpoints, loop
from week1.comparison import Case
from week1.config import require
from week1.exercises import Exercise, Part
from week1.runs import Diverged
from week1.tolerances import TRAJECTORY

LAYERS = ("wte", "fc1", "ln", "head")  # the CharMLP's layers, in forward order


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    steps: int = 300
    eval_every: int = 100
    checkpoint_every: int = 50
    clip_norm: float = 1.0  # clip the global gradient norm to this (0: no clipping)
    spike_factor: float = 3.0  # stop when loss > spike_factor * running mean (0: off)
    spike_warmup: int = 20  # steps of running mean before spikes are judged
    nan_step: int = 0  # inject a NaN into one gradient at this step (0: never)
    nan_layer: str = "fc1"  # the layer whose gradients get it

    def check(self) -> None:
        super().check()
        require(self.clip_norm >= 0, f"clip_norm={self.clip_norm}: must be >= 0 (0: off)")
        require(
            self.spike_factor == 0 or self.spike_factor > 1,
            f"spike_factor={self.spike_factor}: must be > 1 (0: off)",
        )
        require(self.spike_warmup >= 1, f"spike_warmup={self.spike_warmup}: must be >= 1")
        require(
            0 <= self.nan_step <= self.steps,
            f"nan_step={self.nan_step}: must be in [0, steps={self.steps}]",
        )
        require(
            self.nan_layer in LAYERS, f"nan_layer={self.nan_layer!r}: allowed: {', '.join(LAYERS)}"
        )


def layer_of(name: str) -> str:
    """'fc1.kernel' / 'fc1.weight' -> 'fc1'."""
    return name.split(".")[0]


def forward_order(names) -> list[str]:
    """Parameter names sorted by their layer's place in the forward pass (stable within a layer)."""
    return sorted(names, key=lambda name: LAYERS.index(layer_of(name)))


class TrainingStopped(Diverged):
    """The run stopped itself: a non-finite tensor or a loss spike at `step`. A Diverged: the run
    ends with status "diverged" and exit status 3, this message in its summary."""

    def __init__(self, step: int, reason: str, last_checkpoint: int | None):
        kept = (
            f"last good checkpoint: step {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint yet"
        )
        RuntimeError.__init__(self, f"step {step}: {reason}; stopped before the update ({kept})")
        self.step, self.what, self.reason = step, reason, reason
        self.last_checkpoint = last_checkpoint


class SpikeDetector:
    """Loss-spike test against an exponential running mean of the loss.

    mean_t = beta mean_{t-1} + (1 - beta) loss_t (bias-corrected like Adam's
    moments); step t is a spike if, after `warmup` steps, loss_t > factor * mean_{t-1}.
    """

    def __init__(self, factor: float, warmup: int, beta: float = 0.9):
        self.factor, self.warmup, self.beta = factor, warmup, beta
        self.ema, self.seen = 0.0, 0

    @property
    def mean(self) -> float:
        return self.ema / (1 - self.beta**self.seen) if self.seen else math.nan

    def check(self, loss: float) -> str | None:
        """The reason to stop, or None; then fold `loss` into the running mean."""
        if self.factor and self.seen >= self.warmup and loss > self.factor * self.mean:
            ratio = loss / self.mean
            return f"loss spike: {loss:.4g} is {ratio:.1f}x the running mean {self.mean:.4g}"
        self.ema = self.beta * self.ema + (1 - self.beta) * loss
        self.seen += 1
        return None


def what_non_finite(index: int, names) -> str:
    """What a step's `first_non_finite` number names: 0 the loss, i the (i-1)-th of `names`
    (the gradients in forward order)."""
    return "loss" if index == 0 else f"gradient {names[index - 1]}"


@dataclasses.dataclass
class WatchedHistory(loop.History):
    """The History of a watched run, which judges every step as the loop reads it (in step
    order, before the step is logged and before anything after it is evaluated or
    checkpointed): a non-finite loss or gradient, or a loss spike, raises TrainingStopped, so
    the run's newest checkpoint is the last good one.

    Each step returns, beside its loss, `finite` (1: the loss and every gradient are finite),
    `first_non_finite` (see what_non_finite) and the numbers logged: grad_norm, clipped,
    grad_norm/<layer>, update_ratio/<layer>.
    """

    names: tuple = ()  # the gradients in forward order
    spikes: SpikeDetector | None = None
    framework: str = "jax"  # whose checkpoint folder layout `checkpoint_dir` has
    checkpoint_dir: pathlib.Path | None = None

    def last_checkpoint(self) -> int | None:
        if self.checkpoint_dir is None:
            return None
        found = checkpoints.candidates_in(self.framework, self.checkpoint_dir)
        return checkpoints.latest_intact_quietly(found)

    def add_train(self, step, loss, seconds, log=None, *, finite, first_non_finite, **watched):
        if not finite:
            what = what_non_finite(int(first_non_finite), self.names)
            raise TrainingStopped(step, f"non-finite {what}", self.last_checkpoint())
        spike = self.spikes.check(loss) if self.spikes is not None else None
        if spike is not None:
            raise TrainingStopped(step, spike, self.last_checkpoint())
        super().add_train(step, loss, seconds, log, **watched)

    def stopped(self, diverged: Diverged) -> TrainingStopped:
        """The loop's own stop on a non-finite loss, said as this lab says it."""
        return TrainingStopped(diverged.step, f"non-finite {diverged.what}", self.last_checkpoint())


def watched_history(cfg: Config, names, framework: str, ctx: loop.Context) -> WatchedHistory:
    return WatchedHistory(
        names=tuple(forward_order(names)),
        spikes=SpikeDetector(cfg.spike_factor, cfg.spike_warmup),
        framework=framework,
        checkpoint_dir=ctx.checkpoint_dir,
    )


# `week1 compare monitoring --quick`: a short run (the curves overlap from the first step).
COMPARE_QUICK = {"steps": 300, "eval_every": 100, "warmup_steps": 30}
COMPARE_TEST = {"steps": 20, "eval_every": 10, "warmup_steps": 5}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case: the watched (and clipped, unless clip_norm=0) LM, its validation loss; F32
    curves after many steps (TRAJECTORY)."""
    return [Case("watched", "val loss", TRAJECTORY)]


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "global_norm",
        hints=(
            "One number for all gradients: the 2-norm of every tensor's entries taken together.",
            "sqrt(sum over tensors of sum(g**2)) (not the sum of per-tensor norms).",
        ),
        jax=Part(
            "week1_jax/monitoring.py::global_norm",
            "test_monitoring.py::test_norms_clipping_and_update_ratios_jax_equal_torch",
        ),
        torch=Part(
            "week1_torch/monitoring.py::global_norm",
            "test_monitoring.py::test_norms_clipping_and_update_ratios_jax_equal_torch",
        ),
    ),
)
