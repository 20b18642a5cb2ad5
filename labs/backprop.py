"""Lab: backpropagation by hand, through the character MLP, checked against autograd.

What it teaches
---------------
Every other lab gets its gradients from `jax.grad` or `loss.backward()`. Here the char-MLP
language model of the training_loop lab (Bengio et al. 2003; week1_*/lib/models.CharMLP)
gets its backward pass written out, one line per forward line, in both frameworks
(week1_jax/backprop.py, week1_torch/backprop.py: read `forward` and `backward` side by side).
The model keeps its LayerNorm, so its backward is derived too.

Forward, for a batch of B windows of T characters (C embedding width, H hidden, V vocabulary):

    emb    = wte[x]                         (B, T, C)   gather rows of the (V, C) table
    hcat   = emb.reshape(B, T*C)            (B, T*C)
    hpre   = hcat @ W1.T + b1               (B, H)      W1: (H, T*C), torch's layout
    xhat   = (hpre - mean) * rstd           (B, H)      rstd = 1 / sqrt(var + eps), per row
    hln    = xhat * g + beta                (B, H)
    h      = tanh(hln)                      (B, H)
    logits = h @ W2.T + b2                  (B, V)
    loss   = mean_b( -log softmax(logits)[b, y_b] )

Backward: the chain rule, dL/du = sum over what u feeds of (dL/dv)(dv/du), in reverse order.
Write d<name> for dL/d<name>; it has <name>'s shape.

- dlogits = (softmax(logits) - onehot(y)) / B. For one row, L = -z_y + log sum_j exp(z_j), so
  dL/dz_j = exp(z_j) / sum exp(z) - [j = y] = p_j - y_j. The mean over the batch adds 1/B.
  (Softmax's own Jacobian, diag(p) - p p^T, meets the log's 1/p and collapses to this.)
- A linear layer v = u @ W.T + b gives dW = dv.T @ u (sum over the batch of outer products),
  db = dv summed over the batch, du = dv @ W. Check the shapes: (V, B) @ (B, H) = (V, H).
- tanh: d/da tanh(a) = 1 - tanh(a)^2, so dhln = dh * (1 - h^2), from the saved output h.
- LayerNorm's affine part: dg = sum_b dhln * xhat, dbeta = sum_b dhln, dxhat = dhln * g.
- The normalisation: xhat depends on hpre directly and through the row's mean and variance,
  and the three paths sum to
      dhpre = rstd * (dxhat - mean_j(dxhat) - xhat * mean_j(dxhat * xhat))   (means over H)
  (the result is orthogonal to the constant and to xhat: LayerNorm's output cannot move along
  the directions it normalises away).
- reshape: demb = dhcat.reshape(B, T, C): a reshape moves no numbers, nor does its gradient.
- gather: dwte = zeros(V, C), then dwte[x[b, t]] += demb[b, t] for every position: a
  character seen k times in the batch gets k contributions (a scatter-add, `index_add_` /
  `.at[].add`); rows of characters not in the batch get zero gradient.

Checks, per tensor, in float64 and float32 (the F64 and F32 tiers): the hand-written
gradients against `torch.autograd` of `nn.Module` CharMLP and against `jax.grad` of the Flax
CharMLP, and central finite differences (L(w + eps e_i) - L(w - eps e_i)) / 2 eps at a few
coordinates of every tensor, in float64.

How to read the results
-----------------------
- One row per (dtype, tensor): max |ours - autograd|, the headroom of the tier (the worst
  element's difference over what the tier allows: 1.0 is the limit) and ok. Float64 agrees to
  ~1e-16 relative: the same sums in a different order. Float32 agrees to ~1e-7: rounding only.
- The finite-difference rows: a few coordinates each, float64; agreement to ~1e-9 relative
  says the formulas, not just the code, are right (autograd could share a mistake with us in
  the model definition; finite differences see only the loss).
- `wte` rows of characters absent from the batch are exactly zero in all three.

Run it:  week1 run backprop --framework jax   (or torch; --batch_size=64 --n_hidden=128 ...)

History: docs/history.md#rumelhart-1986, #bengio-2003, #ba-2016
"""

from __future__ import annotations

import dataclasses

import numpy as np

from week1 import convert
from week1.config import Range
from week1.data import batches, shakespeare
from week1.exercises import Exercise, Part
from week1.tolerances import F32, F64, measure

WEIGHT_MAP = convert.CHAR_MLP  # torch state_dict <-> Flax params
EPS = 1e-5  # LayerNorm's eps (CharMLP passes torch's default to both frameworks)
TIERS = {"float64": F64, "float32": F32}


@dataclasses.dataclass(frozen=True)
class Config:
    block_size: int = 8
    n_embd: int = 16
    n_hidden: int = 64
    batch_size: int = 32
    seed: int = 0
    fd_coords: int = 3  # finite-difference coordinates checked per tensor
    fd_step: float = 1e-5  # eps of the central difference

    RANGES = {"fd_coords": Range(1, 1000), "fd_step": Range(0, 1e-2, low_open=True)}


