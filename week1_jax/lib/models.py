"""Models shared by the JAX labs, and their weights as flat name -> numpy dicts.

Model code knows nothing of devices or parallelism; `dtype` (compute) and
`param_dtype` are the hooks the mixed-precision policy uses.
"""

from __future__ import annotations

import chex
import jax
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


def _uniform_init(bound: float):
    """An initializer drawing U[-bound, bound]."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# U[-1/sqrt(fan_in), 1/sqrt(fan_in)], torch's default for Conv1d and Linear weights (fan_in of a
# conv kernel: k * in). Flax's default (truncated normal) also compiles slowly, once per shape.
_KERNEL_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class KimCNN(nnx.Module):
    """Kim (2014): embeddings, 1-D convolutions of `widths` words (n_maps each), ReLU,
    max-over-time pooling over the windows inside each text, dropout, a linear head. The
    embeddings start from U[-init_range, init_range] (Kim's 0.25 for words without a vector).

    Inputs are NLC (B, T, E): nnx.Conv's layout, kernels (k, E, n_maps). The cnn_classifier lab
    trains it; the serving lab exports and serves it.
    """

    def __init__(
        self,
        vocab_size: int,
        n_embd: int,
        n_maps: int,
        num_classes: int,
        *,
        widths: tuple[int, ...],
        init_range: float,
        dropout: float,
        rngs: nnx.Rngs,
    ):
        self.widths = tuple(widths)
        self.wte = nnx.Embed(
            vocab_size, n_embd, embedding_init=_uniform_init(init_range), rngs=rngs
        )
        self.convs = nnx.List(
            [nnx.Conv(n_embd, n_maps, kernel_size=(k,), padding="VALID",
                      kernel_init=_KERNEL_INIT, rngs=rngs)
             for k in self.widths]
        )  # fmt: skip
        self.drop = nnx.Dropout(dropout)  # its key comes with each call
        self.head = nnx.Linear(
            len(self.widths) * n_maps, num_classes, kernel_init=_KERNEL_INIT, rngs=rngs
        )

    def __call__(self, ids, lengths, *, rngs: nnx.Rngs | None = None):  # ids (B, T), lengths (B,)
        B, T = ids.shape
        inside = jnp.arange(T)[None, :] < lengths[:, None]  # (B, T)
        x = self.wte(ids) * inside[..., None]  # (B, T, E): padding is the zero vector
        pooled = []
        for k, conv in zip(self.widths, self.convs, strict=True):
            c = conv(x)  # (B, T-k+1, M): window p covers words p..p+k-1
            # A window counts if it ends inside the text; window 0 always counts (short texts).
            ok = jnp.arange(T - k + 1)[None, :] <= jnp.maximum(lengths - k, 0)[:, None]
            c = jnp.where(ok[..., None], c, -jnp.inf)  # (B, T-k+1, M)
            pooled.append(jax.nn.relu(c.max(axis=1)))  # (B, M); relu(max) == max(relu)
        h = jnp.concatenate(pooled, axis=-1)  # (B, 3M)
        return self.head(self.drop(h, rngs=rngs))  # (B, C)


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
