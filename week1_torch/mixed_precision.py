"""Mixed precision lab in PyTorch: torch.autocast in bf16 and fp16, and torch.amp.GradScaler.

Read beside week1_jax/mixed_precision.py. The model, data, optimizer and
schedule are the char LM's (lib/charlm.py); the parameters stay float32 and autocast
lowers precision per operation.
"""

from __future__ import annotations

import functools
import sys

import torch
import torch.nn.functional as F

from labs import mixed_precision as spec
from week1 import charlm, loop
from week1.comparison import Curves
from week1.timing import time_calls
from week1_torch.lib import charlm as base
from week1_torch.lib import devices, precision
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights


def demos() -> dict:
    """spec.DEMOS computed in each format: {demo: {format: value}}."""
    out = {demo: {} for demo in spec.DEMOS}
    for fmt in spec.FORMATS:

        def v(x):
            return torch.tensor(x, dtype=getattr(torch, fmt))

        results = {
            "300 * 300": v(300.0) * v(300.0),
            "gradient 1e-8": v(1e-8),
            "1e-8 scaled by 2^16, unscaled in fp32": v(1e-8 * spec.LOSS_SCALE).float()
            / spec.LOSS_SCALE,
            "1 + 2^-8": v(1.0) + v(2.0**-8),
            "256 + 1": v(256.0) + v(1.0),
        }
        for demo, value in results.items():
            out[demo][fmt] = float(value)
    return out


def build_model(
    cfg: spec.Config, vocab_size: int, precision_name: str, weights: dict | None = None
):
    """The char LM on the default device, unchanged: autocast, not the model, carries
    the precision."""
    return base.build_model(cfg, vocab_size, weights)


def make_optimizer(model, cfg: spec.Config, precision_name: str):
    """The char LM's AdamW and schedule, and for fp16 a GradScaler (cfg.loss_scale): (optimizer,
    scheduler, scaler or None)."""
    optimizer, scheduler = base.make_optimizer(model, cfg)
    if precision_name != "fp16":
        return optimizer, scheduler, None
    return optimizer, scheduler, precision.grad_scaler(devices.default_device().type,
                                                       **cfg.loss_scale)  # fmt: skip


def loss_fn(model, x, y, precision_name: str):
    with precision.autocast(precision_name, x.device.type):
        logits = model(x)  # (B, V) in bf16/fp16 under autocast
    return F.cross_entropy(logits.float(), y)  # the softmax and loss in fp32


def loss_and_grads(model, x, y, precision_name: str):
    """Loss and fp32 gradients of the master weights under autocast (what the parity test
    compares)."""
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, precision_name)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


def train_step(model, optimizer, x, y, precision_name: str):
    """One update under autocast (lib/train steps the schedule after it); returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, precision_name)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_step_scaled(
    model, optimizer, scheduler, scaler: torch.amp.GradScaler, x, y, precision_name: str
) -> dict:
    """fp16 step with GradScaler; returns {loss, scale, finite}. A skipped step does not advance
    the schedule (lib/train is given no scheduler: this step steps it)."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, precision_name)
    # torch.compiler.disable here, not as a decorator: that would import Dynamo (which sets
    # TORCHINDUCTOR_CACHE_DIR) whenever this module is imported
    scale, finite = torch.compiler.disable(_scaled_update)(optimizer, scheduler, scaler, loss)
    flags = torch.tensor([scale, finite], device=loss.device)  # beside the loss, on its device
    return {"loss": loss.detach(), "scale": flags[0], "finite": flags[1]}


