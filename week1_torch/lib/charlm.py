"""The char-MLP language model in PyTorch: build, optimizer, loss, evaluation, sampling.

The model side of week1/charlm.py, for every lab that trains the char LM (training_loop,
regularization, adamw, lr_schedules, grad_accumulation, mixed_precision, monitoring,
profiling, the parallel labs, the benchmark). Mirrors week1_jax/lib/charlm.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from week1 import charlm, loop
from week1_torch.lib import checkpoint, devices, optim, schedules
from week1_torch.lib import train as trainer
from week1_torch.lib.models import CharMLP, get_weights, set_weights


class TiedCharMLP(nn.Module):
    """The char MLP of lib/models.CharMLP with its output layer tied to the embedding (Press
    & Wolf 2017; Inan et al. 2017): the logits score the hidden state against the very vectors
    that embed the input characters.

        e = E[x]                                   E (V, C): the embedding
        h = dropout(tanh(LN(concat(e) W_1 + b_1)))  (B, H)
        g = h W_p + b_p                            (B, C): the hidden state brought to n_embd
        logits = g E^T + b                         (B, V)

    E gets gradient from both ends: dL/dE = the input side (dL/de scattered into the rows of
    the window's characters) + the output side (dL/dlogits)^T g. The output layer costs
    H C + C + V parameters here against H V + V untied: tying saves only where C < V.

    Initialisation, the same in both frameworks: E normal with std 1/sqrt(C), the output
    layer's fan-in, so that the first logits are of order 1 (torch's default N(0, 1) would
    make them sqrt(C) times larger); the rest as each framework's CharMLP.
    """

    def __init__(
        self, vocab_size: int, block_size: int, n_embd: int, n_hidden: int, *, dropout: float = 0.0
    ):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.fc1 = nn.Linear(block_size * n_embd, n_hidden)
        self.ln = nn.LayerNorm(n_hidden, eps=1e-5)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(n_hidden, n_embd)
        self.head_bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.wte.weight, std=1.0 / math.sqrt(n_embd))

    def forward(self, x):  # x: (B, T) int
        B, T = x.shape
        emb = self.wte(x)  # (B, T, C)
        h = emb.reshape(B, -1)  # (B, T*C)
        h = torch.tanh(self.ln(self.fc1(h)))  # (B, H)
        g = self.proj(self.drop(h))  # (B, C)
        return g @ self.wte.weight.T + self.head_bias  # g E^T + b: (B, V)


def build_model(
    cfg: charlm.Config, vocab_size: int, weights: dict | None = None
) -> CharMLP | TiedCharMLP:
    """The model (TiedCharMLP when cfg.tied) on the default device, initialised from cfg.seed
    (on the CPU, so every device starts from the same numbers), or from `weights` (state_dict
    names) when given."""
    torch.manual_seed(cfg.seed)
    model = (TiedCharMLP if cfg.tied else CharMLP)(
        vocab_size, cfg.block_size, cfg.n_embd, cfg.n_hidden, dropout=cfg.dropout
    )
    if weights is not None:
        set_weights(model, weights)
    return devices.place(model)


def make_optimizer(model: CharMLP, cfg: charlm.Config):
    """From-scratch AdamW on cfg.schedule (warmup-cosine by default); no decay on biases and norm
    scales. Returns (optimizer, scheduler)."""
    optimizer = optim.AdamW(optim.param_groups(model, cfg.weight_decay))
    return optimizer, schedules.lambda_lr(optimizer, schedules.from_config(cfg))


def as_tensors(x: np.ndarray, y: np.ndarray, device: torch.device | None = None):
    """A numpy batch as int64 tensors (what nn.Embedding and cross_entropy take) on `device`
    (default: the default device)."""
    return devices.to_device(x, y, dtype=torch.long, device=device)


def loss_fn(model, x, y):
    logits = model(x)  # (B, V)
    return F.cross_entropy(logits, y)


def train_step(model, optimizer, scheduler, x, y):
    """One eager update and the schedule's next lr (the parallel labs and the benchmark time
    and wrap this one step)."""
    loss = trainer.make_step(model, optimizer, loss_fn)(x, y)
    scheduler.step()
    return loss


@torch.no_grad()
def evaluate(model, batches) -> float:
    """Mean loss over `batches`, dropout off; one read from the device at the end."""
    model.eval()
    device = next(model.parameters()).device
    losses = torch.stack([loss_fn(model, *as_tensors(x, y, device)) for x, y in batches])
    model.train()
    return float(losses.mean())


@torch.no_grad()
def sample(model, prompt: np.ndarray, n: int, temperature: float, seed: int) -> np.ndarray:
    """`n` characters drawn one at a time after `prompt`, each from softmax(logits /
    temperature)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = list(prompt)
    for _ in range(n):
        logits = model(torch.tensor(ids[-len(prompt) :], device=device)[None, :])[0]  # (V,)
        probs = torch.softmax(logits / temperature, dim=-1).cpu()
        ids.append(int(torch.multinomial(probs, 1, generator=generator)))
    model.train()
    return np.array(ids[len(prompt) :])


def train(cfg: charlm.Config, data: charlm.Data, *, weights=None, ctx=loop.BARE, optimizer_fn=None):
    """Train for cfg.steps (or until ctx.stop_at); returns (model, History).

    optimizer_fn: (model, cfg) -> what make_optimizer returns (the adamw and lr_schedules labs
      swap the optimizer or the schedule).
    weights: start from these (state_dict names, numpy) instead of cfg.seed's initialisation.
    ctx: checkpoints, resume, logging, stop requests and torch.compile, as the caller decides.
    The model and batches go to the default device (the GPU when there is one).
    """
    model = build_model(cfg, data.vocab_size, weights)
    optimizer, scheduler = (optimizer_fn or make_optimizer)(model, cfg)
    val = charlm.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        trainer.make_step(model, optimizer, loss_fn),
        lambda step: as_tensors(*charlm.train_batch(data, cfg, step)),  # (B, T), (B,)
        loop.Cadence.of(cfg),
        ctx,
        scheduler=scheduler,
        evaluate=lambda: {"val_loss": evaluate(model, val)},
    )
    return model, history


def restore(cfg: charlm.Config, checkpoint_dir) -> tuple[int, dict]:
    """(step, weights by state_dict name) of the newest intact char-MLP checkpoint in
    `checkpoint_dir` (a training_loop run's, or the environment lab's char_mlp/)."""
    data = charlm.load_data(cfg)
    model = build_model(cfg, data.vocab_size)
    optimizer, scheduler = make_optimizer(model, cfg)
    if checkpoint.latest_step(checkpoint_dir) is None:
        raise FileNotFoundError(f"no intact checkpoint in {checkpoint_dir}")
    step = checkpoint.restore_train_state(checkpoint_dir, model, optimizer, scheduler)
    return step, get_weights(model)


def validation_loss(cfg: charlm.Config, weights: dict) -> float:
    """Validation loss (nats per character) of char-MLP `weights` on the run's validation
    batches."""
    data = charlm.load_data(cfg)
    model = build_model(cfg, data.vocab_size, weights)
    return evaluate(model, charlm.val_batches(data, cfg))
