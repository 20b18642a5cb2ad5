"""long_range parity: the same task batches, losses, gradient-norm curves and short trainings in
both frameworks, from the same weights.

- batches are numpy (EXACT, deterministic in (seed, step)) and are what the handout says:
  the copy target is the first 10 symbols after T + 10 blanks, the adding target the sum of
  the two marked values, one in each half; the baselines are the memoryless losses;
- for each task x model (RNN, LSTM, GRU, attention): the loss and ||dL/dx_t|| at every input
  step from torch's init converted to JAX (F32);
- short trainings, clipped and (exploding, unclipped) not: losses and gradient norms per step
  (TRAJECTORY);
- RoPE: q/k rotated in JAX and torch equal the rotation of each pair written out in numpy and
  transformers' Llama rotary embedding (F32); the attention scores of rotated q and k depend on
  the positions only through their difference (F64, both frameworks); the attention model's
  loss and every parameter's gradient, learned positions and RoPE, JAX = torch (F32).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from labs import long_range as spec
from week1 import convert
from week1.tolerances import EXACT, F32, F64, TRAJECTORY, assert_close, assert_tree_close
from week1_jax import long_range as jax_lab
from week1_jax.lib.models import named_arrays
from week1_torch import long_range as torch_lab
from week1_torch.lib.models import get_weights

CFG = spec.Config(batch_size=8, hidden_size=8, n_heads=2, eval_batches=1)
T = 6


def test_copy_batches():
    x, y = spec.copy_batch(T, 4, seed=0, step=3)
    again = spec.copy_batch(T, 4, seed=0, step=3)
    assert_close("long_range batches", "copy x", again[0], x, EXACT)
    tokens = x.argmax(-1)  # (B, L)
    L = spec.sequence_length("copy", T)
    assert x.shape == (4, L, spec.COPY_INPUTS) and y.shape == (4, L)
    symbols = tokens[:, : spec.COPY_LENGTH]
    assert np.all((symbols >= 1) & (symbols <= spec.N_SYMBOLS))
    assert np.all(tokens[:, T + spec.COPY_LENGTH - 1] == spec.DELIMITER)
    blanks = np.delete(np.arange(spec.COPY_LENGTH, L), T - 1)  # all but the delimiter
    assert np.all(tokens[:, blanks] == spec.BLANK)
    assert np.all(y[:, : L - spec.COPY_LENGTH] == spec.BLANK)
    assert_close("long_range batches", "copy target", y[:, -spec.COPY_LENGTH :], symbols, EXACT)


def test_copy_baseline_is_the_memoryless_loss():
    """Blanks with certainty until the last 10 steps, then uniform over the 8 symbols: the
    cross-entropy is 10 log 8 / (T + 20)."""
    _, y = spec.copy_batch(T, 16, seed=0, step=1)
    L = spec.sequence_length("copy", T)
    probs = np.zeros((L, spec.COPY_CLASSES))
    probs[: L - spec.COPY_LENGTH, spec.BLANK] = 1.0
    probs[L - spec.COPY_LENGTH :, 1:] = 1.0 / spec.N_SYMBOLS
    loss = -np.mean(np.log(probs[np.arange(L)[None, :], y]))
    assert_close("long_range baselines", "copy", loss, spec.baseline("copy", T), F32)


def test_adding_batches_and_baseline():
    x, y = spec.adding_batch(T, 4, seed=0, step=2)
    assert x.shape == (4, T, 2) and y.shape == (4,)
    marked = x[..., 1] == 1.0  # (B, T)
    assert np.all(marked[:, : T // 2].sum(1) == 1) and np.all(marked[:, T // 2 :].sum(1) == 1)
    assert_close("long_range batches", "adding y", y, (x[..., 0] * marked).sum(1), F32)
    # Always answering 1 scores E[(S - 1)^2] = Var(S) = 1/6 for S = U1 + U2 (triangular on
    # [0, 2]); over n sums the mean is within 4 standard errors of it, the squared error's
    # variance being E[(S - 1)^4] - 1/36 = 1/15 - 1/36.
    n = 100_000
    _, many = spec.adding_batch(T, n, seed=0, step=1)
    error = abs(np.mean((many - 1.0) ** 2) - spec.ADDING_BASELINE)
    assert error < 4 * math.sqrt((1 / 15 - 1 / 36) / n)


def weights_from_torch(task: str, kind: str, cfg: spec.Config = CFG) -> dict:
    return get_weights(torch_lab.build_model(cfg, task, kind, T))


@pytest.mark.parametrize("task", spec.TASKS)
@pytest.mark.parametrize("kind", spec.MODELS)
def test_loss_and_gradient_norm_curve(task, kind):
    """From the same weights: the loss and ||dL/dx_t|| for every input step t (F32)."""
    weights = weights_from_torch(task, kind)
    x, y = spec.val_batches(task, T, CFG)[0]
    torch_model = torch_lab.build_model(CFG, task, kind, T, weights)
    jax_model = jax_lab.build_model(CFG, task, kind, T, weights)
    check = f"long_range {task} {kind}"
    assert_close(
        check,
        "loss",
        jax_lab.evaluate(jax_model, jax_lab.task_loss(task), [(x, y)]),
        torch_lab.evaluate(torch_model, torch_lab.task_loss(task), [(x, y)]),
        F32,
    )
    assert_close(
        check,
        "||dL/dx_t||",
        jax_lab.input_grad_norms(jax_model, task, x, y),
        torch_lab.input_grad_norms(torch_model, task, x, y),
        F32,
    )


@pytest.mark.parametrize(
    "task, kind, gain, lr, clip_norm, sgd",
    [("copy", "lstm", 1.0, 1e-2, 1.0, False), ("adding", "rnn", 4.0, 0.05, 0.0, True)],
    ids=["copy-lstm-adam-clipped", "adding-rnn-exploding-sgd-unclipped"],
)
def test_short_training(task, kind, gain, lr, clip_norm, sgd):
    """10 steps from the same start: losses and gradient norms before clipping (TRAJECTORY)."""
    weights = weights_from_torch(task, kind)
    if gain != 1.0:
        weights["rnn.weight_hh_l0"] = weights["rnn.weight_hh_l0"] * gain
    runs = {
        lab: lab.train_cell(
            dataclasses.replace(CFG, steps=10),
            task,
            kind,
            T,
            weights=weights,
            lr=lr,
            clip_norm=clip_norm,
            sgd=sgd,
        )
        for lab in (jax_lab, torch_lab)
    }
    (_, jax_run), (_, torch_run) = runs.values()
    check = f"long_range {task} {kind} 10 steps (clip {clip_norm})"
    assert len(jax_run.train_loss) == 10
    assert_close(check, "loss", jax_run.train_loss, torch_run.train_loss, TRAJECTORY)
    jax_norms, torch_norms = jax_run.per_step["grad_norm"], torch_run.per_step["grad_norm"]
    assert_close(check, "gradient norm", jax_norms, torch_norms, TRAJECTORY)


def rope_written_out(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """RoFormer's rotation in float64, one pair at a time: (x_i, x_{i+hd/2}) turned by the angle
    p base^(-2i/hd) with a 2 x 2 rotation matrix."""
    hd = x.shape[-1]
    out = np.empty(x.shape, dtype=np.float64)
    for t, p in enumerate(positions):
        for i in range(hd // 2):
            angle = p * base ** (-2.0 * i / hd)
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            pair = np.stack([x[..., t, i], x[..., t, i + hd // 2]], axis=-1)  # (..., 2)
            turned = pair @ rotation.T
            out[..., t, i], out[..., t, i + hd // 2] = turned[..., 0], turned[..., 1]
    return out


def test_rope_jax_torch_numpy_transformers():
    """q (B, heads, L, hd) rotated at positions 3..3+L-1: JAX = torch = numpy written out =
    transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb (F32)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama import modeling_llama as llama

    B, H, L, hd = 2, 3, 11, 8
    rng = np.random.default_rng(0)
    q = rng.normal(size=(B, H, L, hd)).astype(np.float32)
    positions = np.arange(3, 3 + L)
    reference = rope_written_out(q, positions, spec.ROPE_BASE)
    jax_out = np.asarray(jax_lab.rope(jnp.asarray(q), jnp.asarray(positions)))
    torch_out = torch_lab.rope(torch.from_numpy(q), torch.from_numpy(positions)).numpy()
    assert_close("rope", "jax vs numpy", jax_out, reference, F32)
    assert_close("rope", "torch vs numpy", torch_out, reference, F32)
    config = transformers.LlamaConfig(
        hidden_size=H * hd,
        num_attention_heads=H,
        head_dim=hd,
        rope_parameters={"rope_type": "default", "rope_theta": spec.ROPE_BASE},
    )
    rotary = llama.LlamaRotaryEmbedding(config)
    cos, sin = rotary(torch.from_numpy(q), torch.from_numpy(positions)[None, :])
    hf, _ = llama.apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(q), cos, sin)
    assert_close("rope", "torch vs transformers", torch_out, hf.numpy(), F32)
    assert_close("rope", "jax vs transformers", jax_out, hf.numpy(), F32)


