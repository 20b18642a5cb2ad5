"""Monitoring lab in PyTorch: gradient norms, update ratios, clipping, and a clean stop on NaN or
spike.

Read beside week1_jax/monitoring.py. Model, data, optimizer and schedule are
the char LM's (lib/charlm.py); the step (run by lib/train, compiled whole under
--compile) looks at the gradients between the backward pass and the update, and
returns what it saw beside the loss, read every LOG_EVERY steps with it.
"""

from __future__ import annotations

import functools

import torch

from labs import monitoring as spec
from week1 import charlm, loop
from week1.comparison import Curves
from week1.runs import Diverged
from week1_torch.lib import charlm as lm
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights


def named(model) -> dict:
    """The model's gradients as {"fc1.weight": tensor, ...}, in forward order."""
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {name: grads[name] for name in spec.forward_order(grads)}


def grad_step(model, x, y):
    """Loss and gradients (in each p.grad) of one batch; nothing is updated yet.

    The old gradients are dropped by setting each p.grad to None: model.zero_grad's `if p.grad
    is not None` would make torch.compile guard on it and recompile at step 2, a timed step."""
    for p in model.parameters():
        p.grad = None
    loss = lm.loss_fn(model, x, y)
    loss.backward()
    return loss.detach(), named(model)


@torch.no_grad()
def inject_nan(grads: dict, layer: str, poison) -> dict:
    """Set element 0 of each of `layer`'s gradients to NaN where `poison` (a bool tensor) is
    true, in place (what an overflow would do)."""
    for name, g in grads.items():
        if spec.layer_of(name) == layer:
            first = g.view(-1)[:1]
            first.copy_(torch.where(poison, torch.full_like(first, float("nan")), first))
    return grads


def finite_flags(loss, grads: dict):
    """(all finite, index of the first NaN/Inf holder): the loss and every gradient finite (a
    bool tensor), and 0 for the loss or i for the (i-1)-th gradient in forward order
    (spec.what_non_finite names it; meaningless when all are finite); read with the loss."""
    finite = torch.stack([torch.isfinite(loss)] + [torch.isfinite(g).all() for g in grads.values()])
    return finite.all(), (~finite).int().argmax()


@torch.no_grad()
def layer_norms(tensors: dict) -> dict:
    """{layer: sqrt(sum of squares over all the layer's tensors)}."""
    squares = {}
    for name, a in tensors.items():
        squares[spec.layer_of(name)] = squares.get(spec.layer_of(name), 0.0) + a.square().sum()
    return {layer: s.sqrt() for layer, s in squares.items()}


@torch.no_grad()
def global_norm(grads: dict):
    """||g|| = sqrt(sum_i g_i^2) over every tensor (what clipping compares with clip_norm)."""
    return torch.sqrt(sum(g.square().sum() for g in grads.values()))


def clip_grads(model, max_norm: float):
    """torch.nn.utils.clip_grad_norm_: g * min(1, max_norm / ||g||), in place; returns ||g||
    before."""
    return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)


@torch.no_grad()
def apply_update(model, optimizer, clip_norm: float) -> dict:
    """Clip (if clip_norm > 0), step AdamW, and return the update/parameter ratio per layer."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    if clip_norm:
        clip_grads(model, clip_norm)
    optimizer.step()
    delta = {name: p - before[name] for name, p in model.named_parameters()}
    delta_norms, param_norms = layer_norms(delta), layer_norms(before)
    return {layer: delta_norms[layer] / param_norms[layer] for layer in param_norms}


def train_step(model, optimizer, cfg: spec.Config, x, y, poison) -> dict:
    """The watched step for lib/train: {loss, finite, first_non_finite, grad_norm, clipped,
    grad_norm/<layer>, update_ratio/<layer>}, all read with the loss.

    Gradients, the injected NaN where `poison`, the checks and norms, then clip and AdamW
    (lib/train steps the schedule). A bad step's update is made, but the loop stops at it
    before any checkpoint after it (spec.WatchedHistory).
    """
    loss, grads = grad_step(model, x, y)
    grads = inject_nan(grads, cfg.nan_layer, poison)
    norm = global_norm(grads)
    finite, first_bad = finite_flags(loss, grads)
    watched = {
        "loss": loss,
        "finite": finite,
        "first_non_finite": first_bad,
        "grad_norm": norm,
        "clipped": (norm > cfg.clip_norm) & (cfg.clip_norm > 0),
        **{f"grad_norm/{k}": v for k, v in layer_norms(grads).items()},
    }
    ratios = apply_update(model, optimizer, cfg.clip_norm)
    return watched | {f"update_ratio/{k}": v for k, v in ratios.items()}


def train(cfg: spec.Config, data: charlm.Data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train with every step watched through lib/train; returns (model, History) or raises
    spec.TrainingStopped (a NaN or Inf, a loss spike), naming the last good checkpoint.

    ctx: as for every lab (checkpoints, resume, stop requests, torch.compile of the whole
    watched step). The spike detector's running mean starts afresh on a resume."""
    model = lm.build_model(cfg, data.vocab_size, weights)
    optimizer, scheduler = lm.make_optimizer(model, cfg)
    val = charlm.val_batches(data, cfg)
    names = [name for name, _ in model.named_parameters()]
    history = spec.watched_history(cfg, names, "torch", ctx)
    device = next(model.parameters()).device

    def batch(i):
        x, y = lm.as_tensors(*charlm.train_batch(data, cfg, i))  # (B, T), (B,)
        return x, y, torch.tensor(i == cfg.nan_step, device=device)

    try:
        trainer.train(
            model,
            optimizer,
            functools.partial(train_step, model, optimizer, cfg),
            batch,
            loop.Cadence.of(cfg),
            ctx,
            scheduler=scheduler,
            evaluate=lambda: {"val_loss": lm.evaluate(model, val)},
            history=history,
        )
    except spec.TrainingStopped:
        raise
    except Diverged as diverged:
        raise history.stopped(diverged) from None
    return model, history


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run monitoring --framework torch`: train watched; a NaN or a spike ends the run as
    diverged (exit status 3) with the reason and the last good checkpoint."""
    data = charlm.load_data(cfg)
    _, history = train(cfg, data, ctx=loop.Context.of_run(run, compile))
    return history.summary()


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    data = charlm.load_data(cfg)
    return get_weights(lm.build_model(cfg, data.vocab_size))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare monitoring`: train watched from `weights` (torch's names, numpy); returns its
    Curves. `case` is "watched", the only one."""
    data = charlm.load_data(cfg)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return Curves.of(history)
