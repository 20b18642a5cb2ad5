"""Lab: gradient accumulation, and the token-count trap with padded batches.

What it teaches
---------------
A batch too big for memory is split into k micro-batches; each one's gradient
is added into an accumulator and the optimizer steps once. Done right, this is
*the same update* as the big batch, to float64 rounding:

    loss(B) = sum_{i in B} l_i / N          N = real (non-padding) tokens in B
            = sum_j [ sum_{i in B_j} l_i / N ]      (B = B_1 + ... + B_k)

so each micro-batch must be divided by N, the real tokens of the *whole* batch.
The trap: dividing each micro-batch by its own count n_j and averaging,

    (1/k) sum_j [ sum_{i in B_j} l_i / n_j ],

equals loss(B) only when every n_j = N/k. With padding the n_j differ, and
tokens in short micro-batches get more weight. Here batches are padded on
purpose (micro-batch j keeps its first n_j labels, n_j drawn in [1, m]; the rest
are IGNORE_INDEX), so the wrong normalisation visibly differs.

JAX does it twice: `optax.MultiSteps` (one micro-batch per update call; it emits an
update every k calls) and a hand-written `lax.scan` over the micro-batches
inside one jitted step. Torch accumulates in `.grad` with a plain loop, with the
slot where DDP's `no_sync()` goes (all micro-batches but the last skip the
gradient all-reduce).

How to read the results
-----------------------
- `grad scaled max diff (total)`: accumulated vs big-batch gradients, float32,
  as max|accumulated - big| / max|big| over each tensor (the worst tensor):
  rounding only (~1e-6). `(per_micro_batch)`: the trap, a visible difference
  (~1e-1).
- `normalise` (the first row of the table) names the weighting the run trained with;
  `<method>/train_loss_last_20` is the mean training loss over the last 20 steps (one
  padded batch's loss, `final_train_loss`, is noisy), `final_val_loss` the last evaluation.
- curves.png: training loss (a 20-step trailing mean) and validation loss of each method.
  `week1 run grad_accumulation --framework jax --normalise=per_micro_batch` trains with the
  wrong weighting: put its curves.png beside the default run's (its validation loss ends
  higher: short micro-batches' tokens weigh more).
- The float64 identity is shown by `week1 parity grad_accumulation` (test_*_equals_big_batch_f64:
  accumulated = big batch to rtol 1e-10 in each framework); the run itself is float32, where
  accumulated gradients also agree across frameworks.
- `week1 compare grad_accumulation` trains the JAX scan and torch's loop (eager and
  torch.compile) from torch's start on the same padded batches: the curves overlap to
  float32 rounding; the table gives each one's steps/s (k backward passes per step).

Run it:  week1 run grad_accumulation --framework jax   (or torch)
         week1 compare grad_accumulation                (--normalise=per_micro_batch: the trap)

History: docs/history.md#goyal-2017
"""

from __future__ import annotations

import dataclasses

import numpy as np

from week1 import charlm
from week1.comparison import Case
from week1.config import require
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

IGNORE_INDEX = -100  # as week1_jax.lib.losses / week1_torch.lib.losses: a padding label
NORMALISATIONS = ("total", "per_micro_batch")


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    steps: int = 200
    batch_size: int = 64  # the whole batch, split into `micro_batches`
    warmup_steps: int = 20
    eval_every: int = 100
    checkpoint_every: int = 0
    micro_batches: int = 4  # k
    normalise: str = "total"  # "total" (right) or "per_micro_batch" (the trap)

    def check(self) -> None:
        super().check()
        require(self.micro_batches > 0, f"micro_batches={self.micro_batches}: must be > 0")
        require(
            self.batch_size % self.micro_batches == 0,
            f"batch_size={self.batch_size}: must be a multiple of "
            f"micro_batches={self.micro_batches}",
        )
        require(
            self.normalise in NORMALISATIONS,
            f"normalise={self.normalise!r}: allowed: {', '.join(NORMALISATIONS)}",
        )


