"""Models shared by the torch labs, and their weights as flat name -> numpy dicts.

Model code knows nothing of devices, precision or parallelism; separate
functions in the labs apply them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CharMLP(nn.Module):
    """Bengio et al. (2003): embed a window of characters, concatenate, one hidden layer, logits.

    LayerNorm (eps 1e-5, passed explicitly) before the tanh keeps the
    pre-activations in tanh's linear range; dropout on the hidden layer is off
    unless `dropout > 0`.
    """

    def __init__(
        self, vocab_size: int, block_size: int, n_embd: int, n_hidden: int, *, dropout: float = 0.0
    ):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.fc1 = nn.Linear(block_size * n_embd, n_hidden)
        self.ln = nn.LayerNorm(n_hidden, eps=1e-5)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(n_hidden, vocab_size)

    def forward(self, x):  # x: (B, T) int
        B, T = x.shape
        emb = self.wte(x)  # (B, T, C)
        h = emb.reshape(B, -1)  # (B, T*C)
        h = torch.tanh(self.ln(self.fc1(h)))  # (B, H)
        return self.head(self.drop(h))  # (B, V)


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's parameters as {"fc1.weight": array, ...} (state_dict names)."""
    return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Load a get_weights()-style dict into the model (strict: every name, matching shapes)."""
    current = model.state_dict()
    state = {
        name: torch.tensor(
            np.asarray(value), dtype=current[name].dtype if name in current else None
        )
        for name, value in weights.items()
    }  # torch.tensor copies: the model owns its weights
    model.load_state_dict(state, strict=True)
