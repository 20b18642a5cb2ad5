"""ELMo lab, torch side: a biLM on week1_torch/lib/recurrent.py's LSTM, the scalar mix, the
probes (word senses layer by layer, sentiment on frozen features) beside MiniLM and word2vec.

Read beside week1_jax/elmo.py: the same functions in the same order.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labs import elmo as spec
from week1 import loop
from week1_torch.lib import bert, devices, optim, schedules
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights, set_weights
from week1_torch.lib.recurrent import LSTM

# torch's names are the compare's start (start_weights); JAX only reads them (load_torch_weights)
FRAMEWORK_ONLY = ("torch_weights",)


def reverse_within(x, lengths=None):
    """Each row of x (B, T, ...) reversed within its length, padding left in place
    (position t <-> lengths - 1 - t); the whole row when lengths is None. Its own inverse."""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device)[None, :]  # (1, T)
    L = lengths[:, None]  # (B, 1)
    index = torch.where(t < L, L - 1 - t, t)  # (B, T)
    return torch.take_along_dim(x, index[..., None], dim=1)


class BiLM(nn.Module):
    r"""ELMo's biLM: a forward and a backward stack of LSTM layers over one word embedding, one
    softmax shared by both directions (Peters et al. 2018, sec. 3.1)::

        x_t = E[w_t];  h->_{t,1} = LSTM->_1(x)_t,  h<-_{t,1} = LSTM<-_1(x)_t (right to left)
        h_{t,j} = LSTM_j(h_{.,j-1})_t + h_{t,j-1}  for j >= 2 (residual, as in ELMo)
        p(w_{t+1} | w_<=t) = softmax(W h->_{t,L} + b)
        p(w_{t-1} | w_>=t) = softmax(W h<-_{t,L} + b)

    forward(ids (B, T), lengths (B,) or None) -> L + 1 layers (B, T, 2H) in time order: layer
    0 is [x_t; x_t], layer j is [h->_{t,j}; h<-_{t,j}]. builtin=True puts torch.nn.LSTM in
    place of ours (the parity reference; same state_dict).
    """

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int = 2, *, builtin=False):
        super().__init__()
        layer = nn.LSTM if builtin else LSTM
        self.hidden_size = hidden_size
        self.wte = nn.Embedding(vocab_size, hidden_size)
        self.fwd = nn.ModuleList(
            [layer(hidden_size, hidden_size, 1, batch_first=True) for _ in range(num_layers)]
        )
        self.bwd = nn.ModuleList(
            [layer(hidden_size, hidden_size, 1, batch_first=True) for _ in range(num_layers)]
        )
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids, lengths=None):
        x = self.wte(ids)  # (B, T, H)
        f, b = x, reverse_within(x, lengths)  # b: each row read right to left
        layers = [torch.cat([x, x], dim=-1)]  # (B, T, 2H)
        for k, (lf, lb) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            hf, hb = lf(f)[0], lb(b)[0]  # (B, T, H) each
            f, b = (hf + f, hb + b) if k else (hf, hb)
            layers.append(torch.cat([f, reverse_within(b, lengths)], dim=-1))  # (B, T, 2H)
        return layers


class ScalarMix(nn.Module):
    r"""ELMo's task-specific mix (allennlp.modules.ScalarMix without layer norm)::

        mix(h) = gamma * sum_j softmax(s)_j h_j,    s = 0 (an equal mix), gamma = 1 at the start

    forward(h (..., J, D)) -> (..., D).
    """

    def __init__(self, num_layers: int):
        super().__init__()
        self.s = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, h):
        w = torch.softmax(self.s, dim=0)  # (J,)
        return self.gamma * (w[:, None] * h).sum(dim=-2)  # (..., D)


class Probe(nn.Module):
    """A linear classifier on a scalar mix of frozen feature layers: (B, J, D) -> (B, C)."""

    def __init__(self, num_layers: int, dim: int, num_classes: int):
        super().__init__()
        self.mix = ScalarMix(num_layers)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, features):
        return self.head(self.mix(features))


def torch_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights under torch's names, numpy."""
    return get_weights(model)


def load_torch_weights(model: nn.Module, weights: dict) -> None:
    set_weights(model, weights)


def build_model(cfg: spec.Config, vocab_size: int, weights=None, *, builtin: bool = False):
    """The biLM, initialised from cfg.seed (torch's defaults) or from `weights`, on the
    device."""
    torch.manual_seed(cfg.seed)
    model = BiLM(vocab_size, cfg.hidden_size, cfg.num_layers, builtin=builtin)
    if weights is not None:
        load_torch_weights(model, weights)
    return devices.place(model)


def make_optimizer(model, cfg):
    """From-scratch AdamW on cfg's schedule, no decay on biases (clipping is in the step)."""
    optimizer = optim.AdamW(optim.param_groups(model, cfg.weight_decay))
    return optimizer, schedules.lambda_lr(optimizer, schedules.from_config(cfg))


def as_tensors(*arrays: np.ndarray):
    """Integer numpy arrays as int64 tensors on the default device."""
    return devices.to_device(*arrays, dtype=torch.long)