def load_batch(cfg: Config) -> tuple[np.ndarray, np.ndarray, int]:
    """One batch of Shakespeare windows: x (B, T) int32, y (B,) int32, and the vocabulary size."""
    corpus = shakespeare.prepare()
    x, y = batches.window_batch(corpus.ids, cfg.block_size, cfg.batch_size, cfg.seed, 0)
    return x, y, corpus.vocab_size


def init_weights(cfg: Config, vocab_size: int) -> dict[str, np.ndarray]:
    """Float64 start weights with torch's names. LayerNorm's gain and bias are drawn away from
    1 and 0, so that a mistake in their gradients cannot hide behind the identity."""
    rng = np.random.default_rng(cfg.seed)
    fan_in = cfg.block_size * cfg.n_embd

    def normal(shape, scale):
        return rng.normal(scale=scale, size=shape)

    return {
        "wte.weight": normal((vocab_size, cfg.n_embd), 1.0),
        "fc1.weight": normal((cfg.n_hidden, fan_in), fan_in**-0.5),
        "fc1.bias": normal((cfg.n_hidden,), 0.1),
        "ln.weight": 1 + normal((cfg.n_hidden,), 0.1),
        "ln.bias": normal((cfg.n_hidden,), 0.1),
        "head.weight": normal((vocab_size, cfg.n_hidden), cfg.n_hidden**-0.5),
        "head.bias": normal((vocab_size,), 0.1),
    }


def compare(dtype: str, ours: dict, reference: dict, against: str) -> list[tuple]:
    """Rows (dtype, tensor, against, shape, max abs diff, headroom, ok), one per tensor, in the
    tier of `dtype`."""
    tier = TIERS[dtype]
    rows = []
    for name in reference:
        diff = measure(ours[name], reference[name], tier, f"backprop {dtype}", name)
        shape = "x".join(map(str, np.shape(reference[name])))
        rows.append((dtype, name, against, shape, diff.max_abs, diff.headroom, diff.ok))
    return rows


def finite_differences(loss64, weights: dict, grads: dict, cfg: Config) -> list[tuple]:
    """Central differences of the float64 loss at `fd_coords` random coordinates per tensor,
    against our gradient there. Rows as compare(); the tier is F32 (the difference quotient
    itself is only good to ~eps^2 + 1e-16 / eps)."""
    rng = np.random.default_rng(cfg.seed + 1)
    rows = []
    for name, w in weights.items():
        flat = rng.choice(w.size, size=min(cfg.fd_coords, w.size), replace=False)
        numeric, analytic = [], []
        for i in flat:
            idx = np.unravel_index(i, w.shape)
            quotient = []
            for sign in (1, -1):
                moved = dict(weights)
                moved[name] = w.copy()
                moved[name][idx] += sign * cfg.fd_step
                quotient.append(loss64(moved))
            numeric.append((quotient[0] - quotient[1]) / (2 * cfg.fd_step))
            analytic.append(grads[name][idx])
        diff = measure(np.array(analytic), np.array(numeric), F32, "backprop fd", name)
        rows.append(
            (
                "float64",
                name,
                "finite diff",
                f"{len(flat)} coords",
                diff.max_abs,
                diff.headroom,
                diff.ok,
            )
        )
    return rows


def report(rows: list[tuple], loss_rows: list[tuple]) -> dict:
    """Print the per-tensor table; the summary `week1 run` prints after it."""
    from week1 import report as rich_report

    rich_report.table(
        "loss: hand-written forward vs the framework's CharMLP",
        ["dtype", "ours", "module", "|diff|"],
        loss_rows,
    )
    rich_report.table(
        "gradients: hand-written backward vs autograd and finite differences",
        ["dtype", "tensor", "against", "shape", "max |diff|", "headroom", "ok"],
        rows,
    )
    worst = {}
    for dtype, _, against, *_, headroom, _ in rows:
        key = f"worst headroom {dtype} vs {against}"
        worst[key] = max(worst.get(key, 0.0), headroom)
    return {"tensors checked": len(rows), "all ok": all(r[-1] for r in rows), **worst}


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "backward",
        hints=(
            (
                "Walk forward() backwards: one line of chain rule per forward line, reading what "
                "forward() kept in `cache`."
            ),
            (
                "Start from dlogits = (softmax(logits) - onehot(y)) / B; a Linear y = x W + b gives"
                " dW = x^T dy, db = sum dy, dx = dy W^T."
            ),
            (
                "LayerNorm's input gradient: dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))"
                " / sqrt(var + eps); tanh' = 1 - h^2; the embedding gradient scatters dx rows back "
                "onto the ids (index_add / .at[].add)."
            ),
        ),
        jax=Part(
            "week1_jax/backprop.py::backward",
            (
                "test_backprop.py::test_hand_backward_equals_autograd[jax",
                "test_backprop.py::test_finite_differences_confirm_the_float64_gradients[jax]",
            ),
        ),
        torch=Part(
            "week1_torch/backprop.py::backward",
            (
                "test_backprop.py::test_hand_backward_equals_autograd[torch",
                "test_backprop.py::test_finite_differences_confirm_the_float64_gradients[torch]",
            ),
        ),
    ),
)
