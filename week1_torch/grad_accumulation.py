"""Gradient accumulation lab in PyTorch: a plain loop that adds micro-batch gradients in .grad.

Read beside week1_jax/grad_accumulation.py. The model, data, optimizer and
schedule are the char LM's (lib/charlm.py); only the loss (masked, token-level) and
the accumulation are new here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np
import torch

from labs import grad_accumulation as spec
from week1 import charlm, loop, profiler
from week1.comparison import Curves
from week1.timing import time_calls
from week1_torch.lib import charlm as lm
from week1_torch.lib import devices, steps
from week1_torch.lib import train as trainer
from week1_torch.lib.losses import masked_cross_entropy
from week1_torch.lib.models import get_weights


def micro_loss(model, x, y, n_norm):
    """Summed token cross-entropy of one micro-batch over n_norm (see spec.normalisers)."""
    loss_sum, _ = masked_cross_entropy(model(x), y)  # (B_j, V) logits
    return loss_sum / n_norm


def big_batch_grads(model, x, y):
    """Loss and gradients of the whole batch at once: the reference accumulation must equal."""
    model.zero_grad(set_to_none=True)
    loss_sum, n_tokens = masked_cross_entropy(model(x), y)
    loss = loss_sum / n_tokens
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


def accumulate_grads(model, xs, ys, norms):
    """Sum of the k micro-batches' losses and gradients, accumulated by autograd in each p.grad.

    xs (k, m, T), ys (k, m), norms (k,): micro-batch j contributes
    grad(loss_sum_j / norms[j]). Each backward frees its micro-batch's
    activations. Under DDP, `model.no_sync()` skips the all-reduce for all but
    the last micro-batch; a plain module has no such method and syncs nothing.
    """
    # Not model.zero_grad(set_to_none=True): its `if p.grad is not None` makes torch.compile
    # guard on the gradients and recompile at step 2.
    for p in model.parameters():
        p.grad = None
    k = len(xs)
    loss = torch.zeros((), dtype=norms.dtype, device=norms.device)
    for j in range(k):
        last = j == k - 1
        no_sync = (
            model.no_sync if hasattr(model, "no_sync") and not last else contextlib.nullcontext
        )
        with no_sync():
            micro = micro_loss(model, xs[j], ys[j], norms[j])
            micro.backward()
        loss += micro.detach()
    return loss, {name: p.grad for name, p in model.named_parameters()}


def train_step(model, optimizer, xs, ys, norms):
    """One update: k micro-batches (the loop above), then AdamW once (lib/train steps the
    schedule after it)."""
    loss, _ = accumulate_grads(model, xs, ys, norms)
    optimizer.step()
    return loss


def as_tensors(xs: np.ndarray, ys: np.ndarray, norms: np.ndarray):
    """Micro-batches (k, m, T) and labels (k, m) as int64, normalisers (k,) as float32, on the
    default device."""
    return (
        *devices.to_device(xs, ys, dtype=torch.long),
        *devices.to_device(norms, dtype=torch.float32),
    )


def train(
    cfg: spec.Config,
    data: charlm.Data,
    *,
    weights: dict | None = None,
    ctx: loop.Context = loop.BARE,
):
    """Train for cfg.steps with accumulation over cfg.micro_batches through lib/train; returns
    (model, History). ctx.compile: the whole step (k forward/backward passes and AdamW) through
    torch.compile."""
    model = lm.build_model(cfg, data.vocab_size, weights)
    optimizer, scheduler = lm.make_optimizer(model, cfg)
    val = charlm.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        functools.partial(train_step, model, optimizer),
        lambda i: as_tensors(*spec.micro_batches(data, cfg, i)),  # (k, m, T), (k, m), (k,)
        loop.Cadence.of(cfg),
        ctx,
        scheduler=scheduler,
        evaluate=lambda: {"val_loss": lm.evaluate(model, val)},
        label="torch loop",
    )
    return model, history


def scaled_max_diff(grads, reference) -> float:
    """Largest max|a - b| / max|b| over the tensors of two gradient dicts (per tensor: the largest
    element-wise difference over the largest reference magnitude, so near-zero elements do not
    blow up)."""
    return max(
        float((grads[n] - reference[n]).abs().max() / reference[n].abs().max()) for n in reference
    )


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run grad_accumulation --framework torch`: the identity on one batch, then training."""
    data = charlm.load_data(cfg)
    model = lm.build_model(cfg, data.vocab_size)
    x, y = spec.padded_batch(data, cfg, 1)
    xs, ys = spec.split_micro_batches(x, y, cfg.micro_batches)
    _, reference = big_batch_grads(model, *devices.to_device(x, y, dtype=torch.long))
    summary = {
        f"grad scaled max diff ({normalise})": scaled_max_diff(
            accumulate_grads(model, *as_tensors(xs, ys, spec.normalisers(ys, normalise)))[1],
            reference,
        )
        for normalise in spec.NORMALISATIONS
    }
    history = train(cfg, data, ctx=loop.Context.of_run(run, compile).part("loop"))[1]
    return spec.report_run(run, cfg, summary, {"loop": history})


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    cfg = dataclasses.replace(cfg, normalise=case)
    data = charlm.load_data(cfg)
    return get_weights(lm.build_model(cfg, data.vocab_size))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare grad_accumulation`: train the loop with normalisation `case` from `weights`
    (torch's names, numpy); returns its Curves."""
    cfg = dataclasses.replace(cfg, normalise=case)
    data = charlm.load_data(cfg)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench grad_accumulation`: one update from k micro-batches vs the big batch."""
    data = charlm.load_data(cfg)
    x, y = spec.padded_batch(data, cfg, 1)
    timings = {}
    for name, k in (("torch big batch", 1), ("torch loop", cfg.micro_batches)):
        step_cfg = dataclasses.replace(cfg, micro_batches=k)
        model = lm.build_model(step_cfg, data.vocab_size)
        optimizer, _ = lm.make_optimizer(model, step_cfg)
        xs, ys = spec.split_micro_batches(x, y, k)
        batch = as_tensors(xs, ys, spec.normalisers(ys, "total"))
        timings[f"{name} (k={k})"] = time_calls(
            functools.partial(train_step, model, optimizer, *batch), devices.sync
        )
    return timings


def profile_phases(cfg: spec.Config) -> profiler.Phases:
    """`week1 profile grad_accumulation`: one loop-accumulated update as data / forward_backward
    / optimizer."""
    data = charlm.load_data(cfg)
    model = lm.build_model(cfg, data.vocab_size)
    optimizer, scheduler = lm.make_optimizer(model, cfg)

    def batch(step):
        tensors = as_tensors(*spec.micro_batches(data, cfg, step))
        devices.sync(tensors)
        return tensors

    def forward_backward(batch):
        loss, _ = accumulate_grads(model, *batch)
        devices.sync(loss)
        return loss, None  # the gradients stay in each p.grad

    def optimizer_step(_loss_and_grads):
        steps.apply_grads(optimizer, scheduler)
        devices.sync()

    return profiler.Phases(batch, forward_backward, optimizer_step, torch.profiler.record_function)
