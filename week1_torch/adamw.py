"""AdamW lab in PyTorch: our from-scratch AdamW against torch.optim.AdamW on the char-MLP LM.

The optimizer itself is week1_torch.lib.optim.AdamW; this module trains with it.
"""

from __future__ import annotations

import torch

from labs import adamw as spec
from week1 import loop
from week1.charlm import load_data
from week1.timing import time_calls
from week1_torch.lib import charlm as lm
from week1_torch.lib import devices, optim, schedules
from week1_torch.lib.models import get_weights


def library_optimizer(model, cfg: spec.Config):
    """torch.optim.AdamW with our schedule, param groups (no decay on biases/norms) and weight
    decay; fused (one kernel per update) where that kernel exists (CPU, CUDA): its other paths,
    under torch.compile with the schedule's lr tensor, divide by the lr and write NaN at
    warmup's first update (lr 0)."""
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(
        optim.param_groups(model, cfg.weight_decay), betas=(0.9, 0.999), eps=1e-8, fused=fused
    )
    return optimizer, schedules.lambda_lr(optimizer, schedules.from_config(cfg))


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """Train the LM with ours and with torch.optim.AdamW from the same weights; compare the
    curves."""
    data = load_data(cfg)
    shown = loop.Context(show_progress=True, compile=compile)
    weights = get_weights(lm.build_model(cfg, data.vocab_size))
    histories = {
        "ours": lm.train(cfg, data, weights=weights, ctx=shown)[1],
        "torch.optim.AdamW": lm.train(
            cfg,
            data,
            weights=weights,
            optimizer_fn=library_optimizer,
            ctx=shown,
        )[1],
    }
    return spec.report_curves(histories, run, "torch")


def bench(cfg: spec.Config) -> dict:
    """`week1 bench adamw`: one optimizer update on the LM's parameters, ours vs
    torch.optim.AdamW."""
    model = lm.build_model(cfg, load_data(cfg).vocab_size)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    timings = {}
    for name, optimizer in (
        ("torch ours", optim.AdamW(optim.param_groups(model, cfg.weight_decay), lr=cfg.lr)),
        (
            "torch.optim.AdamW",
            torch.optim.AdamW(optim.param_groups(model, cfg.weight_decay), lr=cfg.lr),
        ),
    ):
        timings[name] = time_calls(optimizer.step, devices.sync)
    return timings