# Eager under torch.compile too (the compiled forward's backward still runs compiled): GradScaler
# notes in Python which optimizer's gradients it checked for inf, and a step traced whole
# (parallelize.apply_compile) loses that note: "No inf checks were recorded".
def _scaled_update(optimizer, scheduler, scaler: torch.amp.GradScaler, loss) -> tuple:
    """Backward of the scaled loss, then unscale, step unless a gradient is NaN/Inf, update the
    scale; returns (new scale, stepped)."""
    scaler.scale(loss).backward()
    scale_before = scaler.get_scale()
    scaler.step(optimizer)  # unscales, and skips optimizer.step() on a NaN/Inf gradient
    scaler.update()
    scale = scaler.get_scale()  # GradScaler has read found_inf on the host already: no new sync
    finite = scale >= scale_before  # the scale backs off exactly when the step was skipped
    if finite:
        scheduler.step()
    return scale, finite


@torch.no_grad()
def eval_loss(model, x, y, precision_name: str):
    return loss_fn(model, x, y, precision_name)


def evaluate(model, batches, precision_name: str) -> float:
    """Mean loss over `batches` in `precision_name`; one read from the device at the end."""
    losses = [eval_loss(model, *base.as_tensors(x, y), precision_name) for x, y in batches]
    return float(torch.stack(losses).mean())


def train(
    cfg: spec.Config,
    data: charlm.Data,
    precision_name: str,
    *,
    weights: dict | None = None,
    ctx: loop.Context = loop.BARE,
):
    """Train in `precision_name` through lib/train; returns (model, History,
    spec.loss_scaling(History)) (the loss scale per step and the skipped steps; empty but for
    fp16). ctx.compile: the whole step under the same autocast through torch.compile."""
    model = build_model(cfg, data.vocab_size, precision_name, weights)
    optimizer, scheduler, scaler = make_optimizer(model, cfg, precision_name)
    if scaler is None:
        step = functools.partial(train_step, model, optimizer, precision_name=precision_name)
    else:
        step = functools.partial(train_step_scaled, model, optimizer, scheduler, scaler,
                                 precision_name=precision_name)  # fmt: skip
    val = charlm.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        step,
        lambda i: base.as_tensors(*charlm.train_batch(data, cfg, i)),  # (B, T), (B,)
        loop.Cadence.of(cfg),
        ctx,
        scheduler=None if scaler else scheduler,
        evaluate=lambda: {"val_loss": evaluate(model, val, precision_name)},
        label=f"torch {precision_name}",
    )
    return model, history, spec.loss_scaling(history)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run mixed_precision --framework torch`: formats, demos, then fp32/bf16/fp16
    training curves."""
    return spec.run(
        cfg, run, sys.modules[__name__], precision.number_formats, "torch", "torch", compile
    )


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    data = charlm.load_data(cfg)
    return get_weights(build_model(cfg, data.vocab_size, case))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare mixed_precision`: train in precision `case` from `weights` (torch's names,
    numpy); returns its Curves."""
    data = charlm.load_data(cfg)
    _, history, _ = train(cfg, data, case, weights=weights, ctx=ctx)
    return Curves.of(history)


def saved_for_backward_bytes(model, x, y, precision_name: str) -> int:
    """Bytes the backward pass keeps from the forward (activations, casts): autograd's saved
    tensors."""
    saved = {}

    def pack(t):
        saved[(t.data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(model, x, y, precision_name)
    return sum(saved.values())


def bench(cfg: spec.Config) -> dict:
    """`week1 bench mixed_precision`: train-step time and memory per precision."""
    data = charlm.load_data(cfg)
    x, y = base.as_tensors(*charlm.train_batch(data, cfg, 1))
    timings = {}
    for name in cfg.precision_list:
        model = build_model(cfg, data.vocab_size, name)
        optimizer, scheduler, scaler = make_optimizer(model, cfg, name)
        if scaler is not None:
            step = lambda: train_step_scaled(model, optimizer, scheduler, scaler, x, y, name)
        else:
            step = lambda: train_step(model, optimizer, x, y, name)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        timing = time_calls(step, devices.sync)
        memory = {"saved for backward": saved_for_backward_bytes(model, x, y, name)}
        if torch.cuda.is_available():
            memory["device peak"] = torch.cuda.max_memory_allocated()
        timings[f"torch {name}"] = timing.with_memory(memory)
    return timings
