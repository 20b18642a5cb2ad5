"""Lab: learning-rate schedules, warmup and decay.

What it teaches
---------------
Four schedules, each a function step -> lr with the same argument names in
both frameworks (peak_lr, warmup_steps, total_steps, final_lr):

- warmup_cosine: linear 0 -> peak over warmup, then half a cosine down to final_lr.
- warmup_linear: linear 0 -> peak, then a straight line down to final_lr.
- constant_with_warmup: linear 0 -> peak, then peak for ever.
- inverse_sqrt: linear 0 -> peak, then peak * sqrt(warmup / step) (the original
  Transformer's schedule, fairseq's form).

Warmup lets Adam's second-moment estimate settle before large steps are taken;
decay lets the iterate settle into a minimum at the end.

The step-0 convention
---------------------
Update k (counting from 0) uses schedule(k). optax evaluates the schedule at the
optimizer's count before incrementing it; torch's LambdaLR sets schedule(0) when
it is built and moves on with each scheduler.step() after optimizer.step().
With linear warmup from zero the very first update therefore has lr 0 in both.
Past total_steps the decaying schedules hold final_lr.

How to read the results
-----------------------
`week1 run lr_schedules --framework X` reads the lr each schedule actually
applies at every step (through a real optimizer), prints it at the key steps,
plots the four curves, then trains the training_loop LM once per schedule and
reports the final validation loss: with the same peak lr and step budget, the
schedules that decay to a small lr end lowest.

History: docs/history.md#vaswani-2017, #goyal-2017
"""

from __future__ import annotations

import dataclasses

from week1 import charlm
from week1.charlm import SCHEDULES
from week1.exercises import Exercise, Part


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    """The training_loop LM's settings (each schedule trains it once), with a shorter run."""

    steps: int = 1500
    eval_every: int = 500
    checkpoint_every: int = 0


def key_steps(cfg: Config) -> list[int]:
    """Where the schedules differ: start, end of warmup, middle, last update, and past the end."""
    return sorted(
        {
            0,
            max(cfg.warmup_steps - 1, 0),
            cfg.warmup_steps,
            cfg.steps // 2,
            cfg.steps - 1,
            cfg.steps + 100,
        }
    )


def report(lrs: dict, histories: dict, cfg: Config, run, framework: str) -> dict:
    """Table of lr at the key steps with each schedule's final validation loss, and two PNGs."""
    from week1 import report as rep

    steps = key_steps(cfg)
    rep.table(
        f"lr_schedules ({framework}): lr applied at update k, and the LM's final val loss",
        ["schedule", *[f"k={k}" for k in steps], "final val loss"],
        [
            (name, *[float(lrs[name][k]) for k in steps], histories[name].val_loss[-1])
            for name in SCHEDULES
        ],
    )
    rep.plot_lines(
        run.path("schedules.png"),
        {n: (range(len(lrs[n])), lrs[n]) for n in SCHEDULES},
        title=f"Learning-rate schedules ({framework}), peak {cfg.lr}, warmup {cfg.warmup_steps}",
        xlabel="update k",
        ylabel="learning rate",
    )
    rep.plot_lines(
        run.path("loss_by_schedule.png"),
        {n: (h.steps, h.train_loss) for n, h in histories.items()},
        title=f"LM train loss by schedule ({framework})",
        xlabel="step",
        ylabel="train loss",
    )
    for name in SCHEDULES:
        for k, lr in enumerate(lrs[name]):
            run.log(k, **{f"lr/{name}": lr})
    return {f"{name}_final_val_loss": histories[name].val_loss[-1] for name in SCHEDULES}


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "warmup_cosine",
        hints=(
            (
                "Below warmup_steps the lr is the linear ramp (_warmup); after it, the progress p "
                "in [0, 1] through the decay gives final + (peak - final) * (1 + cos(pi p)) / 2."
            ),
            (
                "p = clip((step - warmup) / max(total - warmup, 1), 0, 1): held at final_lr after "
                "total_steps. jax: jnp.where picks ramp or cosine (no Python if on a traced step)."
            ),
        ),
        jax=Part(
            "week1_jax/lib/schedules.py::warmup_cosine.schedule",
            (
                "test_lr_schedules.py::test_jax_matches_optax_builtins[warmup_cosine]",
                "test_lr_schedules.py::test_step_zero_and_boundaries[warmup_cosine]",
            ),
        ),
        torch=Part(
            "week1_torch/lib/schedules.py::warmup_cosine.schedule",
            (
                "test_lr_schedules.py::test_jax_matches_torch[warmup_cosine]",
                "test_lr_schedules.py::test_step_zero_and_boundaries[warmup_cosine]",
            ),
        ),
    ),
    Exercise(
        "warmup_linear",
        hints=(
            (
                "The same shape as warmup_cosine, with a straight line from peak_lr to final_lr "
                "instead of the half cosine."
            ),
            "linear = peak + (final - peak) * p with p the clipped progress after warmup.",
        ),
        jax=Part(
            "week1_jax/lib/schedules.py::warmup_linear.schedule",
            (
                "test_lr_schedules.py::test_jax_matches_optax_builtins[warmup_linear]",
                "test_lr_schedules.py::test_step_zero_and_boundaries[warmup_linear]",
            ),
        ),
        torch=Part(
            "week1_torch/lib/schedules.py::warmup_linear.schedule",
            (
                "test_lr_schedules.py::test_jax_matches_torch[warmup_linear]",
                "test_lr_schedules.py::test_step_zero_and_boundaries[warmup_linear]",
            ),
        ),
    ),
    Exercise(
        "inverse_sqrt",
        hints=(
            (
                "After the warmup the lr falls as 1/sqrt(step), continuous at step == warmup_steps "
                "(where it is peak_lr)."
            ),
            "decay = peak * sqrt(max(warmup, 1) / max(step, 1)); the ramp below warmup_steps.",
        ),
        jax=Part(
            "week1_jax/lib/schedules.py::inverse_sqrt.schedule",
            (
                "test_lr_schedules.py::test_jax_matches_optax_builtins[inverse_sqrt]",
                "test_lr_schedules.py::test_step_zero_and_boundaries[inverse_sqrt]",
            ),
        ),
        torch=Part(
            "week1_torch/lib/schedules.py::inverse_sqrt.schedule",
            (
                "test_lr_schedules.py::test_jax_matches_torch[inverse_sqrt]",
                "test_lr_schedules.py::test_step_zero_and_boundaries[inverse_sqrt]",
            ),
        ),
    ),
)
