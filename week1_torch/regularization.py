"""Regularisation lab in PyTorch: dropout and LayerNorm from scratch, weight decay vs an L2
penalty, on the training_loop LM made to overfit.

Read beside week1_jax/regularization.py: the same functions in the same order.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labs import regularization as spec
from week1 import charlm, loop
from week1.comparison import Curves
from week1_torch.lib import devices, optim, schedules
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights, set_weights


class LayerNorm(nn.Module):
    r"""Layer normalisation over the last axis (Ba et al. 2016), from scratch::

        mu = mean(x),  var = mean((x - mu)^2)          (biased variance)
        y  = (x - mu) / sqrt(var + eps) * weight + bias

    The maths of torch.nn.LayerNorm(eps=eps) (same parameter names) and
    nnx.LayerNorm(epsilon=eps); their default eps differ (1e-5 vs 1e-6), so eps has no
    default here.
    """

    def __init__(self, n: int, *, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x):  # x: (..., n)
        mu = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = (x - mu).square().mean(dim=-1, keepdim=True)  # (..., 1)
        return (x - mu) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class Dropout(nn.Module):
    r"""Inverted dropout (Srivastava et al. 2014), from scratch::

        y = x * m / (1 - p),   m ~ Bernoulli(1 - p) per element,   so E[y] = x

    and y = x in eval mode (`model.eval()`). `keep` injects the mask m (bool, like x)
    instead of drawing it from torch's global generator.
    """

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x, keep=None):
        if not self.training or self.rate == 0.0:
            return x
        if keep is None:
            keep = torch.rand_like(x) >= self.rate
        return torch.where(keep, x / (1.0 - self.rate), torch.zeros_like(x))


class RegularizedMLP(nn.Module):
    """The training_loop's char MLP with each regulariser optional: embed a window, concatenate,
    fc1, [LayerNorm], tanh, [dropout], head."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int,
        n_hidden: int,
        *,
        dropout: float,
        layernorm: bool,
        ln_eps: float,
    ):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.fc1 = nn.Linear(block_size * n_embd, n_hidden)
        self.ln = LayerNorm(n_hidden, eps=ln_eps) if layernorm else None
        self.drop = Dropout(dropout)
        self.head = nn.Linear(n_hidden, vocab_size)

    def forward(self, x, keep=None):  # x: (B, T) int
        B, T = x.shape
        h = self.wte(x).reshape(B, -1)  # (B, T*C)
        h = self.fc1(h)  # (B, H)
        if self.ln is not None:
            h = self.ln(h)
        h = torch.tanh(h)
        return self.head(self.drop(h, keep=keep))  # (B, V)


def build_model(
    cfg: spec.Config, arm: spec.Arm, vocab_size: int, weights: dict | None = None
) -> RegularizedMLP:
    """The arm's model on the default device from cfg.seed (every arm starts from the same
    wte/fc1/head), or from `weights` (state_dict names)."""
    torch.manual_seed(cfg.seed)
    model = RegularizedMLP(
        vocab_size,
        cfg.block_size,
        cfg.n_embd,
        cfg.n_hidden,
        dropout=arm.dropout,
        layernorm=arm.layernorm,
        ln_eps=cfg.ln_eps,
    )
    if weights is not None:
        set_weights(model, weights)
    return devices.place(model)


def make_optimizer(model: RegularizedMLP, cfg: spec.Config, arm: spec.Arm):
    """From-scratch AdamW on cfg.schedule, decoupled decay arm.weight_decay on matrices only."""
    optimizer = optim.AdamW(optim.param_groups(model, arm.weight_decay))
    return optimizer, schedules.lambda_lr(optimizer, schedules.from_config(cfg))


def as_tensors(x: np.ndarray, y: np.ndarray, device: torch.device | None = None):
    return devices.to_device(x, y, dtype=torch.long, device=device)


def l2_penalty(model: RegularizedMLP):
    """0.5 * sum of squares of the matrices (ndim >= 2: the weights AdamW's groups decay)."""
    return 0.5 * sum(p.square().sum() for p in model.parameters() if p.ndim >= 2)


def loss_fn(model: RegularizedMLP, x, y, l2: float, keep=None):
    """(cross-entropy + l2 * l2_penalty, cross-entropy): the optimised loss and the logged one."""
    logits = model(x, keep=keep)  # (B, V)
    ce = F.cross_entropy(logits, y)
    return (ce + l2 * l2_penalty(model) if l2 else ce), ce


def train_step(model, optimizer, x, y, keep, *, l2: float):
    """One update for lib/train (which steps the schedule after it): x, y, keep -> cross-entropy
    (keep: an injected dropout keep-mask (B, H), or None to draw from torch's RNG)."""
    optimizer.zero_grad(set_to_none=True)
    loss, ce = loss_fn(model, x, y, l2, keep=keep)
    loss.backward()
    optimizer.step()
    return ce.detach()


@torch.no_grad()
def evaluate(model: RegularizedMLP, batches) -> float:
    """Mean cross-entropy over `batches`, dropout off."""
    model.eval()
    device = next(model.parameters()).device
    loss = float(
        np.mean([float(loss_fn(model, *as_tensors(x, y, device), 0.0)[1]) for x, y in batches])
    )
    model.train()
    return loss


def train(
    cfg: spec.Config,
    arm: spec.Arm,
    data,
    *,
    weights: dict | None = None,
    ctx: loop.Context = loop.BARE,
    same_masks: bool = False,
):
    """Train one arm for cfg.steps (or until ctx.stop_at) through lib/train; returns (model,
    History). Dropout draws from torch's global RNG (seeded by build_model, restored from a
    checkpoint); same_masks: its keep-masks from spec.step_keep_mask instead, as the JAX run
    draws them. ctx.compile: the whole step through torch.compile."""
    model = build_model(cfg, arm, data.vocab_size, weights)
    optimizer, scheduler = make_optimizer(model, cfg, arm)
    val = charlm.val_batches(data, cfg)

    def batch(i):
        x, y = as_tensors(*charlm.train_batch(data, cfg, i))  # (B, T), (B,)
        keep = spec.step_keep_mask(cfg, arm, i) if same_masks else None  # (B, H) | None
        return x, y, None if keep is None else devices.to_device(keep)[0]

    history = trainer.train(
        model,
        optimizer,
        functools.partial(train_step, model, optimizer, l2=arm.l2),
        batch,
        loop.Cadence.of(cfg),
        ctx,
        scheduler=scheduler,
        evaluate=lambda: {"val_loss": evaluate(model, val)},
        label=f"torch {arm.name}",
    )
    return model, history


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run regularization --framework torch`: the ablation grid, gap.png and its table."""
    data = spec.load_data(cfg)
    return spec.run_grid(
        cfg, run, lambda arm, ctx: train(cfg, arm, data, ctx=ctx)[1], compile=compile
    )


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    data = spec.load_data(cfg)
    arm = spec.arm(cfg, case)
    return get_weights(build_model(cfg, arm, data.vocab_size))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare regularization`: train arm `case` from `weights` (torch's names, numpy) with
    the injected keep-masks; returns its Curves."""
    data = spec.load_data(cfg)
    arm = spec.arm(cfg, case)
    _, history = train(cfg, arm, data, weights=weights, ctx=ctx, same_masks=True)
    return Curves.of(history)
