"""What `week1 compare` compares: a lab's cases, and each framework's curves of one case.

A lab that trains offers `compare_cases(cfg)` in its spec (labs/<id>.py); its torch module
offers `start_weights(cfg, case)` (torch's init, numpy arrays under torch's names), and both
framework modules `compare_run(cfg, case, weights, ctx=loop.BARE) -> Curves`: one run of the
case from those weights, ctx carrying torch.compile (torch) and the turns the command's runs
take (week1/commands/interleave.py).
"""

from __future__ import annotations

import dataclasses

from week1.tolerances import Tier


@dataclasses.dataclass(frozen=True)
class Case:
    """One comparable training run of a lab (a task, an arm, a precision)."""

    name: str  # "lm", "sentiment", "bf16", ...
    metric: str  # what Curves.evals holds: "val loss", "val accuracy", ...
    tier: Tier  # how close the two train-loss curves must stay (both from the same start)
    # Why the two runs cannot start from the same weights or see the same batches (one line);
    # empty when they do. A case with a reason is shown, never held to its tier.
    differs: str = ""


@dataclasses.dataclass
class Curves:
    """One framework's run of a case: train loss per step, the case's metric per evaluation."""

    steps: list[int]
    train_loss: list[float]
    eval_steps: list[int]
    evals: list[float]
    first_step_s: float  # compilation (jit, torch.compile) plus one step
    steps_per_s: float  # the steps after the first, evaluation excluded

    @classmethod
    def of(cls, history, evals: list[float] | None = None) -> Curves:
        """From a training_loop.History (or a subclass); `evals` replaces its validation
        losses when the case's metric is another (an accuracy)."""
        return cls(
            steps=list(history.steps),
            train_loss=[float(v) for v in history.train_loss],
            eval_steps=list(history.val_steps),
            evals=[float(v) for v in (history.val_loss if evals is None else evals)],
            first_step_s=float(history.first_step_s),
            steps_per_s=float(history.steps_per_s),
        )
