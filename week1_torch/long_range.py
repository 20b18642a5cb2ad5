"""Long-range lab in PyTorch: copy memory and adding problem against the delay T, for the
from-scratch RNN/LSTM/GRU (week1_torch/lib/recurrent.py) and one layer of causal self-attention.

Read beside week1_jax/long_range.py: the same functions in the same order.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labs import long_range as spec
from week1 import loop
from week1.comparison import Curves
from week1_torch.lib import devices, optim, recurrent
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights, set_weights


class SequenceModel(nn.Module):
    """A recurrent layer (ours: "rnn", "lstm" or "gru") and a linear head at every step:
    x (B, L, in) -> (B, L, out)."""

    def __init__(self, kind: str, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.rnn = recurrent.LAYERS[kind](in_features, hidden)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, x):
        out, _ = self.rnn(x)  # (B, L, H)
        return self.head(out)  # (B, L, out)


def rope(x, positions, base: float = spec.ROPE_BASE):
    r"""Rotary position embedding (Su et al. 2021, RoFormer), in the rotate-half form of
    GPT-NeoX and Llama: x (..., L, hd) at integer positions (L,) -> (..., L, hd).

        theta_i = base^(-2i / hd),  i = 0 .. hd/2 - 1
        x'_i        = x_i cos(p theta_i) - x_{i+hd/2} sin(p theta_i)
        x'_{i+hd/2} = x_{i+hd/2} cos(p theta_i) + x_i sin(p theta_i)

    Each pair (x_i, x_{i+hd/2}) turns by the angle p theta_i: x' = R_p x with R_p a rotation,
    and R_m^T R_n = R_{n-m}, so a query at m and a key at n score q'.k' = q^T R_{n-m} k:
    the positions enter only through n - m. Computed in x's dtype.
    """
    hd = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, hd, 2, dtype=x.dtype, device=x.device) / hd)
    angles = positions.to(x.dtype)[:, None] * inv_freq[None, :]  # (L, hd/2)
    cos = torch.cat([torch.cos(angles), torch.cos(angles)], dim=-1)  # (L, hd)
    sin = torch.cat([torch.sin(angles), torch.sin(angles)], dim=-1)  # (L, hd)
    rotated = torch.cat([-x[..., hd // 2 :], x[..., : hd // 2]], dim=-1)  # rotate half
    return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    r"""One layer of causal multi-head self-attention (Vaswani et al. 2017), residual, with a
    linear head at every step: x (B, L, in) -> (B, L, out).

        h = x W_in + b_in [+ P[:L]]                   (learned: P, (max_len, d), added here)
        q, k, v = h W_q, h W_k, h W_v                 (split into n_heads of d / n_heads)
        [q_t, k_t = R_t q_t, R_t k_t]                 (rope: each head rotated, see rope())
        A = softmax(q k^T / sqrt(d / n_heads) + M)    (M: -inf above the diagonal: causal)
        out = (h + (A v) W_o) W_head

    Step t reads step s <= t through one attention weight, whatever t - s is: no
    product of per-step Jacobians stands between them. positions: "learned" (a row per
    position up to max_len: nothing for a step past it) or "rope" (no parameters; any L).

    Initialisation, the same in both frameworks: weights normal with std 1/sqrt(fan_in)
    (LeCun), biases zero, positions normal with std 0.02. (torch's default Linear init is
    sqrt(3) times smaller; from it this model finds the copy alignment markedly later.)
    """

    def __init__(
        self,
        in_features: int,
        d: int,
        out_features: int,
        max_len: int,
        n_heads: int,
        positions: str = "learned",
    ):
        super().__init__()
        self.n_heads = n_heads
        self.inp = nn.Linear(in_features, d)
        # learned: a row per position, added to the input; rope: none (q and k are rotated)
        self.pos = nn.Parameter(0.02 * torch.randn(max_len, d)) if positions == "learned" else None
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.head = nn.Linear(d, out_features)
        for linear in (self.inp, self.qkv, self.proj, self.head):
            nn.init.normal_(linear.weight, std=1.0 / math.sqrt(linear.in_features))
            nn.init.zeros_(linear.bias)

    def forward(self, x):
        B, L, _ = x.shape
        h = self.inp(x)  # (B, L, d)
        if self.pos is not None:
            h = h + self.pos[:L]
        d = h.shape[-1]
        q, k, v = self.qkv(h).chunk(3, dim=-1)  # 3 x (B, L, d)
        heads = lambda a: a.reshape(B, L, self.n_heads, -1).transpose(1, 2)  # (B, nh, L, hd)
        q, k, v = heads(q), heads(k), heads(v)
        if self.pos is None:
            t = torch.arange(L, device=x.device)
            q, k = rope(q, t), rope(k, t)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.n_heads)  # (B, nh, L, L)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        weights = torch.softmax(scores.masked_fill(~causal, -math.inf), dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, L, d)  # (B, L, d)
        return self.head(h + self.proj(y))  # (B, L, out)


def build_model(cfg: spec.Config, task: str, kind: str, T: int, weights: dict | None = None):
    """The model of one grid cell on the default device, from cfg.seed, or from `weights`
    (state_dict names, numpy)."""
    n_in, n_out = spec.io_sizes(task)
    torch.manual_seed(cfg.seed)
    if kind == "attention":
        max_len = spec.sequence_length(task, T)
        model = CausalSelfAttention(
            n_in, cfg.hidden_size, n_out, max_len, cfg.n_heads, cfg.positions
        )
    else:
        model = SequenceModel(kind, n_in, cfg.hidden_size, n_out)
    if weights is not None:
        set_weights(model, weights)
    return devices.place(model)


def task_loss(task: str):
    """The task's loss(model, x, y): copy, cross-entropy averaged over every step; adding, the
    squared error of the output at the last step."""

    def copy(model, x, y):
        logits = model(x)  # (B, L, 9)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten().long())  # (B*L, 9), (B*L,)

    def adding(model, x, y):
        prediction = model(x)[:, -1, 0]  # (B,)
        return torch.mean((prediction - y) ** 2)

    return copy if task == "copy" else adding


def make_optimizer(model, lr: float, sgd: bool = False) -> torch.optim.Optimizer:
    """Adam (our AdamW without decay), or plain SGD, at a constant lr (clipping is in
    train_step)."""
    if sgd:
        return torch.optim.SGD(model.parameters(), lr=lr)
    return optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def train_step(model, optimizer, loss, clip_norm: float):
    """step(x, y) -> {"loss", "grad_norm"}: one update, clipping the global gradient norm to
    clip_norm (0: off); the norm is the one before clipping (lib/train.train keeps it per
    step in history.per_step)."""

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        value = loss(model, x, y)
        value.backward()
        # clip_grad_norm_ returns the norm before clipping; an infinite bound leaves grads alone
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm or math.inf)
        optimizer.step()
        return {"loss": value.detach(), "grad_norm": norm}

    return step


@torch.no_grad()
def evaluate(model, loss, batches) -> float:
    """Mean loss over fixed batches."""
    return float(np.mean([float(loss(model, *devices.to_device(x, y))) for x, y in batches]))


def train_cell(
    cfg: spec.Config,
    task: str,
    kind: str,
    T: int,
    *,
    weights: dict | None = None,
    lr: float | None = None,
    clip_norm: float | None = None,
    sgd: bool = False,
    ctx=loop.BARE,
    history: loop.History | None = None,
):
    """Train one (task, model, T) cell; returns (model, History): losses, gradient norms before
    clipping (history.per_step["grad_norm"]), the validation loss every cfg.eval_every steps
    and after the last, the step times.

    lr, clip_norm, sgd: override cfg's Adam settings (the clipping experiment). A non-finite
    loss raises Diverged; `history` (when given) keeps the steps before it.
    ctx: logging (under the cell's key), stop requests, progress and torch.compile (of the
    whole step), as the caller decides; no checkpoints (spec.cell_context).
    """
    lr = cfg.lr if lr is None else lr
    clip_norm = cfg.clip_norm if clip_norm is None else clip_norm
    model = build_model(cfg, task, kind, T, weights)
    optimizer = make_optimizer(model, lr, sgd)
    loss_fn = task_loss(task)
    val = spec.val_batches(task, T, cfg)
    history = trainer.train(
        model,
        optimizer,
        train_step(model, optimizer, loss_fn, clip_norm),
        lambda step: devices.to_device(*spec.batch(task, T, cfg, step)),
        spec.cadence(cfg),
        spec.cell_context(ctx, task, kind, T),
        evaluate=lambda: {"val_loss": evaluate(model, loss_fn, val)},
        label=f"torch {spec.cell_key(task, kind, T)}",
        history=history,
    )
    return model, history


def input_grad_norms(model, task: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """||dL/dx_t|| for each input step t (the norm over the batch and features): (L,)."""
    x, y = devices.to_device(x, y)
    x.requires_grad_(True)
    task_loss(task)(model, x, y).backward()
    return torch.sqrt(torch.sum(x.grad**2, dim=(0, 2))).cpu().numpy()  # (B, L, in) -> (L,)


def clipping_demo(cfg: spec.Config, ctx=loop.BARE) -> dict:
    """The plain RNN on the adding task with its recurrent weights scaled by clip_demo_gain
    (exploding gradients) and clip_demo_lr: trained unclipped and clipped at 1, from the same
    start. Returns {arm: {"steps", "loss", "grad_norm", "non_finite_at"}}."""
    start = build_model(cfg, "adding", "rnn", cfg.clip_demo_delay)
    with torch.no_grad():
        start.rnn.weight_hh_l0.mul_(cfg.clip_demo_gain)
    weights = get_weights(start)
    return spec.clipping_arms(cfg, train_cell, weights, ctx)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run long_range --framework torch [--compile]`: the grid, the gradient norms,
    clipping."""
    return spec.run_grid(cfg, run, sys.modules[__name__], compile)


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    task, kind, T = spec.compare_cell(cfg, case)
    return get_weights(build_model(cfg, task, kind, T))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare long_range`: train the cell of `case` (spec.compare_cases) from `weights`
    (torch's names, numpy); returns its Curves."""
    task, kind, T = spec.compare_cell(cfg, case)
    _, history = train_cell(cfg, task, kind, T, weights=weights, ctx=ctx)
    return Curves.of(history)
