"""AdamW from scratch, as a torch.optim.Optimizer built from tensor ops.

Checked against torch.optim.AdamW in parity_tests/test_adamw.py (F64 tier).
"""

from __future__ import annotations

import torch


class AdamW(torch.optim.Optimizer):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.

    For gradient g_t at step t = 1, 2, ... and the group's current lr eta::

        p_t = p_{t-1} (1 - eta * lambda)                      (decoupled decay)
        m_t = b1 m_{t-1} + (1 - b1) g_t
        v_t = b2 v_{t-1} + (1 - b2) g_t^2
        p_t = p_t - eta (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)

    The same maths as week1_jax.lib.optim.adamw; eps sits outside the square root.
    Turn decay off for biases and norm scales with a param group whose
    weight_decay is 0 (see `param_groups`).

    Args:
      params: parameters, or param groups (dicts with "params" and overrides).
      lr: learning rate (a LambdaLR scheduler may drive it).
      betas: (b1, b2), decay rates of the first and second moments.
      eps: added to the denominator for numerical stability.
      weight_decay: lambda, the decoupled decay rate.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        if lr < 0.0:
            raise ValueError(f"lr={lr}: must be >= 0")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas={betas}: each must be in [0, 1)")
        if eps < 0.0 or weight_decay < 0.0:
            raise ValueError(f"eps={eps}, weight_decay={weight_decay}: must be >= 0")
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        )
        # The state exists from the start (torch.optim makes it at the first step): a compiled
        # step then sees the same structure at every call and compiles once. The step count is
        # a tensor: state_dict round-trips it, and torch.compile reads it as data rather than
        # recompiling for every new value.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {
                    "step": torch.zeros((), dtype=torch.float64),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            # The group's tensors as lists, each line one `torch._foreach_*` call over all of
            # them: a handful of kernels per group instead of a handful per parameter (the
            # `foreach` path of torch.optim, which eager speed on small models hinges on).
            states = [self.state[p] for p in params]
            grads = [p.grad for p in params]
            m, v, t = ([s[k] for s in states] for k in ("exp_avg", "exp_avg_sq", "step"))
            torch._foreach_add_(t, 1)
            torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_mul_(m, b1)
            torch._foreach_add_(m, grads, alpha=1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            denom = torch._foreach_div(v, _one_minus_powers(b2, t))
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            step_sizes = torch._foreach_div(_one_minus_powers(b1, t), lr)
            torch._foreach_reciprocal_(step_sizes)  # lr / (1 - b1^t)
            update = torch._foreach_div(m, denom)
            torch._foreach_mul_(update, step_sizes)
            torch._foreach_sub_(params, update)
        return loss


def _one_minus_powers(base: float, steps: list) -> list:
    """[1 - base^t for t in steps], as a list of tensors (the bias corrections)."""
    powers = torch._foreach_pow(base, steps)
    torch._foreach_neg_(powers)
    torch._foreach_add_(powers, 1)
    return powers


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (weights, embeddings); not biases and norm scales (ndim < 2)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
