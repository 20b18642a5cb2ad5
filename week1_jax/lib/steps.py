"""Train steps as `jax.jit` of a pure function over split nnx state, and the profiler's halves of
a step.

`nnx.jit` walks the object graph in Python on every call; on the labs' small
models that walk costs several times the step itself (measured: ~5x fewer
steps/s on a 2-core CPU). The hot loops therefore `nnx.split` the (model,
optimizer) pair once and jit a pure function of the state, merging inside.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
from flax import nnx


def jit_on_state(graphdef, step: Callable, donate: bool = False) -> Callable:
    """`step(model, optimizer, *args) -> out` as a jitted `(state, *args) -> (state, out)`.

    `state` is `nnx.state((model, optimizer))` of the pair `graphdef` was split
    from. The labs feed fixed-shape batches, so a run traces (compiles) the step
    once: tests/test_traces.py proves it with chex.assert_max_traces.

    donate: hand the incoming state's buffers to XLA (`donate_argnums=0`), which writes the
    new state into them instead of allocating a second copy; the caller must not touch the
    old state (nor the model and optimizer objects it was split from) until `nnx.update`
    gives them the new one.
    """

    @functools.partial(jax.jit, donate_argnums=(0,) if donate else ())
    def jitted(state, *args):
        model, optimizer = nnx.merge(graphdef, state)
        out = step(model, optimizer, *args)
        return nnx.state((model, optimizer)), out

    return jitted


@nnx.jit
def apply_grads(model: nnx.Module, optimizer: nnx.Optimizer, grads) -> None:
    """The optimizer half of a step, on its own (profiling splits a step into synced phases)."""
    optimizer.update(model, grads)
