"""Models shared by the JAX labs, and their weights as flat name -> numpy dicts.

Model code knows nothing of devices or parallelism; `dtype` (compute) and
`param_dtype` are the hooks the mixed-precision policy uses.
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np
from flax import nnx


class CharMLP(nnx.Module):
    """Bengio et al. (2003): embed a window of characters, concatenate, one hidden layer, logits.

    LayerNorm (eps 1e-5, torch's default, passed explicitly) before the tanh keeps
    the pre-activations in tanh's linear range; dropout on the hidden layer is off
    unless `dropout > 0`.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int,
        n_hidden: int,
        *,
        dropout: float = 0.0,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.wte = nnx.Embed(vocab_size, n_embd, **kw)
        self.fc1 = nnx.Linear(block_size * n_embd, n_hidden, **kw)
        self.ln = nnx.LayerNorm(n_hidden, epsilon=1e-5, **kw)
        self.drop = nnx.Dropout(dropout)  # its key comes with each call: no RNG state to checkpoint
        self.head = nnx.Linear(n_hidden, vocab_size, **kw)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):  # x: (B, T) int
        chex.assert_rank(x, 2)  # checked while tracing: costs nothing per jitted call
        chex.assert_axis_dimension(x, 1, self.fc1.in_features // self.wte.features)
        B, T = x.shape
        emb = self.wte(x)  # (B, T, C)
        h = emb.reshape(B, -1)  # (B, T*C)
        h = jnp.tanh(self.ln(self.fc1(h)))  # (B, H)
        return self.head(self.drop(h, rngs=rngs))  # (B, V)


def dotted(path) -> str:
    """A pytree or nnx path as the dotted name the weight maps use: ("fc1", "kernel") ->
    "fc1.kernel" (the dict keys of a pure pytree path count by their .key)."""
    return ".".join(str(getattr(k, "key", k)) for k in path)


def named_arrays(state: nnx.State) -> dict[str, np.ndarray]:
    """An nnx State (parameters, gradients, ...) as {"fc1.kernel": numpy array, ...}."""
    return {dotted(path): np.asarray(var[...]) for path, var in nnx.to_flat_state(state)}


def get_weights(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's parameters as {"fc1.kernel": array, ...} (dotted Flax paths)."""
    return named_arrays(nnx.state(model, nnx.Param))


def set_weights(model: nnx.Module, weights: dict[str, np.ndarray]) -> None:
    """Load a get_weights()-style dict into the model; every parameter must be given, shapes must
    match."""
    flat = nnx.state(model, nnx.Param).flat_state()
    names = {dotted(path) for path, _ in flat}
    if names != set(weights):
        raise ValueError(
            f"weights do not match the model: missing {sorted(names - set(weights))}, "
            f"unexpected {sorted(set(weights) - names)}"
        )
    for path, var in flat:
        value = weights[dotted(path)]
        if value.shape != var[...].shape:
            raise ValueError(f"{path}: shape {value.shape} != {var[...].shape}")
        # flat_state holds the model's own Variables: this writes into the model
        var[...] = jnp.asarray(value, dtype=var[...].dtype)