def padded_batch(data: charlm.Data, cfg: Config, step: int):
    """The training batch `step` with padding: x (B, T) int32, y (B,) int32, IGNORE_INDEX at
    padding.

    Micro-batch j (rows j*m .. (j+1)*m) keeps its first n_j labels, n_j drawn
    from [1, m] with a seed of its own, like sequences of different lengths.
    """
    x, y = charlm.train_batch(data, cfg, step)  # (B, T), (B,)
    k, m = cfg.micro_batches, cfg.batch_size // cfg.micro_batches
    n_real = np.random.default_rng([cfg.seed, step, 7]).integers(1, m + 1, size=k)  # (k,)
    keep = np.arange(m)[None, :] < n_real[:, None]  # (k, m)
    y = np.where(keep.reshape(-1), y, IGNORE_INDEX).astype(np.int32)  # (B,)
    return x, y


def split_micro_batches(x: np.ndarray, y: np.ndarray, k: int):
    """(B, T), (B,) -> (k, B/k, T), (k, B/k): micro-batch j is rows j*B/k .. (j+1)*B/k."""
    B, T = x.shape
    return x.reshape(k, B // k, T), y.reshape(k, B // k)


def normalisers(ys: np.ndarray, normalise: str) -> np.ndarray:
    """What each micro-batch's summed token loss is divided by, (k,) float64.

    "total": N, the real tokens of the whole batch, for every micro-batch, so
    the k terms add up to the big-batch mean. "per_micro_batch": k * n_j, i.e.
    each micro-batch's own mean, averaged over the k micro-batches (the trap).
    """
    n_real = (ys != IGNORE_INDEX).sum(axis=1).astype(np.float64)  # (k,)
    if normalise == "total":
        return np.full_like(n_real, n_real.sum())
    return len(n_real) * n_real


LAST = 20  # train_loss_last_20: the mean over this many final steps


def report_run(run, cfg: Config, summary: dict, histories: dict) -> dict:
    """The run's summary (the normalisation first; per method its History summary and the mean
    training loss of the last LAST steps) and curves.png (per method: smoothed training loss,
    validation loss). histories: {method: loop.History}."""
    from week1 import report

    out = {"normalise": cfg.normalise, **summary}
    train, val = {}, {}
    for method, history in histories.items():
        out.update({f"{method}/{k}": v for k, v in history.summary().items()})
        out[f"{method}/train_loss_last_{LAST}"] = float(np.mean(history.train_loss[-LAST:]))
        train[method] = (history.steps, report.smooth(history.train_loss, LAST))
        val[method] = (history.val_steps, history.val_loss)
    panels = [
        report.Panel(train, f"train loss ({LAST}-step mean)"),
        report.Panel(val, "validation loss", styles=dict.fromkeys(val, "-o")),
    ]
    title = f"grad_accumulation: normalise={cfg.normalise}, k={cfg.micro_batches}"
    report.plot_panels(run.path("curves.png"), panels, title=title, xlabel="step")
    return out


def micro_batches(data: charlm.Data, cfg: Config, step: int):
    """Training step `step`'s micro-batches (k, m, T), labels (k, m) and normalisers (k,), the
    same in both frameworks."""
    xs, ys = split_micro_batches(*padded_batch(data, cfg, step), cfg.micro_batches)
    return xs, ys, normalisers(ys, cfg.normalise)


# `week1 compare grad_accumulation --quick`: the default run (short already), evaluated more often.
COMPARE_QUICK = {"steps": 600, "eval_every": 200, "warmup_steps": 50}  # 1 ms steps: 0.6 s timed
COMPARE_TEST = {"steps": 20, "eval_every": 10, "warmup_steps": 5}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case, the run's normalisation (JAX's scan against torch's loop), its validation loss;
    F32 curves after many steps (TRAJECTORY)."""
    return [Case(cfg.normalise, "val loss", TRAJECTORY)]


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "accumulate_grads",
        hints=(
            (
                "k micro-batches of one big batch: the big batch's mean loss is the sum of each "
                "micro-batch's loss weighted by its share of the rows (norms)."
            ),
            (
                "jax: lax.scan over (xs, ys, norms) with a carry of (loss sum, grads sum) started "
                "at zeros; each step adds norm * value_and_grad of the micro loss. torch: zero the "
                "grads once, then per micro-batch (norm * loss).backward() accumulates in p.grad."
            ),
        ),
        jax=Part(
            "week1_jax/grad_accumulation.py::accumulate_grads",
            "test_grad_accumulation.py::test_jax_scan_equals_big_batch_f64",
        ),
        torch=Part(
            "week1_torch/grad_accumulation.py::accumulate_grads",
            "test_grad_accumulation.py::test_torch_loop_equals_big_batch_f64",
        ),
    ),
)
