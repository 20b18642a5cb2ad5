"""lr_schedules lab in PyTorch: the applied learning rate per update, and the LM trained with each.

The schedules themselves are in week1_torch/schedules.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from labs import lr_schedules as spec
from week1 import loop
from week1.charlm import SCHEDULES, load_data
from week1_torch.lib import charlm as lm
from week1_torch.lib import schedules


def applied_lrs(schedule, n: int) -> np.ndarray:
    """The lr torch applies at updates 0..n-1: SGD on one parameter with gradient 1 moves it by
    -lr."""
    param = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = schedules.lambda_lr(optimizer, schedule)
    lrs = []
    for _ in range(n):
        with torch.no_grad():
            param.zero_()  # from 0, the step is exactly -lr
        param.grad = torch.ones((), dtype=torch.float64)
        optimizer.step()
        scheduler.step()
        lrs.append(0.0 - param.item())  # 0.0 - x, not -x: no "-0" at lr 0
    return np.array(lrs)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    data = load_data(cfg)
    shown = loop.Context(show_progress=True, compile=compile)
    lrs = {
        name: applied_lrs(
            schedules.by_name(name, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr),
            max(spec.key_steps(cfg)) + 1,
        )
        for name in SCHEDULES
    }
    histories = {
        name: lm.train(dataclasses.replace(cfg, schedule=name), data, ctx=shown)[1]
        for name in SCHEDULES
    }
    return spec.report(lrs, histories, cfg, run, "torch")
