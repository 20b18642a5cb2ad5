"""adamw parity, F64 tier: 100 steps of a random least-squares problem with a decay mask
(no decay on the bias) and a warmup-cosine schedule.

Ours (JAX) vs optax.adamw, ours (torch) vs torch.optim.AdamW, and JAX vs torch,
compared on the parameters after every step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from week1.tolerances import EXACT, F64, assert_tree_close
from week1_jax.lib import optim as jax_optim
from week1_jax.lib import schedules as jax_schedules
from week1_torch.lib import optim as torch_optim
from week1_torch.lib import schedules as torch_schedules

STEPS, WD = 100, 0.1
SCHEDULE = dict(peak_lr=0.05, warmup_steps=10, total_steps=STEPS, final_lr=0.005)
rng = np.random.default_rng(0)
A, T = rng.normal(size=(32, 8)), rng.normal(size=(32, 5))  # inputs, targets
W0, B0 = rng.normal(size=(8, 5)), rng.normal(size=(5,))


def jax_trajectory(tx) -> list[dict]:
    """Params after each of STEPS updates of tx on 0.5 * ||A W + b - T||^2 (float64)."""
    with jax.enable_x64(True):
        params = {"w": jnp.asarray(W0), "b": jnp.asarray(B0)}
        loss = lambda p: 0.5 * jnp.sum((jnp.asarray(A) @ p["w"] + p["b"] - jnp.asarray(T)) ** 2)

        @jax.jit
        def step(params, state):
            updates, state = tx.update(jax.grad(loss)(params), state, params)
            return optax.apply_updates(params, updates), state

        state, out = tx.init(params), []
        for _ in range(STEPS):
            params, state = step(params, state)
            out.append({k: np.asarray(v) for k, v in params.items()})
    return out


def torch_trajectory(optimizer_cls) -> list[dict]:
    w = torch.tensor(W0, requires_grad=True)
    b = torch.tensor(B0, requires_grad=True)
    optimizer = optimizer_cls(
        [{"params": [w], "weight_decay": WD}, {"params": [b], "weight_decay": 0.0}],
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    scheduler = torch_schedules.lambda_lr(optimizer, torch_schedules.warmup_cosine(**SCHEDULE))
    out = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        (0.5 * ((torch.tensor(A) @ w + b - torch.tensor(T)) ** 2).sum()).backward()
        optimizer.step()
        scheduler.step()
        out.append({"w": w.detach().numpy().copy(), "b": b.detach().numpy().copy()})
    return out


def mask(params):
    return {"w": True, "b": False}


def ours_jax():
    return jax_trajectory(
        jax_optim.adamw(jax_schedules.warmup_cosine(**SCHEDULE), weight_decay=WD, mask=mask)
    )


def assert_trajectories(check, actual, reference):
    for step, (a, r) in enumerate(zip(actual, reference, strict=True)):
        # Record the first, middle and last steps; assert every one.
        name = check if step in (0, STEPS // 2, STEPS - 1) else None
        if name:
            assert_tree_close(f"{check} step {step + 1}", a, r, F64)
        else:
            for k in r:
                np.testing.assert_allclose(
                    a[k], r[k], rtol=F64.rtol, atol=F64.atol, err_msg=f"{check} step {step + 1}"
                )


def test_jax_adamw_matches_optax():
    optax_tx = optax.adamw(
        jax_schedules.warmup_cosine(**SCHEDULE),
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=WD,
        mask=mask,
    )
    assert_trajectories("adamw jax ours vs optax.adamw", ours_jax(), jax_trajectory(optax_tx))


def test_torch_adamw_matches_torch_optim():
    assert_trajectories(
        "adamw torch ours vs torch.optim.AdamW",
        torch_trajectory(torch_optim.AdamW),
        torch_trajectory(torch.optim.AdamW),
    )


def test_jax_matches_torch():
    assert_trajectories(
        "adamw jax ours vs torch ours", ours_jax(), torch_trajectory(torch_optim.AdamW)
    )


def test_decay_mask_matters():
    """The mask is live: decaying the bias too changes the trajectory (so the tests above can
    fail)."""
    unmasked = jax_trajectory(
        jax_optim.adamw(jax_schedules.warmup_cosine(**SCHEDULE), weight_decay=WD)
    )
    assert not np.allclose(unmasked[-1]["b"], ours_jax()[-1]["b"], rtol=1e-6)


def test_torch_state_dict_round_trip():
    """50 steps, state_dict -> fresh optimizer -> 50 more == 100 uninterrupted (bit-identical)."""

    def make():
        p = torch.nn.Parameter(torch.tensor(W0))
        return p, torch_optim.AdamW([p], lr=0.01, weight_decay=WD)

    def steps(p, opt, n):
        for _ in range(n):
            opt.zero_grad()
            ((torch.tensor(A) @ p - torch.tensor(T)) ** 2).sum().backward()
            opt.step()

    p_full, opt_full = make()
    steps(p_full, opt_full, 100)
    p_half, opt_half = make()
    steps(p_half, opt_half, 50)
    p_resumed, opt_resumed = make()
    with torch.no_grad():
        p_resumed.copy_(p_half)
    opt_resumed.load_state_dict(opt_half.state_dict())
    steps(p_resumed, opt_resumed, 50)
    assert_tree_close(
        "adamw torch state_dict resume",
        {"w": p_resumed.detach().numpy()},
        {"w": p_full.detach().numpy()},
        EXACT,
    )


@pytest.mark.parametrize(
    "bad", [dict(lr=-1.0), dict(betas=(0.9, 1.0)), dict(eps=-1e-8), dict(weight_decay=-0.1)]
)
def test_torch_adamw_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        torch_optim.AdamW([torch.nn.Parameter(torch.zeros(2))], **bad)
