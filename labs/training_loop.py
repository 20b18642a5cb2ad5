"""Lab: training loops, with a character-level MLP language model on Shakespeare.

What it teaches
---------------
The training loop written out, with nothing hidden in a Trainer: draw a batch,
compute the loss, take gradients, step the optimizer, now and then evaluate on
held-out text, sample, and checkpoint so a run can stop and resume exactly.
Every lab of the week trains through this one loop, so it lives below the labs:
`week1/loop.py` is the cadence (read the losses off the device every 50 steps,
not every step; evaluate; checkpoint, always the last step too; stop cleanly on
Ctrl-C; a non-finite loss ends the run) and `week1_jax/lib/train.py` /
`week1_torch/lib/train.py` are the step in each framework (JAX: one jitted
function over the split model and optimizer state; torch: zero_grad, forward,
backward, step, with `--compile` putting the whole step through torch.compile
from outside). Read those three files beside this lab.

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

History: docs/history.md#bengio-2003
"""

from __future__ import annotations

import dataclasses

from week1 import charlm
from week1.comparison import Case
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    """The char-MLP LM's settings (week1/charlm.py): the lab trains it as it is."""


def summary(cfg: Config, data: charlm.Data, history, sample_ids) -> dict:
    """What `week1 run training_loop` prints: the History's finals and speed, the unigram
    baseline to hold the validation loss against, and the sample as text."""
    return {
        **history.summary(),
        "unigram_baseline": charlm.unigram_baseline(data),
        "sample": data.corpus.decode(sample_ids),
    }


# `week1 compare training_loop --quick`: a short run (the curves overlap from the first step).
COMPARE_QUICK = {"steps": 600, "eval_every": 200, "warmup_steps": 50}
COMPARE_TEST = {"steps": 30, "eval_every": 10, "warmup_steps": 5}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case: the LM, its validation loss; F32 curves after many steps (TRAJECTORY)."""
    return [Case("lm", "val loss", TRAJECTORY)]


def prepare(out_dir=None) -> list:
    """`week1 prepare training_loop`: cache the character ids (carry them to a GPU box)."""
    return charlm.prepare(out_dir)


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "char_mlp_forward",
        hints=(
            (
                "The char MLP of Bengio et al. (2003): embed the context characters, flatten them "
                "into one vector per example, one hidden layer, then logits over the vocabulary."
            ),
            (
                "Shapes: x (B, T) ids -> embeddings (B, T, C) -> reshape (B, T*C) -> h = "
                "tanh(ln(fc1(.))) (B, H) -> head(drop(h)) (B, V). Use the layers __init__ made "
                "(their names are the weight map's)."
            ),
        ),
        jax=Part(
            "week1_jax/lib/models.py::CharMLP.__call__",
            "test_training_loop.py::test_loss_and_grads_match",
        ),
        torch=Part(
            "week1_torch/lib/models.py::CharMLP.forward",
            "test_training_loop.py::test_loss_and_grads_match",
        ),
    ),
)