def rope_scores(lab, q: np.ndarray, k: np.ndarray, q_at: np.ndarray, k_at: np.ndarray):
    """(L, L) scores of q rotated at positions q_at against k rotated at k_at, in float64."""
    if lab is torch_lab:
        rq = lab.rope(torch.from_numpy(q), torch.from_numpy(q_at))
        rk = lab.rope(torch.from_numpy(k), torch.from_numpy(k_at))
        return (rq @ rk.T).numpy()
    with jax.enable_x64(True):
        rq = lab.rope(jnp.asarray(q), jnp.asarray(q_at))
        rk = lab.rope(jnp.asarray(k), jnp.asarray(k_at))
        return np.asarray(rq @ rk.T)


@pytest.mark.parametrize("lab", [jax_lab, torch_lab], ids=["jax", "torch"])
def test_rope_scores_depend_only_on_relative_position(lab):
    """q_m . k_n after the rotations is q^T R_{n-m} k: shifting every position by the same
    offset leaves the scores as they were (F64); shifting the keys alone does not."""
    L, hd = 9, 16
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(L, hd)), rng.normal(size=(L, hd))  # float64
    at = np.arange(L)
    scores = rope_scores(lab, q, k, at, at)
    for offset in (1, 37, 1000):
        shifted = rope_scores(lab, q, k, at + offset, at + offset)
        assert_close("rope relative positions", f"shift {offset}", shifted, scores, F64)
        keys_only = rope_scores(lab, q, k, at, at + offset)
        assert not np.allclose(keys_only, scores, rtol=1e-3), f"shift of k alone by {offset}"


