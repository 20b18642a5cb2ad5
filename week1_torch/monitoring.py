"""Monitoring lab in PyTorch: gradient norms, update ratios, clipping, and a clean stop on NaN or
spike.

Read beside week1_jax/monitoring.py. Model, data, optimizer and schedule are
the training_loop lab's; the step is split in two (gradients, then update) so
the loop can look at the gradients in between.
"""

from __future__ import annotations

import time

import torch

from labs import monitoring as spec
from week1 import charlm, loop
from week1.comparison import Curves
from week1.report import progress
from week1_torch.lib import checkpoint
from week1_torch.lib.models import get_weights
from week1_torch.training_loop import as_tensors, build_model, evaluate, loss_fn, make_optimizer


def named(model) -> dict:
    """The model's gradients as {"fc1.weight": tensor, ...}, in forward order."""
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {name: grads[name] for name in spec.forward_order(grads)}


def grad_step(model, x, y):
    """Loss and gradients (in each p.grad) of one batch; nothing is updated yet."""
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y)
    loss.backward()
    return loss.detach(), named(model)


@torch.no_grad()
def inject_nan(grads: dict, layer: str) -> dict:
    """Set element 0 of each of `layer`'s gradients to NaN, in place (what an overflow would do)."""
    for name, g in grads.items():
        if spec.layer_of(name) == layer:
            g.view(-1)[0] = float("nan")
    return grads


def first_non_finite(loss, grads: dict) -> str | None:
    """'loss', 'gradient <name>' for the first gradient (forward order) holding a NaN/Inf, or
    None."""
    if not torch.isfinite(loss):
        return "loss"
    return next(
        (f"gradient {name}" for name, g in grads.items() if not torch.isfinite(g).all()), None
    )


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
def apply_update(model, optimizer, scheduler, clip_norm: float) -> dict:
    """Clip (if clip_norm > 0), step AdamW, and return the update/parameter ratio per layer."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    if clip_norm:
        clip_grads(model, clip_norm)
    optimizer.step()
    scheduler.step()
    delta = {name: p - before[name] for name, p in model.named_parameters()}
    delta_norms, param_norms = layer_norms(delta), layer_norms(before)
    return {layer: delta_norms[layer] / param_norms[layer] for layer in param_norms}


def train(
    cfg: spec.Config,
    data: charlm.Data,
    *,
    weights: dict | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    stop_at: int | None = None,
    log=None,
    should_stop=None,
    show_progress: bool = False,
    compile: bool = False,
):
    """Train with every step watched; returns (model, History) or raises spec.TrainingStopped.

    resume, should_stop: as in the training_loop lab (continue from the newest intact
    checkpoint; checkpoint and return when a stop is asked). The spike detector's running mean
    starts afresh on a resume. compile: the model's forward through torch.compile, in place
    (Module.compile: the parameter names, which the watching reads, stay the model's)."""
    model = build_model(cfg, data.vocab_size, weights)
    if compile:
        model.compile()
    optimizer, scheduler = make_optimizer(model, cfg)
    first = (
        checkpoint.restore_train_state(checkpoint_dir, model, optimizer, scheduler) + 1
        if resume
        else 1
    )
    spikes = spec.SpikeDetector(cfg.spike_factor, cfg.spike_warmup)
    val = charlm.val_batches(data, cfg)
    history = loop.History()
    last_checkpoint = first - 1 or None
    end = stop_at or cfg.steps
    label = "torch.compile" if compile else "torch"
    with progress(label, total=end - first + 1, enabled=show_progress) as advance:
        for step in range(first, end + 1):
            start = time.perf_counter()
            x, y = charlm.train_batch(data, cfg, step)  # (B, T), (B,)
            loss, grads = grad_step(model, *as_tensors(x, y))
            if step == cfg.nan_step:
                grads = inject_nan(grads, cfg.nan_layer)
            bad = first_non_finite(loss, grads)
            if bad is not None:
                raise spec.TrainingStopped(step, f"non-finite {bad}", last_checkpoint)
            spike = spikes.check(float(loss))
            if spike is not None:
                raise spec.TrainingStopped(step, spike, last_checkpoint)
            grad_norm = float(global_norm(grads))
            grad_norms = layer_norms(grads)
            ratios = apply_update(model, optimizer, scheduler, cfg.clip_norm)
            # The step's time includes the watching (norms, ratios, checks).
            history.add_train(step, float(loss), time.perf_counter() - start)
            if log:
                log(
                    step,
                    train_loss=loss,
                    grad_norm=grad_norm,
                    clipped=bool(cfg.clip_norm and grad_norm > cfg.clip_norm),
                    **{f"grad_norm/{k}": v for k, v in grad_norms.items()},
                    **{f"update_ratio/{k}": v for k, v in ratios.items()},
                )
            if loop.Cadence.of(cfg).is_eval_step(step):
                history.add_val(step, evaluate(model, val), log)
            stopping = should_stop is not None and should_stop()
            due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if checkpoint_dir is not None and (due or stopping):
                checkpoint.save_train_state(checkpoint_dir, step, model, optimizer, scheduler)
                last_checkpoint = step
            advance(float(loss))
            if stopping:
                break
    return model, history


def run(cfg: spec.Config, run) -> dict:
    """`week1 run monitoring --framework torch`: train watched; a NaN or a spike ends the run as
    diverged (exit status 3) with the reason and the last good checkpoint."""
    data = charlm.load_data(cfg)
    _, history = train(
        cfg,
        data,
        checkpoint_dir=run.checkpoint_dir,
        resume=run.resume,
        log=run.log,
        should_stop=run.should_stop,
    )
    return history.summary()


def compare_run(cfg: spec.Config, case: str, weights=None, *, compile=False, show_progress=False):
    """`week1 compare monitoring`: train watched from `weights` (torch's names, numpy; None:
    torch's init); returns (the start weights, Curves). `case` is "watched", the only one."""
    data = charlm.load_data(cfg)
    if weights is None:
        weights = get_weights(build_model(cfg, data.vocab_size))
    _, history = train(cfg, data, weights=weights, show_progress=show_progress, compile=compile)
    return weights, Curves.of(history)
