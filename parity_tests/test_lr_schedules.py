"""lr_schedules parity, F64 tier: the learning rate actually applied at every update.

JAX reads it through optax.sgd, torch through torch.optim.SGD driven by LambdaLR
(see the labs' applied_lrs), and the two are compared; the JAX schedules are
also compared with the same shapes assembled from optax's built-in schedules;
updates 0 .. total_steps + 20 cover step 0, the warmup boundary, the last step
and the hold after it.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

from week1.charlm import SCHEDULES
from week1.tolerances import F64, assert_close
from week1_jax import lr_schedules as jax_lab
from week1_jax.lib import schedules as jax_schedules
from week1_torch import lr_schedules as torch_lab
from week1_torch.lib import schedules as torch_schedules

PEAK, WARMUP, TOTAL, FINAL = 3e-3, 20, 200, 3e-4
N = TOTAL + 20


def optax_reference(name: str):
    """Each schedule assembled from optax's built-ins (join_schedules passes step - boundary on)."""
    warmup = optax.linear_schedule(0.0, PEAK, WARMUP)
    return {
        "warmup_cosine": optax.warmup_cosine_decay_schedule(0.0, PEAK, WARMUP, TOTAL, FINAL),
        "warmup_linear": optax.join_schedules(
            [warmup, optax.linear_schedule(PEAK, FINAL, TOTAL - WARMUP)], [WARMUP]
        ),
        "constant_with_warmup": optax.join_schedules(
            [warmup, optax.constant_schedule(PEAK)], [WARMUP]
        ),
        "inverse_sqrt": optax.join_schedules(
            [warmup, lambda s: PEAK * jnp.sqrt(WARMUP / (s + WARMUP))], [WARMUP]
        ),
    }[name]


def jax_lrs(name):
    with jax.enable_x64(True):
        return jax_lab.applied_lrs(jax_schedules.by_name(name, PEAK, WARMUP, TOTAL, FINAL), N)


@pytest.mark.parametrize("name", SCHEDULES)
def test_jax_matches_torch(name):
    torch_lrs = torch_lab.applied_lrs(torch_schedules.by_name(name, PEAK, WARMUP, TOTAL, FINAL), N)
    assert_close("lr_schedules jax vs torch", name, jax_lrs(name), torch_lrs, F64)


@pytest.mark.parametrize("name", SCHEDULES)
def test_jax_matches_optax_builtins(name):
    """Evaluated at float64 steps: optax's built-ins compute in float32 at an int32 count, even
    under x64 (measured: 6e-7 relative off), which is why week1_jax.lib.schedules casts the step."""
    with jax.enable_x64(True):
        steps = jnp.arange(N, dtype=jnp.float64)
        ours = jax_schedules.by_name(name, PEAK, WARMUP, TOTAL, FINAL)(steps)
        reference = optax_reference(name)(steps)
    assert_close("lr_schedules jax vs optax built-ins", name, ours, reference, F64)


@pytest.mark.parametrize("name", SCHEDULES)
def test_step_zero_and_boundaries(name):
    """The first update has lr 0 (warmup from zero); update WARMUP has the peak."""
    lrs = jax_lrs(name)
    assert lrs[0] == 0.0
    assert lrs[WARMUP] == pytest.approx(PEAK, rel=1e-12)
    assert lrs[WARMUP - 1] == pytest.approx(PEAK * (WARMUP - 1) / WARMUP, rel=1e-12)
