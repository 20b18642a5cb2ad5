"""Lab: regularisation — dropout, layer normalisation, weight decay — on the training_loop LM.

What it teaches
---------------
The training_loop's character MLP, made big (16 characters of context, 1,024 hidden
units, ~0.5M parameters) and trained on a small slice of Shakespeare, learns the slice
by heart: training loss keeps falling while validation loss stops improving and, on a
small enough slice, climbs. The gap between the two curves is overfitting. One run trains
the same model from the same start on the same batches once per arm of an ablation
grid, each switching regularisers on or off:

    none          nothing
    dropout       inverted dropout on the hidden layer (Srivastava et al. 2014)
    layernorm     LayerNorm on the hidden pre-activations (Ba et al. 2016)
    weight_decay  AdamW's decoupled decay of the matrices (Loshchilov & Hutter 2019)
    l2_penalty    the same lambda as an L2 term in the loss, 0.5 lambda |W|^2, under Adam
    all           dropout + layernorm + weight_decay

Each piece is written from scratch in both frameworks (week1_jax/regularization.py,
week1_torch/regularization.py) and checked in parity_tests/test_regularization.py:

- Dropout: at training time each unit is kept with probability 1 - p and scaled by
  1 / (1 - p) ("inverted" dropout), so its expectation is unchanged and evaluation is
  the identity; a test asserts both, and that the two frameworks give the same loss
  and gradients when the same keep-mask is injected (their random streams differ).
- LayerNorm: y = (x - mean) / sqrt(var + eps) * scale + bias over the features, with
  the biased variance; checked against nnx.LayerNorm and torch.nn.LayerNorm with eps
  passed explicitly (their defaults differ: 1e-6 vs 1e-5).
- Weight decay: AdamW shrinks each matrix by lr * lambda * W after Adam's normalised
  step; an L2 penalty adds lambda * W to the gradient *before* Adam divides by
  sqrt(v), so large-gradient weights are barely decayed. Under plain SGD the two are
  the same update; under Adam they are not: a test shows both facts, and ties each to
  its library twin (torch.optim.Adam(weight_decay=) and optax.add_decayed_weights before
  adam are the L2 kind; torch.optim.AdamW and optax.adamw the decoupled kind).

How to read the results
-----------------------
gap.png has two panels over training steps: validation and training loss of every arm
(the training loss smoothed), and their gap (validation minus training, both in nats).
The table gives, per arm, the final training and validation loss, the gap, and the
best validation loss with its step.

- Overfitting in about a minute: `week1 run regularization --framework torch
  --train_chars=5000 --steps=1000 --eval_every=50 --arms=none,dropout`. On 5k characters
  the `none` arm's validation loss is best within the first 100 steps and then climbs by
  most of a nat while its training loss falls towards 0; dropout slows both.
- The defaults (30k characters, 2000 steps, every arm: several minutes on 2 cores) show
  the gap opening rather than validation loss climbing: validation loss flattens and
  is best late in the run while training loss keeps falling. `none` opens the widest gap;
  dropout and weight decay narrow it (dropout also slows the fall of the training loss),
  and `all` combines them. LayerNorm is an optimisation aid, not a regulariser: its
  training loss falls faster early on (the first few hundred steps), not to a lower end.
- The L2 penalty at AdamW's lambda is a different knob altogether (see above): under
  Adam it drags every weight towards zero at about the learning rate per step, and the
  model barely leaves the unigram baseline.
- The unigram baseline (printed under the table, dashed in gap.png) is what a model
  ignoring context scores. Compare arms
within one run: every arm of a run starts from the same weights, but the two frameworks'
default initialisations differ (torch: N(0, 1) embeddings, Kaiming-uniform linears;
Flax: scaled normal embeddings, LeCun-normal linears), so their grids differ in detail.

`week1 compare regularization` trains every arm in both frameworks from torch's start on the
same batches, with the same dropout keep-masks injected (drawn in numpy per step): each arm's
curves overlap to float32 rounding, the table gives steps/s for JAX, torch and torch.compile.

Run it:  week1 run regularization --framework jax       (or torch; --arms=none,all for two)
         week1 compare regularization                    (--quick: two arms, short)
         week1 parity regularization

History: docs/history.md#srivastava-2014, #ba-2016, #loshchilov-2019
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np

from week1 import charlm, convert, loop, report, runs
from week1.comparison import Case
from week1.config import AT_LEAST_1, POSITIVE, require
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

WEIGHT_MAP = convert.CHAR_MLP  # the same names as the training_loop model, LayerNorm included
WEIGHT_MAP_NO_LN = tuple(row for row in WEIGHT_MAP if not row[0].startswith("ln."))
ARMS = ("none", "dropout", "layernorm", "weight_decay", "l2_penalty", "all")


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    """The training_loop LM's settings, made to overfit: more context and hidden units, a small
    training slice."""

    steps: int = 2000
    block_size: int = 16
    n_hidden: int = 1024
    dropout: float = 0.5  # the dropout rate of the arms with dropout
    weight_decay: float = 0.5  # lambda of the weight_decay, l2_penalty and all arms
    warmup_steps: int = 100
    eval_every: int = 100
    eval_batches: int = 10
    checkpoint_every: int = 500
    train_chars: int = 30000  # the training slice: this many characters, in 30 spread pieces
    ln_eps: float = 1e-5  # LayerNorm's epsilon, passed explicitly on both sides
    arms: str = ",".join(ARMS)  # comma-separated subset of the ablation grid, in this order

    RANGES = {"train_chars": AT_LEAST_1, "ln_eps": POSITIVE}

    def check(self) -> None:
        super().check()
        unknown = [a for a in self.arm_names if a not in ARMS]
        require(
            not unknown and len(self.arm_names) > 0,
            f"arms={self.arms!r}: allowed (comma-separated): {', '.join(ARMS)}",
        )
        require(
            self.train_chars > self.block_size * 30,
            f"train_chars={self.train_chars}: must be > 30 * block_size={self.block_size}",
        )

    @property
    def arm_names(self) -> list[str]:
        return [a for a in self.arms.split(",") if a]


@dataclasses.dataclass(frozen=True)
class Arm:
    """What one arm of the grid switches on."""

    name: str
    dropout: float  # rate; 0 = no dropout
    layernorm: bool
    weight_decay: float  # decoupled (AdamW) lambda on matrices
    l2: float  # coefficient of 0.5 * sum |W|^2 added to the loss (matrices)

    @property
    def weight_map(self):
        return WEIGHT_MAP if self.layernorm else WEIGHT_MAP_NO_LN


def arm(cfg: Config, name: str) -> Arm:
    p, lam = cfg.dropout, cfg.weight_decay
    return {
        "none": Arm(name, 0.0, False, 0.0, 0.0),
        "dropout": Arm(name, p, False, 0.0, 0.0),
        "layernorm": Arm(name, 0.0, True, 0.0, 0.0),
        "weight_decay": Arm(name, 0.0, False, lam, 0.0),
        "l2_penalty": Arm(name, 0.0, False, 0.0, lam),
        "all": Arm(name, p, True, lam, 0.0),
    }[name]


# --- data: the training_loop's, with a small training slice --------------------------------


def train_slice(train: np.ndarray, n_chars: int, pieces: int = 30) -> np.ndarray:
    """`n_chars` characters of the training text in `pieces` equal runs spread evenly over it
    (one contiguous slice would be one play: a different distribution from validation)."""
    length = n_chars // pieces
    starts = np.linspace(0, len(train) - length, pieces).astype(np.int64)  # (pieces,)
    return np.concatenate([train[s : s + length] for s in starts])


def load_data(cfg: Config) -> charlm.Data:
    data = charlm.load_data(cfg)
    return charlm.Data(data.corpus, train_slice(data.train, cfg.train_chars), data.val)


def dropout_keep_mask(shape, rate: float, seed) -> np.ndarray:
    """A keep-mask (True = kept, probability 1 - rate) from numpy, to inject into both
    frameworks (their own random streams never match); `seed`: an int or a list of ints."""
    return np.random.default_rng(seed).random(shape) >= rate


def step_keep_mask(cfg: Config, arm: Arm, step: int) -> np.ndarray | None:
    """Training step `step`'s keep-mask (B, H) for the hidden layer, the same in both frameworks
    (`week1 compare`); None for an arm without dropout."""
    if not arm.dropout:
        return None
    return dropout_keep_mask((cfg.batch_size, cfg.n_hidden), arm.dropout, [cfg.seed, step])


# --- the grid: one training per arm, resumable -----------------------------------------------


def run_grid(cfg: Config, run, train_arm, compile: bool = False) -> dict:
    """Train every arm in turn with `train_arm(arm, ctx) -> History`, ctx the run's Context
    for that arm (its metrics as "arm/metric", the run's checkpoints, signals and `compile`);
    plot, tabulate, summarise.

    Resuming (`week1 resume`): finished arms are read back from grid.json; the arm that
    was stopped continues from its checkpoint (run.checkpoint_dir holds only the current
    arm's checkpoints, cleared when it finishes).
    """
    done_path = run.path("grid.json")
    done = json.loads(done_path.read_text()) if run.resume and done_path.exists() else {}
    histories = {name: loop.History(**h) for name, h in done.items()}
    ctx = loop.Context.of_run(run, compile)
    if run.resume:
        # Run.reopen dropped metrics past the checkpoint's step, finished arms' included: log
        # their dropped rows again.
        for name, h in histories.items():
            _log_history(run, name, h, after=run.last_step)
    for name in cfg.arm_names:
        if name in histories:
            continue
        resume = run.resume and run.checkpoint_dir.exists() and any(run.checkpoint_dir.iterdir())
        arm_ctx = dataclasses.replace(ctx.part(name, checkpoints=True), resume=resume)
        history = train_arm(arm(cfg, name), arm_ctx)
        if resume:  # the steps before the checkpoint, from the run's metrics
            history = _joined(_logged_history(run, name, before=history.steps[0]), history)
        if run.should_stop():
            return {"arms_finished": len(histories)}
        histories[name] = history
        done_path.write_text(json.dumps({k: dataclasses.asdict(h) for k, h in histories.items()}))
        shutil.rmtree(run.checkpoint_dir, ignore_errors=True)  # the next arm starts afresh
    return report_grid(cfg, run, histories)


def _logged_history(run, name: str, before: int) -> loop.History:
    """Arm `name`'s losses logged in the run's metrics.jsonl at steps before `before`."""
    history = loop.History()
    for row in runs.read_metrics(run.dir):
        if row["step"] < before and f"{name}/train_loss" in row:
            history.add_train(row["step"], row[f"{name}/train_loss"], 0.0)
        if row["step"] < before and f"{name}/val_loss" in row:
            history.add_eval(row["step"], val_loss=row[f"{name}/val_loss"])
    return history


def _joined(first: loop.History, then: loop.History) -> loop.History:
    return loop.History(
        steps=first.steps + then.steps,
        train_loss=first.train_loss + then.train_loss,
        eval_steps=first.eval_steps + then.eval_steps,
        evals={"val_loss": first.val_loss + then.val_loss},
        first_step_s=then.first_step_s,
        timed_s=then.timed_s,
        step_s=then.step_s,
    )


def _log_history(run, name: str, history: loop.History, after: int) -> None:
    for step, loss in zip(history.steps, history.train_loss, strict=True):
        if step > after:
            run.log(step, **{f"{name}/train_loss": loss})
    for step, loss in zip(history.val_steps, history.val_loss, strict=True):
        if step > after:
            run.log(step, **{f"{name}/val_loss": loss})


def train_at(history: loop.History, steps: list) -> np.ndarray:
    """The training loss smoothed over the 50 steps before each of `steps` (one batch's loss is
    noisy; the validation loss averages eval_batches batches)."""
    smooth = report.smooth(history.train_loss, 50)
    index = {s: i for i, s in enumerate(history.steps)}
    return np.array([smooth[index[s]] for s in steps])


def report_grid(cfg: Config, run, histories: dict) -> dict:
    """gap.png (losses and their gap per arm, the unigram baseline dashed), the table, and the
    summary."""
    unigram = charlm.unigram_baseline(load_data(cfg))
    rows, loss_series, gap_series, styles = [], {}, {}, {}
    summary = {"unigram baseline": unigram}
    for i, (name, h) in enumerate(histories.items()):
        train = train_at(h, h.val_steps)  # (n_evals,)
        gap = np.array(h.val_loss) - train
        best = int(np.argmin(h.val_loss))
        rows.append((name, float(train[-1]), h.val_loss[-1], float(gap[-1]), h.val_loss[best],
                     h.val_steps[best]))  # fmt: skip
        loss_series[f"{name} val"] = (h.val_steps, h.val_loss)
        loss_series[f"{name} train"] = (h.val_steps, train)
        styles |= {f"{name} val": f"C{i}-", f"{name} train": f"C{i}:", name: f"C{i}-"}
        gap_series[name] = (h.val_steps, gap)
        summary |= {f"{name} final gap": float(gap[-1]), f"{name} best val": h.val_loss[best]}
    report.table(
        f"regularisation grid ({run.framework}): {cfg.steps} steps on {cfg.train_chars:,} "
        "training characters",
        ["arm", "train loss", "val loss", "gap", "best val", "at step"],
        rows,
    )
    report.console.print(f"unigram baseline (context ignored): {unigram:.3f} nats")
    steps = sorted({s for h in histories.values() for s in h.val_steps})
    loss_series["unigram baseline"] = ([steps[0], steps[-1]], [unigram] * 2) if steps else ([], [])
    styles["unigram baseline"] = "k--"
    report.plot_panels(
        run.path("gap.png"),
        [
            report.Panel(loss_series, "loss (nats): val solid, train dotted", styles=styles),
            report.Panel(gap_series, "gap = val - train (nats)", styles=styles),
        ],
        title=f"Regularisation ablation ({run.framework}): overfitting a small slice",
        xlabel="step",
    )
    return summary


# `week1 compare regularization --quick`: two arms (dropout with its injected masks, and every
# regulariser at once), short: loss falling, the gap not yet open.
COMPARE_QUICK = {"steps": 300, "eval_every": 100, "warmup_steps": 30, "arms": "dropout,all"}
COMPARE_TEST = {"steps": 20, "eval_every": 10, "warmup_steps": 5, "n_hidden": 256, "arms": "all"}


def compare_cases(cfg: Config) -> list[Case]:
    """One case per arm of cfg.arms, its validation loss; dropout's keep-masks injected (the same
    in both), so every arm is F32 curves after many steps (TRAJECTORY)."""
    return [Case(name, "val loss", TRAJECTORY) for name in cfg.arm_names]


def prepare(out_dir=None) -> list:
    """`week1 prepare regularization`: the training_loop's character ids."""
    return charlm.prepare(out_dir)


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "layernorm",
        hints=(
            (
                "Normalise over the last axis: subtract the mean, divide by sqrt(variance + eps) "
                "(the biased variance), then scale and shift."
            ),
            (
                "mean = x.mean(-1, keepdims); var = ((x - mean)**2).mean(-1, keepdims); y = (x - "
                "mean) / sqrt(var + eps) * scale + bias. eps inside the square root."
            ),
        ),
        jax=Part(
            "week1_jax/regularization.py::LayerNorm.__call__",
            "test_regularization.py::test_layernorm_matches_the_libraries",
        ),
        torch=Part(
            "week1_torch/regularization.py::LayerNorm.forward",
            "test_regularization.py::test_layernorm_matches_the_libraries",
        ),
    ),
    Exercise(
        "dropout",
        hints=(
            (
                "Inverted dropout: in training keep each unit with probability 1 - rate and divide "
                "the kept ones by 1 - rate, so the expectation is unchanged; at eval the identity."
            ),
            (
                "A given `keep` mask is used as is (the parity tests inject one); otherwise draw it"
                " (jax: from the rngs' dropout stream, bernoulli(1 - rate)). rate 0 is the identity"
                " too."
            ),
        ),
        jax=Part(
            "week1_jax/regularization.py::Dropout.__call__",
            "test_regularization.py::test_dropout_scaling_eval_identity_and_library_masks",
        ),
        torch=Part(
            "week1_torch/regularization.py::Dropout.forward",
            "test_regularization.py::test_dropout_scaling_eval_identity_and_library_masks",
        ),
    ),
)
