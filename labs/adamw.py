"""Lab: AdamW from scratch.

What it teaches
---------------
AdamW keeps two running averages per parameter, of the gradient (m) and of its
square (v), corrects their start-up bias, and steps by m / (sqrt(v) + eps):
a per-parameter step size. Weight decay is *decoupled* (Loshchilov & Hutter,
2019): parameters shrink by lr * weight_decay directly, instead of adding
weight_decay * p to the gradient, where Adam's normalisation would undo it.

We write it twice from plain array ops: `week1_jax.lib.optim.adamw` (an optax
GradientTransformation) and `week1_torch.lib.optim.AdamW` (a torch.optim.Optimizer
with param groups and state_dict). Biases and norm scales get no decay.

How to read the results
-----------------------
`week1 run adamw --framework X` trains the training_loop LM twice from the same
weights on the same batches, once with ours and once with the library's
(optax.adamw / torch.optim.AdamW, weight decay and mask passed explicitly: their
defaults differ, 1e-4 vs 1e-2). The curves should coincide; the largest loss
difference printed is float32 rounding, growing slowly with steps.
The parity suite checks the same thing in float64 over 100 steps of a random
problem, to 1e-10 relative: ours vs optax, ours vs torch, JAX vs torch.
`week1 bench adamw` times one optimizer update, ours against the library's.

History: docs/history.md#kingma-2015, #loshchilov-2019
"""

from __future__ import annotations

import dataclasses

import numpy as np

from week1 import charlm, report
from week1.exercises import Exercise, Part


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    """The training_loop LM's settings (its data, model and schedule), with a shorter run."""

    steps: int = 1000
    checkpoint_every: int = 0


def report_curves(histories: dict, run, framework: str) -> dict:
    """Log, tabulate and plot two training histories (ours first, the library's second)."""
    (ours_name, ours), (lib_name, lib) = histories.items()
    for step, a, b in zip(ours.steps, ours.train_loss, lib.train_loss, strict=True):
        run.log(step, ours=a, library=b)
    report.table(
        f"AdamW ({framework}): {ours_name} vs {lib_name}",
        ["optimizer", "final train loss", "final val loss"],
        [(name, h.train_loss[-1], h.val_loss[-1]) for name, h in histories.items()],
    )
    report.plot_lines(
        run.path("adamw_curves.png"),
        {k: (h.steps, h.train_loss) for k, h in histories.items()},
        title=f"AdamW from scratch vs {lib_name} ({framework})",
        xlabel="step",
        ylabel="train loss",
        styles={ours_name: "-", lib_name: "--"},
    )
    diff = np.abs(np.array(ours.train_loss) - np.array(lib.train_loss))
    return {
        "ours_final_val_loss": ours.val_loss[-1],
        "library_final_val_loss": lib.val_loss[-1],
        "max_abs_train_loss_diff": float(diff.max()),
    }


# Learner mode (week1 exercise adamw): write these, in this order; `week1 check adamw` grades them.
EXERCISES = (
    Exercise(
        "adamw_update",
        hints=(
            "The docstring's three lines are the whole update: both moments, then the step from "
            "their bias-corrected values, plus the decoupled decay (only where the mask says so).",
            "The bias corrections divide by 1 - b1**t and 1 - b2**t with t the count AFTER this "
            "update (1 at the first step); eps goes outside the square root.",
            "jax: count = state.count + 1; mu = b1*mu + (1-b1)*g and nu = b2*nu + (1-b2)*g*g "
            "leaf by leaf (jax.tree.map); the lr is learning_rate(state.count), before the "
            "increment. torch: p.mul_(1 - lr*wd) first, then the moments in place, then "
            "p -= lr/(1-b1**t) * m / (sqrt(v/(1-b2**t)) + eps).",
        ),
        jax=Part(
            "week1_jax/lib/optim.py::adamw.update_fn", "test_adamw.py::test_jax_adamw_matches_optax"
        ),
        torch=Part(
            "week1_torch/lib/optim.py::AdamW.step",
            "test_adamw.py::test_torch_adamw_matches_torch_optim",
        ),
    ),
)