@pytest.mark.parametrize("task", spec.TASKS)
@pytest.mark.parametrize("positions", spec.POSITIONS)
def test_attention_loss_and_parameter_gradients(positions, task):
    """The attention model from torch's init (the positions' weight map): the loss and the
    gradient of every parameter, JAX = torch (F32)."""
    cfg = dataclasses.replace(CFG, positions=positions)
    weights = weights_from_torch(task, "attention", cfg)
    x, y = spec.val_batches(task, T, cfg)[0]
    torch_model = torch_lab.build_model(cfg, task, "attention", T, weights)
    value = torch_lab.task_loss(task)(torch_model, *torch_lab.devices.to_device(x, y))
    value.backward()
    torch_grads = {n: p.grad.cpu().numpy() for n, p in torch_model.named_parameters()}
    jax_model = jax_lab.build_model(cfg, task, "attention", T, weights)
    jax_value, grads = nnx.value_and_grad(jax_lab.task_loss(task))(jax_model, x, y)
    table = spec.ATTENTION_MAP if positions == "learned" else spec.ROPE_ATTENTION_MAP
    jax_grads = convert.flax_to_torch(named_arrays(grads), table)
    check = f"long_range attention {positions} {task}"
    assert_close(check, "loss", float(jax_value), value.item(), F32)
    assert_tree_close(f"{check} gradients", jax_grads, torch_grads, F32)


@pytest.mark.slow
@pytest.mark.parametrize("lab", [jax_lab, torch_lab], ids=["jax", "torch"])
def test_run_writes_its_plots(lab, tmp_path):
    """A tiny grid through the Run contract: every cell and every measured positions entry in the
    summary, the four PNGs."""
    from week1.runs import Run

    cfg = dataclasses.replace(CFG, steps=4, delays="3,4", clip_demo_delay=4, extrapolation_delay=3)
    with Run("long_range", "x", cfg, root=tmp_path, tensorboard=False) as run:
        summary = lab.run(cfg, run)
    for name in ("loss", "grad_norms", "clipping", "positions"):
        assert run.path(f"long_range_{name}.png").exists()
    cells = [spec.cell_key(t, m, T) for t in spec.TASKS for m in spec.MODELS for T in (3, 4)]
    measured = [(k, m) for k in spec.POSITIONS for m in spec.EXTRAPOLATION if k == "rope" or m == 1]
    cells += [f"positions/{t}/{k}/{m}T" for t in spec.TASKS for k, m in measured]
    assert all(math.isfinite(summary[key]) for key in cells)
    assert "positions/copy/learned/2T" not in summary  # no learned row past the trained length
