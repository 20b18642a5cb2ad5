r"""Recurrent layers written from scratch (Elman RNN, LSTM, GRU), and the models built on them.

Read beside week1_jax/lib/recurrent.py: the same cells, layers and models in the same order.

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

The parameters are torch.nn's, with the same names, shapes, registration order
and initialisation (uniform in [-1/sqrt(H), 1/sqrt(H)]): `state_dict()` loads
from and into `torch.nn.<X>`, and the same seed gives the same weights.

The recurrence is a Python loop over time steps (eager autograd records it).
The input projection x_t W_ih^T + b_ih does not depend on the state, so it is
computed for all T steps in one matmul before the loop; only h_{t-1} W_hh^T
stays inside it. torch.nn's own layers run a fused C++ (oneDNN/cuDNN) kernel:
the bench measures the difference.

Notation: x_t the input at step t, h_t the hidden state, sigma the logistic
function, * the elementwise product, G the number of gate blocks (1, 4, 3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def elman_cell(h, xp, kernel_hh, bias_hh):
    r"""Elman (1990), "Finding structure in time"; torch.nn.RNN with tanh::

        h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)

    `xp` is the hoisted x_t W_ih^T + b_ih, (B, H); `kernel_hh` is W_hh^T (H, H).
    Returns (new state, output) = (h_t, h_t).
    """
    h = torch.tanh(xp + torch.addmm(bias_hh, h, kernel_hh))  # (B, H)
    return h, h


def lstm_cell(carry, xp, kernel_hh, bias_hh):
    r"""LSTM: Hochreiter & Schmidhuber (1997), with the forget gate of Gers et al. (2000);
    torch.nn.LSTM's gate order i, f, g, o::

        [i, f, g, o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh     (each (B, H))
        c_t = sigma(f) * c_{t-1} + sigma(i) * tanh(g)
        h_t = sigma(o) * tanh(c_t)

    The cell state c carries information along an additive path (gated by f), which is
    why its gradient does not vanish the way an Elman RNN's does.
    `carry` is (h, c); `xp` is the hoisted x_t W_ih^T + b_ih, (B, 4H).
    """
    h, c = carry
    gates = xp + torch.addmm(bias_hh, h, kernel_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)  # 4 x (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return (h, c), h


def gru_cell(h, xp, kernel_hh, bias_hh):
    r"""GRU: Cho et al. (2014); torch.nn.GRU's form, with b_hn inside the reset product::

        [x_r, x_z, x_n] = x_t W_ih^T + b_ih,   [h_r, h_z, h_n] = h_{t-1} W_hh^T + b_hh
        r = sigma(x_r + h_r),   z = sigma(x_z + h_z)
        n = tanh(x_n + r * h_n)
        h_t = (1 - z) * n + z * h_{t-1}

    (Flax's nnx.GRUCell has no b_hn, so it equals this only when b_hn = 0.)
    `xp` is the hoisted x_t W_ih^T + b_ih, (B, 3H).
    """
    x_r, x_z, x_n = xp.chunk(3, dim=-1)  # 3 x (B, H)
    h_r, h_z, h_n = torch.addmm(bias_hh, h, kernel_hh).chunk(3, dim=-1)  # 3 x (B, H)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return h, h


def scan_direction(cell, xp, carry, kernel_hh, bias_hh, mask, reverse: bool):
    """Run `cell` over time: xp (T, B, G*H) time-major, carry the initial state, mask (T, B, 1)
    bool or None (every step real). Returns (final carry, outputs (T, B, H)).

    Where mask is False the state is kept and the output is zero, so a padded step
    changes nothing; with reverse=True the loop starts at t = T-1 and outputs stay in
    time order.
    """
    steps = xp.unbind(0)  # T x (B, G*H); one backward node (xp[t] would add a (T, B, G*H)
    # zero tensor per step to the backward pass)
    T = len(steps)
    outputs = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        new, out = cell(carry, steps[t], kernel_hh, bias_hh)
        if mask is None:
            carry = new
        else:
            real = mask[t]  # (B, 1)
            if isinstance(new, tuple):
                carry = tuple(torch.where(real, n, o) for n, o in zip(new, carry, strict=True))
            else:
                carry = torch.where(real, new, carry)
            out = torch.where(real, out, 0.0)
        outputs[t] = out
    return carry, torch.stack(outputs)  # (T, B, H)


class _Recurrent(nn.Module):
    """A multi-layer, optionally bidirectional recurrent layer with torch.nn's interface.

    forward(x (B, T, in) if batch_first else (T, B, in), lengths (B,) or None, hx or None)
    -> (output (B, T, D*H) (or (T, B, D*H)), h_n (D*num_layers, B, H)), h_n in torch's order
    (layer 0 forward, layer 0 reverse, layer 1 ...).
    """

    GATES = 1
    cell = staticmethod(elman_cell)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        batch_first: bool = True,
    ):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bidirectional = num_layers, bidirectional
        self.batch_first = batch_first
        for k, suffix in self.layer_directions():  # torch.nn's registration order
            fan_in = input_size if k == 0 else self.num_directions * hidden_size
            shapes = {
                "weight_ih": (self.GATES * hidden_size, fan_in),
                "weight_hh": (self.GATES * hidden_size, hidden_size),
                "bias_ih": (self.GATES * hidden_size,),
                "bias_hh": (self.GATES * hidden_size,),
            }
            for name, shape in shapes.items():
                self.register_parameter(f"{name}_l{k}{suffix}", nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter uniform in [-1/sqrt(H), 1/sqrt(H)]."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_directions(self) -> list[tuple[int, str]]:
        """(layer, name suffix) in torch's order: [(0, ""), (0, "_reverse"), (1, ""), ...]."""
        suffixes = ("", "_reverse")[: self.num_directions]
        return [(k, s) for k in range(self.num_layers) for s in suffixes]

    def initial_carries(self, hx, batch: int, like: torch.Tensor) -> list:
        """One initial state per (layer, direction): zeros, or the slices of hx (D*L, B, H)."""
        if hx is None:
            hx = like.new_zeros(self.num_directions * self.num_layers, batch, self.hidden_size)
        return list(hx.unbind(0))

    def final_state(self, carries: list):
        """The final carries as torch returns them: h_n (D*L, B, H)."""
        return torch.stack(carries)

    def forward(self, x, lengths=None, hx=None):
        if self.batch_first:
            x = x.transpose(0, 1)  # (T, B, in): time-major for the loop
        T, B, _ = x.shape
        mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
            steps = torch.arange(T, device=x.device)
            mask = (steps[:, None] < lengths[None, :])[..., None]  # (T, B, 1): True where real
        carries = self.initial_carries(hx, B, x)
        layer_in = x
        finals, outputs = [], []
        for index, (k, suffix) in enumerate(self.layer_directions()):
            weight_ih = getattr(self, f"weight_ih_l{k}{suffix}")
            bias_ih = getattr(self, f"bias_ih_l{k}{suffix}")
            xp = F.linear(layer_in, weight_ih, bias_ih)  # (T, B, G*H): every step at once
            carry, out = scan_direction(
                self.cell,
                xp,
                carries[index],
                getattr(self, f"weight_hh_l{k}{suffix}").t(),  # (H, G*H)
                getattr(self, f"bias_hh_l{k}{suffix}"),
                mask,
                reverse=suffix == "_reverse",
            )
            finals.append(carry)
            outputs.append(out)  # (T, B, H)
            if len(outputs) == self.num_directions:  # the layer is complete
                layer_in = torch.cat(outputs, dim=-1)  # (T, B, D*H)
                outputs = []
        output = layer_in.transpose(0, 1) if self.batch_first else layer_in  # (B, T, D*H)
        return output, self.final_state(finals)


class RNN(_Recurrent):
    """Elman RNN (tanh), torch.nn.RNN's interface and parameters (see elman_cell)."""


class LSTM(_Recurrent):
    """LSTM, torch.nn.LSTM's interface and parameters (see lstm_cell); hx and the final
    state are (h, c) pairs of (D*num_layers, B, H) tensors."""

    GATES = 4
    cell = staticmethod(lstm_cell)

    def initial_carries(self, hx, batch: int, like: torch.Tensor) -> list:
        if hx is None:
            zeros = like.new_zeros(self.num_directions * self.num_layers, batch, self.hidden_size)
            hx = (zeros, zeros)
        h0, c0 = hx
        return list(zip(h0.unbind(0), c0.unbind(0), strict=True))

    def final_state(self, carries: list):
        return torch.stack([h for h, _ in carries]), torch.stack([c for _, c in carries])


class GRU(_Recurrent):
    """GRU, torch.nn.GRU's interface and parameters (see gru_cell)."""

    GATES = 3
    cell = staticmethod(gru_cell)


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


class LSTMLM(nn.Module):
    """Character LSTM language model: embed, LSTM (ours or torch.nn's), a linear head per step.

    forward(x (B, T) ids, hx=None) -> (logits (B, T, V), (h_n, c_n)); the state lets
    sampling feed one character at a time. torch.nn.LSTM has our LSTM's state_dict, so
    both variants load the same weights.
    """

    def __init__(
        self,
        vocab_size: int,
        n_embd: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        builtin: bool = False,
    ):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        layer = nn.LSTM if builtin else LSTM
        self.rnn = layer(n_embd, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, hx=None):
        out, state = self.rnn(self.wte(x), hx=hx)  # (B, T, H)
        return self.head(out), state  # (B, T, V)


def lm_loss(model: LSTMLM, x, y):
    """Mean next-character cross-entropy over every position: x, y (B, T) ids."""
    logits, _ = model(x)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())  # (B*T, V) vs (B*T,)


class RNNClassifier(nn.Module):
    """Sequence classifier: embed token ids, a recurrent layer over the real steps, pool, head.

    pooling "final": the last layer's final states (forward: at each sequence's last real
    token; reverse: at its first), concatenated; "mean": the outputs averaged over the real
    steps. forward(ids (B, T), lengths (B,)) -> logits (B, num_classes).
    """

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
    ):
        super().__init__()
        self.pooling = pooling
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.rnn = LAYERS[cell](n_embd, hidden_size, num_layers, bidirectional)
        D = 2 if bidirectional else 1
        self.head = nn.Linear(D * hidden_size, num_classes)

    def forward(self, ids, lengths):
        out, state = self.rnn(self.wte(ids), lengths)  # (B, T, D*H)
        if self.pooling == "mean":
            # padded outputs are zeros already: the sum runs over real steps only
            features = out.sum(dim=1) / lengths[:, None].to(out.dtype)  # (B, D*H)
        else:
            h_n = state[0] if isinstance(state, tuple) else state  # (D*L, B, H)
            D = self.rnn.num_directions
            features = torch.cat(list(h_n[-D:]), dim=-1)  # (B, D*H)
        return self.head(features)  # (B, C)


def compile_cells(module: nn.Module) -> nn.Module:
    """torch.compile the cell of every recurrent layer in `module` (in place; returns it).

    The time loop stays in Python: compiling the whole layer would unroll T steps into one
    graph (minutes of compilation on a CPU even at T=32); a compiled cell fuses one step's
    gate arithmetic into one kernel and is compiled once per shape.
    """
    for layer in module.modules():
        if isinstance(layer, _Recurrent):
            layer.cell = torch.compile(type(layer).cell)
    return module
