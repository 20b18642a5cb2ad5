"""Mixed precision lab in PyTorch: torch.autocast in bf16 and fp16, and torch.amp.GradScaler.

Read beside week1_jax/mixed_precision.py. The model, data, optimizer and
schedule are the training_loop lab's; the parameters stay float32 and autocast
lowers precision per operation.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from labs import mixed_precision as spec
from week1 import charlm, loop, report
from week1.comparison import Curves
from week1.report import progress
from week1.runs import Diverged
from week1.timing import time_calls
from week1_torch.lib import charlm as base
from week1_torch.lib import devices, precision
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
    """The training_loop model on the default device, unchanged: autocast, not the model, carries
    the precision."""
    return base.build_model(cfg, vocab_size, weights)


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


def train_step(model, optimizer, scheduler, x, y, precision_name: str):
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, precision_name)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.detach()


def train_step_scaled(
    model, optimizer, scheduler, scaler: torch.amp.GradScaler, x, y, precision_name: str
):
    """fp16 step with GradScaler; returns (loss, finite). A skipped step does not advance the
    schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, precision_name)
    scaler.scale(loss).backward()
    scale_before = scaler.get_scale()
    scaler.step(optimizer)  # unscales, and skips optimizer.step() on a NaN/Inf gradient
    scaler.update()
    finite = (
        scaler.get_scale() >= scale_before
    )  # the scale backs off exactly when the step was skipped
    if finite:
        scheduler.step()
    return loss.detach(), finite


@torch.no_grad()
def eval_loss(model, x, y, precision_name: str):
    return loss_fn(model, x, y, precision_name)


def evaluate(model, batches, precision_name: str) -> float:
    """Mean loss over `batches` in `precision_name`."""
    return float(
        np.mean(
            [float(eval_loss(model, *base.as_tensors(x, y), precision_name)) for x, y in batches]
        )
    )


def train(
    cfg: spec.Config,
    data: charlm.Data,
    precision_name: str,
    *,
    weights: dict | None = None,
    log=None,
    show_progress: bool = False,
    compile: bool = False,
):
    """Train in `precision_name`; returns (model, History, {"scale": [...], "skipped": [...]} for
    fp16). compile: the model through torch.compile (under the same autocast)."""
    model = build_model(cfg, data.vocab_size, precision_name, weights)
    optimizer, scheduler = base.make_optimizer(model, cfg)
    step_model = torch.compile(model) if compile else model
    device_type = devices.default_device().type
    scaler = (
        precision.grad_scaler(device_type, **cfg.loss_scale) if precision_name == "fp16" else None
    )
    scaling = {"scale": [], "skipped": []}
    val = charlm.val_batches(data, cfg)
    history = loop.History()
    label = f"{'torch.compile' if compile else 'torch'} {precision_name}"
    with progress(label, total=cfg.steps, enabled=show_progress) as advance:
        for step in range(1, cfg.steps + 1):
            x, y = base.as_tensors(*charlm.train_batch(data, cfg, step))
            t0 = time.perf_counter()
            if scaler is None:
                loss = float(train_step(step_model, optimizer, scheduler, x, y, precision_name))
            else:
                loss, finite = train_step_scaled(
                    step_model, optimizer, scheduler, scaler, x, y, precision_name
                )
                loss = float(loss)
                scaling["scale"].append(scaler.get_scale())
                if not finite:
                    scaling["skipped"].append(step)
            if not math.isfinite(loss):
                raise Diverged(step, "loss")
            history.add_train(
                step, loss, time.perf_counter() - t0
            )  # the first step's time includes compilation
            if loop.Cadence.of(cfg).is_eval_step(step):
                history.add_val(step, evaluate(model, val, precision_name))
            if log:
                log(step, **{f"train_loss_{precision_name}": loss})
            advance(loss)
    return model, history, scaling


def run(cfg: spec.Config, run) -> dict:
    """`week1 run mixed_precision --framework torch`: formats, demos, then fp32/bf16/fp16
    training curves."""
    report.table(
        "number formats (torch.finfo)", spec.FORMAT_COLUMNS, precision.number_formats(spec.FORMATS)
    )
    shown = demos()
    report.table(
        "demos (torch)",
        ["demo", *spec.FORMATS, "what it shows"],
        [(demo, *(shown[demo][f] for f in spec.FORMATS), why) for demo, why in spec.DEMOS.items()],
    )
    data = charlm.load_data(cfg)
    results = {name: train(cfg, data, name, log=run.log) for name in cfg.precision_list}
    return spec.summarise(
        run,
        "torch",
        {name: r[1] for name, r in results.items()},
        results["fp16"][2] if "fp16" in results else None,
    )


def compare_run(cfg: spec.Config, case: str, weights=None, *, compile=False, show_progress=False):
    """`week1 compare mixed_precision`: train in precision `case` from `weights` (torch's names,
    numpy; None: torch's init); returns (the start weights, Curves)."""
    data = charlm.load_data(cfg)
    if weights is None:
        weights = get_weights(build_model(cfg, data.vocab_size, case))
    _, history, _ = train(
        cfg, data, case, weights=weights, show_progress=show_progress, compile=compile
    )
    return weights, Curves.of(history)


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
        optimizer, scheduler = base.make_optimizer(model, cfg)
        if name == "fp16":
            scaler = precision.grad_scaler(devices.default_device().type, **cfg.loss_scale)
            step = lambda: train_step_scaled(model, optimizer, scheduler, scaler, x, y, name)
        else:
            step = lambda: train_step(model, optimizer, scheduler, x, y, name)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        timing = time_calls(step, devices.sync)
        memory = {"saved for backward": saved_for_backward_bytes(model, x, y, name)}
        if torch.cuda.is_available():
            memory["device peak"] = torch.cuda.max_memory_allocated()
        timings[f"torch {name}"] = timing.with_memory(memory)
    return timings
