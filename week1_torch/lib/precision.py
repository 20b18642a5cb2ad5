"""Mixed precision for torch models, applied from outside the model code.

torch keeps the parameters (the master weights the optimizer updates) in
float32 and lowers precision per operation with `torch.autocast`: matmuls run
in bf16/fp16, numerically sensitive ops (layer_norm, softmax, losses) in
float32. fp16 also needs loss scaling: `torch.amp.GradScaler`, whose rule
week1_jax.lib.precision.DynamicLossScale writes out.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device_type: str):
    """torch.autocast in `precision` ("bf16", "fp16") for ops on `device_type`; no autocast for
    "fp32"."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=DTYPES[precision])


def grad_scaler(
    device_type: str,
    init_scale: float = 2.0**16,
    growth_factor: float = 2.0,
    backoff_factor: float = 0.5,
    growth_interval: int = 2000,
) -> torch.amp.GradScaler:
    """torch.amp.GradScaler for `device_type` (its defaults spelled out, as DynamicLossScale's)."""
    return torch.amp.GradScaler(
        device_type,
        init_scale=init_scale,
        growth_factor=growth_factor,
        backoff_factor=backoff_factor,
        growth_interval=growth_interval,
    )


def number_formats(names) -> list[tuple]:
    """(format, bits, max, smallest normal, machine epsilon) for each format name ("float16",
    ...), from torch.finfo."""
    rows = []
    for name in names:
        info = torch.finfo(getattr(torch, name))
        rows.append(
            (name, info.bits, float(info.max), float(info.smallest_normal), float(info.eps))
        )
    return rows
