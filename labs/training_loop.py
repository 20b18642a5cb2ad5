"""Lab: training loops, with a character-level MLP language model on Shakespeare.

What it teaches
---------------
The training loop written out, with nothing hidden in a Trainer: draw a batch,
compute the loss, take gradients, step the optimizer, now and then evaluate on
held-out text, sample, and checkpoint so a run can stop and resume exactly.

The model is Bengio et al. (2003): the previous `block_size` characters are
embedded, the embeddings concatenated, passed through one hidden layer
(LayerNorm, tanh) and projected to logits over the character vocabulary.
The loss is the mean cross-entropy of the next character, in nats.

How to read the results
-----------------------
- The *unigram baseline* is the cross-entropy of the validation text under the
  training text's character frequencies: what a model that ignores context
  scores, about 3.31 nats here. The default run ends near 1.85 (JAX, 8000
  steps; `week1 run training_loop --framework jax`).
- Train and validation loss close together means no overfitting yet; a widening
  gap is what the regularization lab is about.
- `week1 compare training_loop` starts both frameworks from the same weights
  (torch's init, converted) on the same batches: their loss curves overlap to
  float32 rounding, and the table gives steps/s for JAX jit, torch eager and
  torch.compile, measured in the same run.
- Resume: batch k depends only on (seed, k), and the checkpoint holds the model,
  optimizer (moments and step count, hence the schedule position) and RNG
  state, so 15 steps + save + resume + 15 steps equals 30 steps.

Run it:  week1 run training_loop --framework jax   (or torch, --compile)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from week1 import convert
from week1.comparison import Case
from week1.config import require
from week1.data import shakespeare
from week1.data.batches import window_batch
from week1.tolerances import TRAJECTORY

WEIGHT_MAP = convert.CHAR_MLP  # torch state_dict <-> Flax params, for compare and parity
# The schedules of week1_jax.lib.schedules / week1_torch.lib.schedules (the lr_schedules lab).
SCHEDULES = ("warmup_cosine", "warmup_linear", "constant_with_warmup", "inverse_sqrt")


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 8000
    batch_size: int = 64
    lr: float = 3e-3  # peak learning rate of the schedule
    schedule: str = "warmup_cosine"  # one of SCHEDULES
    seed: int = 0
    block_size: int = 8  # characters of context
    n_embd: int = 24  # embedding size per character
    n_hidden: int = 256
    dropout: float = 0.0
    weight_decay: float = 0.01  # on matrices only, never on biases and norm scales
    warmup_steps: int = 100
    final_lr: float = 3e-4
    val_fraction: float = 0.1
    eval_every: int = 500
    eval_batches: int = 20
    checkpoint_every: int = 1000  # 0: no checkpoints
    sample_chars: int = 300
    temperature: float = 0.8

    def memory_bytes(self, vocab_size: int = 256) -> int:
        """About what a run holds at once (float32): parameters, their gradients and two AdamW
        moments, plus one batch's activations; `vocab_size` at most 256 (bytes)."""
        V, T, C, H, B = vocab_size, self.block_size, self.n_embd, self.n_hidden, self.batch_size
        params = V * C + T * C * H + 3 * H + H * V + V
        activations = B * (T * C + 4 * H + 3 * V) + B * T  # embeddings, hidden, logits; ids
        return 4 * (4 * params + 2 * activations)

    def check(self) -> None:
        """What ties fields together (each field's own range is week1.config's RANGES)."""
        require(
            self.schedule in SCHEDULES,
            f"schedule={self.schedule!r}: allowed: {', '.join(SCHEDULES)}",
        )
        require(
            self.warmup_steps <= self.steps,
            f"warmup_steps={self.warmup_steps}: must be in [0, steps={self.steps}]",
        )
        require(self.final_lr <= self.lr, f"final_lr={self.final_lr}: must be <= lr={self.lr}")


@dataclasses.dataclass(frozen=True)
class Data:
    corpus: shakespeare.CharCorpus
    train: np.ndarray  # (N_train,) uint8 ids
    val: np.ndarray  # (N_val,) uint8 ids

    @property
    def vocab_size(self) -> int:
        return self.corpus.vocab_size