def bilm_loss(model: BiLM, x, y_fwd, y_bwd):
    """Mean of the two directions' next-word cross-entropies over every position: x and the
    targets (B, T) ids (y_fwd the next word, y_bwd the previous one)."""
    top = model(x)[-1]  # (B, T, 2H)
    H = model.hidden_size
    forward = F.cross_entropy(model.head(top[..., :H]).flatten(0, 1), y_fwd.flatten())
    backward = F.cross_entropy(model.head(top[..., H:]).flatten(0, 1), y_bwd.flatten())
    return (forward + backward) / 2


def probe_loss(model: Probe, features, labels):
    """Mean cross-entropy of the probe's logits: features (B, J, D), labels (B,)."""
    return F.cross_entropy(model(features), labels)


def train_step(model, optimizer, loss, clip_norm: float = 0.0):
    """step(*batch) -> loss for lib/train.train: one AdamW update of `loss`."""
    return trainer.make_step(model, optimizer, loss, clip_norm=clip_norm)


@torch.no_grad()
def evaluate(model: BiLM, batches) -> dict:
    """{"val_loss": the mean biLM loss over fixed held-out batches}."""
    losses = torch.stack([bilm_loss(model, *as_tensors(*b)) for b in batches])
    return {"val_loss": float(losses.mean())}


def train(cfg: spec.Config, data: spec.Data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train the biLM for cfg.steps (or until ctx.stop_at); returns (model, History) with the
    evaluations "val_loss". weights: start from these (torch names, numpy)."""
    model = build_model(cfg, data.vocab_size, weights)
    optimizer, scheduler = make_optimizer(model, cfg)
    val = spec.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        train_step(model, optimizer, bilm_loss, cfg.clip_norm),
        lambda step: as_tensors(*spec.train_batch(data, cfg, step)),
        loop.Cadence.of(cfg),
        ctx,
        scheduler=scheduler,
        evaluate=lambda: evaluate(model, val),
        label="torch biLM",
    )
    return model, history


@torch.no_grad()
def elmo_layers(model: BiLM, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every layer of the frozen biLM: (L + 1, B, T, 2H) numpy."""
    ids_t, lengths_t = as_tensors(ids, lengths)
    return torch.stack(model(ids_t, lengths_t)).cpu().numpy()


def sentence_features(model: BiLM, data: spec.Data, texts, cfg: spec.Config) -> np.ndarray:
    """(N, L + 1, 2H): each text's layers averaged over its words."""
    ids, lengths = spec.padded(data, texts, cfg.max_length)
    parts = []
    for rows in spec.batches_of(len(texts)):
        longest = int(lengths[rows].max())
        layers = elmo_layers(model, ids[rows, :longest], lengths[rows])
        parts.append(spec.mean_over_words(layers, lengths[rows]))
    return np.concatenate(parts)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run elmo --framework torch [--compile]`: the biLM, then the probes (labs/elmo.py)."""
    return spec.run(cfg, run, sys.modules[__name__], bert, compile)


def train_probe(name: str, features: dict, labels: dict, cfg: spec.Config, run) -> dict:
    """One sentiment probe (a scalar mix and a linear layer) on frozen features through the one
    loop: features/labels {"train", "test"}; returns {"accuracy", "weights", "gamma"}."""
    pc = spec.probe_config(cfg)
    train_x, test_x = spec.standardise(features["train"], features["test"])
    J, D = train_x.shape[1:]
    torch.manual_seed(cfg.seed)
    model = devices.place(Probe(J, D, 2))
    optimizer, scheduler = make_optimizer(model, pc)
    train_xt = devices.to_device(train_x, dtype=torch.float32)[0]
    train_yt, test_yt = as_tensors(labels["train"], labels["test"])
    test_xt = devices.to_device(test_x, dtype=torch.float32)[0]

    def batch(step):
        rows = torch.as_tensor(spec.probe_batch(len(train_x), pc, step), device=train_xt.device)
        return train_xt[rows], train_yt[rows]

    @torch.no_grad()
    def accuracy():
        return {"test_accuracy": float((model(test_xt).argmax(-1) == test_yt).float().mean())}

    ctx = loop.Context.of_run(run).part(f"probe {name}")
    history = trainer.train(
        model,
        optimizer,
        train_step(model, optimizer, probe_loss),
        batch,
        loop.Cadence.of(pc),
        dataclasses.replace(ctx, show_progress=False),
        scheduler=scheduler,
        evaluate=accuracy,
        label=f"torch probe {name}",
    )
    weights = torch.softmax(model.mix.s, 0).detach().cpu().numpy() if J > 1 else None
    return {
        "accuracy": history.evals["test_accuracy"][-1],
        "weights": weights,
        "gamma": model.mix.gamma.item(),
    }


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    data = spec.load_data(cfg)
    return torch_weights(build_model(cfg, data.vocab_size))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare elmo`: the biLM from `weights` (torch's names, numpy); returns its Curves."""
    data = spec.load_data(cfg)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return spec.compare_curves(history)
