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
        # Compiling, the loop over tensors is what Dynamo traces into one graph (Inductor fuses
        # it; the counts and lr stay tensors, read as data). Eager, foreach: a handful of
        # kernels per group instead of per tensor, which eager speed on small models hinges on.
        update = _per_tensor if torch.compiler.is_compiling() else _foreach
        for group in self.param_groups:
            kinds = {}  # a foreach call takes one kind: DTensor shards apart from plain tensors
            for p in group["params"]:
                if p.grad is not None:
                    kinds.setdefault(type(p), []).append(p)
            for params in kinds.values():
                states = [self.state[p] for p in params]
                update(params, states, group["lr"], *group["betas"], group["eps"],
                       group["weight_decay"])  # fmt: skip
        return loss


def _per_tensor(params, states, lr, b1, b2, eps, wd) -> None:
    """The update one tensor at a time; the step count and lr may be tensors."""
    for p, state in zip(params, states, strict=True):
        state["step"] += 1
        t = state["step"]
        m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
        p.mul_(1 - lr * wd)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / (1 - b2**t)).sqrt_().add_(eps)
        p.sub_(m / denom * (lr / (1 - b1**t)))


def _foreach(params, states, lr, b1, b2, eps, wd) -> None:
    """The same update over all the tensors at once, one torch._foreach_* call per line. The
    step counts and lr (CPU tensors) are read as Python numbers, as torch.optim's foreach path
    reads them: no device sync, and DTensor parameters (FSDP2, tensor parallel) take them."""
    lr, grads = float(lr), [p.grad for p in params]
    m, v, t = ([s[k] for s in states] for k in ("exp_avg", "exp_avg_sq", "step"))
    torch._foreach_add_(t, 1)
    t = [float(count) for count in t]
    torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_mul_(m, b1)
    torch._foreach_add_(m, grads, alpha=1 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
    denom = torch._foreach_div(v, [1 - b2**n for n in t])
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(m, denom)
    torch._foreach_mul_(update, [lr / (1 - b1**n) for n in t])
    torch._foreach_sub_(params, update)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (weights, embeddings); not biases and norm scales (ndim < 2)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