def load_data(cfg: Config) -> Data:
    corpus = shakespeare.prepare()
    train, val = corpus.split(cfg.val_fraction)
    return Data(corpus, train, val)


def train_batch(data: Data, cfg: Config, step: int):
    """Training batch `step`: x (B, T) int32, y (B,) int32, the same in both frameworks."""
    return window_batch(data.train, cfg.block_size, cfg.batch_size, cfg.seed, step)


def val_batches(data: Data, cfg: Config) -> list:
    """A fixed set of validation batches (seeded apart from training), so evaluations compare."""
    return [
        window_batch(data.val, cfg.block_size, cfg.batch_size, cfg.seed + 1_000_003, k)
        for k in range(cfg.eval_batches)
    ]


def unigram_baseline(data: Data) -> float:
    """Cross-entropy (nats) of the validation text under the training text's character
    frequencies."""
    counts = np.bincount(data.train, minlength=data.vocab_size).astype(np.float64) + 1.0  # add-one
    log_p = np.log(counts / counts.sum())
    return float(-log_p[data.val].mean())


def prompt_ids(data: Data, cfg: Config) -> np.ndarray:
    """The sampling prompt: the first `block_size` characters of the validation text."""
    return data.val[: cfg.block_size].astype(np.int32)


@dataclasses.dataclass
class History:
    """What a training run measured; both frameworks fill it the same way."""

    steps: list = dataclasses.field(default_factory=list)  # step of each train loss
    train_loss: list = dataclasses.field(default_factory=list)
    val_steps: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    first_step_s: float = 0.0  # the first step: compilation (jit, torch.compile) plus one step
    timed_s: float = 0.0  # the steps after it (evaluation and checkpoints excluded)

    def add_train(self, step: int, loss: float, seconds: float, log=None) -> None:
        if self.steps:
            self.timed_s += seconds
        else:
            self.first_step_s = seconds
        self.steps.append(step)
        self.train_loss.append(loss)
        if log:
            log(step, train_loss=loss)

    def add_val(self, step: int, loss: float, log=None) -> None:
        self.val_steps.append(step)
        self.val_loss.append(loss)
        if log:
            log(step, val_loss=loss)

    @property
    def steps_per_s(self) -> float:
        return (len(self.steps) - 1) / self.timed_s if self.timed_s > 0 else 0.0

    def summary(self) -> dict:
        return {
            "final_train_loss": self.train_loss[-1] if self.train_loss else float("nan"),
            "final_val_loss": self.val_loss[-1] if self.val_loss else float("nan"),
            "first_step_s": self.first_step_s,
            "steps_per_s": self.steps_per_s,
        }


def is_eval_step(cfg: Config, step: int) -> bool:
    """Evaluate after every `eval_every` steps and after the last one (steps count from 1)."""
    return step % cfg.eval_every == 0 or step == cfg.steps


def is_checkpoint_step(cfg: Config, step: int, stop_at: int | None) -> bool:
    """Checkpoint every `checkpoint_every` steps (0: never), and where a run is told to stop
    early."""
    return step == stop_at or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0)


def non_finite_what(weights: dict[str, np.ndarray]) -> str:
    """What a Diverged error names: the loss, and the first parameter (in the map's order) that
    holds a NaN or Inf, if one already does."""
    bad = next((name for name, w in weights.items() if not np.all(np.isfinite(w))), None)
    return "loss" if bad is None else f"loss (first non-finite parameter: {bad})"


# `week1 compare training_loop --quick`: a short run (the curves overlap from the first step).
COMPARE_QUICK = {"steps": 600, "eval_every": 200, "warmup_steps": 50}
COMPARE_TEST = {"steps": 30, "eval_every": 10, "warmup_steps": 5}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case: the LM, its validation loss; F32 curves after many steps (TRAJECTORY)."""
    return [Case("lm", "val loss", TRAJECTORY)]


def prepare(out_dir=None) -> list:
    """`week1 prepare training_loop`: cache the character ids (carry them to a GPU box)."""
    corpus = shakespeare.prepare(out_dir)
    return [
        f"shakespeare_chars.npy: {len(corpus.ids):,} characters, vocabulary {corpus.vocab_size}"
    ]
