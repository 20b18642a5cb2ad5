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


class KimCNN(nn.Module):
    """Kim (2014): embeddings, 1-D convolutions of `widths` words (n_maps each), ReLU,
    max-over-time pooling over the windows inside each text, dropout, a linear head. The
    embeddings start from U[-init_range, init_range] (Kim's 0.25 for words without a vector).

    Conv1d takes NCL (B, E, T): the embeddings are transposed; weights (n_maps, E, k). The
    cnn_classifier lab trains it; the serving lab exports and serves it.
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
    ):
        super().__init__()
        self.widths = tuple(widths)
        self.wte = nn.Embedding(vocab_size, n_embd)
        nn.init.uniform_(self.wte.weight, -init_range, init_range)
        self.convs = nn.ModuleList(nn.Conv1d(n_embd, n_maps, k) for k in self.widths)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(len(self.widths) * n_maps, num_classes)

    def forward(self, ids, lengths):  # ids (B, T), lengths (B,)
        B, T = ids.shape
        inside = torch.arange(T, device=ids.device)[None, :] < lengths[:, None]  # (B, T)
        x = self.wte(ids) * inside[..., None]  # (B, T, E): padding is the zero vector
        x = x.transpose(1, 2)  # (B, E, T): Conv1d's NCL
        pooled = []
        for k, conv in zip(self.widths, self.convs, strict=True):
            c = conv(x)  # (B, M, T-k+1): window p covers words p..p+k-1
            # A window counts if it ends inside the text; window 0 always counts (short texts).
            windows = torch.arange(T - k + 1, device=ids.device)[None, :]  # (1, T-k+1)
            ok = windows <= (lengths - k).clamp(min=0)[:, None]  # (B, T-k+1)
            c = c.masked_fill(~ok[:, None, :], float("-inf"))  # (B, M, T-k+1)
            # amax splits the gradient among tied maxima, as jnp.max does (max(dim) picks one).
            pooled.append(torch.relu(c.amax(dim=2)))  # (B, M); relu(max) == max(relu)
        h = torch.cat(pooled, dim=1)  # (B, 3M)
        return self.head(self.drop(h))  # (B, C)


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
