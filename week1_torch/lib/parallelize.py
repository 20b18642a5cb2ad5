"""What is applied to a model or a step from outside it: compilation (and, in
week1_torch/lib/parallel.py, DDP and FSDP2), in torchtitan's manner. Model code knows
nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def apply_compile(step: Callable) -> Callable:
    """`step` through torch.compile: the forward and backward become one AOTAutograd graph
    pair, the optimizer update another (Dynamo breaks the graph at `loss.backward()`).

    Recompiling every step would be slower than eager; the step's inputs keep their shapes
    and the learning rate is a tensor (schedules.lambda_lr), so one compilation serves the
    run. A lab whose shapes do vary (the padded classifiers) is compiled with dynamic shapes
    after the first recompile, Dynamo's default.
    """
    return torch.compile(step)
