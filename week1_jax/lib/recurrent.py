r"""Recurrent layers written from scratch (Elman RNN, LSTM, GRU), and the models built on them.

Read beside week1_torch/lib/recurrent.py: the same cells, layers and models in the same order.

Each layer is multi-layer and optionally bidirectional, runs on padded batches
with per-sequence `lengths`, and computes what `torch.nn.RNN/LSTM/GRU` compute on
`pack_padded_sequence(..., enforce_sorted=False)` followed by
`pad_packed_sequence(total_length=T)`:

- the forward direction updates its state only at real steps (t < length), so
  its final state is the state at each sequence's last real step;
- the reverse direction runs from t = T-1 down to 0 under the same rule, so it
  starts at each sequence's own end (its state stays the initial one through
  the padding);
- outputs at padded steps are zeros, in every layer.

Parameters carry torch.nn's names with Flax's layout: ``weight_ih_l0`` (G*H, in)
is ``kernel_ih_l0`` (in, G*H) here, biases keep their names, the reverse
direction adds ``_reverse``; LAYER_MAP is the table, and `load_torch_state_dict`
takes a torch.nn state_dict (numpy values) directly.

The recurrence is one `lax.scan` per layer and direction. The input projection
x_t W_ih + b_ih does not depend on the state, so it is computed for all T steps
in one matmul before the scan (a (T*B, in) x (in, G*H) product the hardware
likes); only h_{t-1} W_hh stays inside the loop.

Notation: x_t the input at step t, h_t the hidden state, sigma the logistic
function, * the elementwise product, G the number of gate blocks (1, 4, 3).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from week1 import convert
from week1_jax.lib.models import get_weights, set_weights

# torch.nn name      ours (Flax layout)   how          ({k}: layer, {d}: "" or "_reverse")
LAYER_MAP = (
    ("weight_ih_l{k}{d}", "kernel_ih_l{k}{d}", convert.TRANSPOSE),  # (G*H, in) -> (in, G*H)
    ("weight_hh_l{k}{d}", "kernel_hh_l{k}{d}", convert.TRANSPOSE),  # (G*H, H) -> (H, G*H)
    ("bias_ih_l{k}{d}", "bias_ih_l{k}{d}", convert.SAME),
    ("bias_hh_l{k}{d}", "bias_hh_l{k}{d}", convert.SAME),
)


def elman_cell(h, xp, kernel_hh, bias_hh):
    r"""Elman (1990), "Finding structure in time"; torch.nn.RNN with tanh::

        h_t = tanh(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)

    `xp` is the hoisted x_t W_ih + b_ih, (B, H). Returns (new state, output) = (h_t, h_t).
    """
    h = jnp.tanh(xp + h @ kernel_hh + bias_hh)  # (B, H)
    return h, h


def lstm_cell(carry, xp, kernel_hh, bias_hh):
    r"""LSTM: Hochreiter & Schmidhuber (1997), with the forget gate of Gers et al. (2000);
    torch.nn.LSTM's gate order i, f, g, o::

        [i, f, g, o] = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh         (each (B, H))
        c_t = sigma(f) * c_{t-1} + sigma(i) * tanh(g)
        h_t = sigma(o) * tanh(c_t)

    The cell state c carries information along an additive path (gated by f), which is
    why its gradient does not vanish the way an Elman RNN's does.
    `carry` is (h, c); `xp` is the hoisted x_t W_ih + b_ih, (B, 4H).
    """
    h, c = carry
    gates = xp + h @ kernel_hh + bias_hh  # (B, 4H)
    i, f, g, o = jnp.split(gates, 4, axis=-1)  # 4 x (B, H)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def gru_cell(h, xp, kernel_hh, bias_hh):
    r"""GRU: Cho et al. (2014); torch.nn.GRU's form, with b_hn inside the reset product::

        [x_r, x_z, x_n] = x_t W_ih + b_ih,   [h_r, h_z, h_n] = h_{t-1} W_hh + b_hh
        r = sigma(x_r + h_r),   z = sigma(x_z + h_z)
        n = tanh(x_n + r * h_n)
        h_t = (1 - z) * n + z * h_{t-1}

    (Flax's nnx.GRUCell has no b_hn, so it equals this only when b_hn = 0.)
    `xp` is the hoisted x_t W_ih + b_ih, (B, 3H).
    """
    x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)  # 3 x (B, H)
    h_r, h_z, h_n = jnp.split(h @ kernel_hh + bias_hh, 3, axis=-1)  # 3 x (B, H)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return h, h


def scan_direction(cell, xp, carry, kernel_hh, bias_hh, mask, reverse: bool):
    """Run `cell` over time: xp (T, B, G*H) time-major, carry the initial state, mask (T, B, 1)
    bool or None (every step real). Returns (final carry, outputs (T, B, H)).

    Where mask is False the state is kept and the output is zero, so a padded step
    changes nothing; with reverse=True the scan starts at t = T-1 and outputs stay in
    time order.
    """

    def step(carry, inputs):
        xp_t, real = inputs  # (B, G*H), (B, 1) or None
        new, out = cell(carry, xp_t, kernel_hh, bias_hh)
        if real is None:
            return new, out
        kept = jax.tree.map(lambda n, o: jnp.where(real, n, o), new, carry)
        return kept, jnp.where(real, out, 0.0)

    return jax.lax.scan(step, carry, (xp, mask), reverse=reverse)


class _Recurrent(nnx.Module):
    """A multi-layer, optionally bidirectional recurrent layer on batch-first input.

    Called as (x (B, T, in), lengths (B,) or None, hx or None) -> (output (B, T, D*H), h_n),
    h_n (D*num_layers, B, H) in torch's order (layer 0 forward, layer 0 reverse, layer 1 ...).
    Parameters start as torch's do: uniform in [-1/sqrt(H), 1/sqrt(H)].
    """

    GATES = 1
    cell = staticmethod(elman_cell)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        *,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bidirectional = num_layers, bidirectional
        self.dtype = dtype  # compute dtype (None: the parameters')
        bound = 1.0 / math.sqrt(hidden_size)
        for k, suffix in self.layer_directions():
            fan_in = input_size if k == 0 else self.num_directions * hidden_size
            shapes = {
                "kernel_ih": (fan_in, self.GATES * hidden_size),
                "kernel_hh": (hidden_size, self.GATES * hidden_size),
                "bias_ih": (self.GATES * hidden_size,),
                "bias_hh": (self.GATES * hidden_size,),
            }
            for name, shape in shapes.items():
                value = jax.random.uniform(rngs.params(), shape, param_dtype, -bound, bound)
                setattr(self, f"{name}_l{k}{suffix}", nnx.Param(value))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_directions(self) -> list[tuple[int, str]]:
        """(layer, name suffix) in torch's order: [(0, ""), (0, "_reverse"), (1, ""), ...]."""
        suffixes = ("", "_reverse")[: self.num_directions]
        return [(k, s) for k in range(self.num_layers) for s in suffixes]

    def initial_carries(self, hx, batch: int, dtype) -> list:
        """One initial state per (layer, direction): zeros, or the slices of hx (D*L, B, H)."""
        if hx is None:
            hx = jnp.zeros((self.num_directions * self.num_layers, batch, self.hidden_size), dtype)
        return list(hx)

    def final_state(self, carries: list):
        """The final carries as torch returns them: h_n (D*L, B, H)."""
        return jnp.stack(carries)

    def __call__(self, x, lengths=None, hx=None):
        B, T, _ = x.shape
        dtype = self.dtype or self.kernel_ih_l0[...].dtype
        # (T, B, 1): True at real steps; None when every step is real (no masking work)
        mask = None if lengths is None else (jnp.arange(T)[:, None] < lengths[None, :])[..., None]
        carries = self.initial_carries(hx, B, dtype)
        layer_in = jnp.swapaxes(x, 0, 1).astype(dtype)  # (T, B, in): time-major for the scan
        finals, outputs = [], []
        for index, (k, suffix) in enumerate(self.layer_directions()):
            p = {
                name: getattr(self, f"{name}_l{k}{suffix}")[...].astype(dtype)
                for name in ("kernel_ih", "kernel_hh", "bias_ih", "bias_hh")
            }
            xp = layer_in @ p["kernel_ih"] + p["bias_ih"]  # (T, B, G*H): every step at once
            carry, out = scan_direction(
                self.cell,
                xp,
                carries[index],
                p["kernel_hh"],
                p["bias_hh"],
                mask,
                reverse=suffix == "_reverse",
            )
            finals.append(carry)
            outputs.append(out)  # (T, B, H)
            if len(outputs) == self.num_directions:  # the layer is complete
                layer_in = jnp.concatenate(outputs, axis=-1)  # (T, B, D*H)
                outputs = []
        return jnp.swapaxes(layer_in, 0, 1), self.final_state(finals)  # (B, T, D*H)


class RNN(_Recurrent):
    """Elman RNN (tanh), torch.nn.RNN's interface and parameters (see elman_cell)."""


class LSTM(_Recurrent):
    """LSTM, torch.nn.LSTM's interface and parameters (see lstm_cell); hx and the final
    state are (h, c) pairs of (D*num_layers, B, H) arrays."""

    GATES = 4
    cell = staticmethod(lstm_cell)

    def initial_carries(self, hx, batch: int, dtype) -> list:
        if hx is None:
            zeros = jnp.zeros(
                (self.num_directions * self.num_layers, batch, self.hidden_size), dtype
            )
            hx = (zeros, zeros)
        h0, c0 = hx
        return list(zip(h0, c0, strict=True))

    def final_state(self, carries: list):
        return jnp.stack([h for h, _ in carries]), jnp.stack([c for _, c in carries])


class GRU(_Recurrent):
    """GRU, torch.nn.GRU's interface and parameters (see gru_cell)."""

    GATES = 3
    cell = staticmethod(gru_cell)


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


BUILTIN_CELLS = {"rnn": nnx.SimpleCell, "lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}


class Builtin(nnx.Module):
    """Flax's own cells for comparison (nnx.SimpleCell, nnx.OptimizedLSTMCell, nnx.GRUCell),
    each layer an nnx.RNN over one cell (unidirectional), with our layers' call and returns
    (Flax's LSTM carry (c, h) turned into torch's (h, c)). Their parameters differ from
    torch's (one bias where torch has two; no b_hn in the GRU): labs/rnn.py's table."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int = 1, *, rngs):
        self.kind, self.hidden_size = kind, hidden_size
        self.layers = nnx.List(
            [
                nnx.RNN(
                    BUILTIN_CELLS[kind](
                        input_size if k == 0 else hidden_size, hidden_size, rngs=rngs
                    ),
                    return_carry=True,
                    rngs=False,  # no RNG state: the carry starts at zeros or hx
                )
                for k in range(num_layers)
            ]
        )

    def __call__(self, x, lengths=None, hx=None):
        if hx is None:
            zeros = jnp.zeros((len(self.layers), x.shape[0], self.hidden_size), x.dtype)
            hx = (zeros, zeros) if self.kind == "lstm" else zeros
        hs, cs = [], []
        for k, layer in enumerate(self.layers):
            carry = (hx[1][k], hx[0][k]) if self.kind == "lstm" else hx[k]  # Flax's is (c, h)
            carry, x = layer(x, initial_carry=carry, seq_lengths=lengths)  # x: (B, T, H)
            if self.kind == "lstm":
                cs.append(carry[0])
                carry = carry[1]
            hs.append(carry)
        return x, ((jnp.stack(hs), jnp.stack(cs)) if self.kind == "lstm" else jnp.stack(hs))


class LSTMLM(nnx.Module):
    """Character LSTM language model: embed, LSTM (ours or Flax's), a linear head per step.

    Called as (x (B, T) ids, hx=None) -> (logits (B, T, V), (h_n, c_n)); the state lets
    sampling feed one character at a time.
    """

    TORCH_ROWS = (
        ("wte.weight", "wte.embedding", convert.SAME),
        ("head.weight", "head.kernel", convert.TRANSPOSE),
        ("head.bias", "head.bias", convert.SAME),
    )

    def __init__(
        self,
        vocab_size: int,
        n_embd: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        builtin: bool = False,
        rngs: nnx.Rngs,
    ):
        self.wte = nnx.Embed(vocab_size, n_embd, rngs=rngs)
        if builtin:
            self.rnn = Builtin("lstm", n_embd, hidden_size, num_layers, rngs=rngs)
        else:
            self.rnn = LSTM(n_embd, hidden_size, num_layers, rngs=rngs)
        self.head = nnx.Linear(hidden_size, vocab_size, rngs=rngs)

    def __call__(self, x, hx=None):
        out, state = self.rnn(self.wte(x), hx=hx)  # (B, T, H)
        return self.head(out), state  # (B, T, V)


def lm_loss(model: LSTMLM, x, y):
    """Mean next-character cross-entropy over every position: x, y (B, T) ids."""
    logits, _ = model(x)  # (B, T, V)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, y[..., None], axis=-1).mean()


class RNNClassifier(nnx.Module):
    """Sequence classifier: embed token ids, a recurrent layer over the real steps, pool, head.

    pooling "final": the last layer's final states (forward: at each sequence's last real
    token; reverse: at its first), concatenated; "mean": the outputs averaged over the real
    steps. Called as (ids (B, T), lengths (B,)) -> logits (B, num_classes).
    """

    TORCH_ROWS = LSTMLM.TORCH_ROWS

    def __init__(
        self,
        vocab_size: int,
        n_embd: int,
        hidden_size: int,
        num_classes: int,
        *,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = True,
        pooling: str = "final",
        rngs: nnx.Rngs,
    ):
        self.pooling = pooling
        self.wte = nnx.Embed(vocab_size, n_embd, rngs=rngs)
        self.rnn = LAYERS[cell](n_embd, hidden_size, num_layers, bidirectional, rngs=rngs)
        D = 2 if bidirectional else 1
        self.head = nnx.Linear(D * hidden_size, num_classes, rngs=rngs)

    def __call__(self, ids, lengths):
        out, state = self.rnn(self.wte(ids), lengths)  # (B, T, D*H)
        if self.pooling == "mean":
            # padded outputs are zeros already: the sum runs over real steps only
            features = out.sum(axis=1) / lengths[:, None].astype(out.dtype)  # (B, D*H)
        else:
            h_n = state[0] if isinstance(state, tuple) else state  # (D*L, B, H)
            D = self.rnn.num_directions
            features = jnp.concatenate(list(h_n[-D:]), axis=-1)  # (B, D*H)
        return self.head(features)  # (B, C)


def weight_map(model: nnx.Module) -> tuple:
    """The conversion table of `model` (torch state_dict name, Flax path, how): LAYER_MAP's rows
    for the recurrent layer (the model itself, or its `.rnn`), plus the model's TORCH_ROWS."""
    layer, prefix = (model, "") if isinstance(model, _Recurrent) else (model.rnn, "rnn.")
    rows = [
        (prefix + t.format(k=k, d=d), prefix + f.format(k=k, d=d), how)
        for k, d in layer.layer_directions()
        for t, f, how in LAYER_MAP
    ]
    return tuple(rows) + getattr(model, "TORCH_ROWS", ())


def load_torch_state_dict(model: nnx.Module, state_dict: dict) -> None:
    """Load torch.nn-named weights (numpy values, as `torch.nn.LSTM(...).state_dict()` gives
    after .numpy()) into `model`: our layers, or a model holding one as `.rnn`."""
    weights = {name: np.asarray(value) for name, value in state_dict.items()}
    set_weights(model, convert.torch_to_flax(weights, weight_map(model)))


def torch_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's weights under torch.nn's names and layouts (the inverse of the above)."""
    return convert.flax_to_torch(get_weights(model), weight_map(model))
