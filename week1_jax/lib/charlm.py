"""The char-MLP language model in JAX/Flax: build, optimizer, loss, evaluation, sampling.

The model side of week1/charlm.py, for every lab that trains the char LM (training_loop,
regularization, adamw, lr_schedules, grad_accumulation, mixed_precision, monitoring,
profiling, the parallel labs, the benchmark). Mirrors week1_torch/lib/charlm.py.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from week1 import charlm, loop
from week1_jax.lib import checkpoint, devices, optim, schedules, steps
from week1_jax.lib import train as trainer
from week1_jax.lib.models import CharMLP, get_weights, set_weights


class TiedCharMLP(nnx.Module):
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
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int,
        n_hidden: int,
        *,
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        init = nnx.initializers.normal(stddev=1.0 / math.sqrt(n_embd))
        self.wte = nnx.Embed(vocab_size, n_embd, embedding_init=init, rngs=rngs)
        self.fc1 = nnx.Linear(block_size * n_embd, n_hidden, rngs=rngs)
        self.ln = nnx.LayerNorm(n_hidden, epsilon=1e-5, rngs=rngs)
        self.drop = nnx.Dropout(dropout)
        self.proj = nnx.Linear(n_hidden, n_embd, rngs=rngs)
        self.head_bias = nnx.Param(jnp.zeros(vocab_size))

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):  # x: (B, T) int
        B, T = x.shape
        emb = self.wte(x)  # (B, T, C)
        h = emb.reshape(B, -1)  # (B, T*C)
        h = jnp.tanh(self.ln(self.fc1(h)))  # (B, H)
        g = self.proj(self.drop(h, rngs=rngs))  # (B, C)
        return self.wte.attend(g) + self.head_bias[...]  # g E^T + b: (B, V)


def build_model(
    cfg: charlm.Config, vocab_size: int, weights: dict | None = None
) -> CharMLP | TiedCharMLP:
    """The model (TiedCharMLP when cfg.tied), initialised from cfg.seed, or from `weights` (Flax
    names) when given."""
    model = (TiedCharMLP if cfg.tied else CharMLP)(
        vocab_size,
        cfg.block_size,
        cfg.n_embd,
        cfg.n_hidden,
        dropout=cfg.dropout,
        rngs=nnx.Rngs(cfg.seed),
    )
    if weights is not None:
        set_weights(model, weights)
    return model


def make_optimizer(model: CharMLP, cfg: charlm.Config) -> nnx.Optimizer:
    """From-scratch AdamW on cfg.schedule (warmup-cosine by default); no decay on biases and norm
    scales."""
    tx = optim.adamw(
        schedules.from_config(cfg), weight_decay=cfg.weight_decay, mask=optim.decay_mask
    )
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def as_arrays(x: np.ndarray, y: np.ndarray):
    """A numpy batch as int32 jax arrays on the default device."""
    return devices.to_device(x, y, dtype=jnp.int32)


def loss_fn(model: CharMLP, x, y, rngs: nnx.Rngs | None = None):
    logits = model(x, rngs=rngs)  # (B, V)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_train_step(graphdef, donate: bool = True):
    """The jitted step on the split (model, optimizer) state: (state, key, x, y) -> (state,
    loss). With `donate` XLA writes the new state into the old one's buffers: no second copy
    of the parameters and AdamW moments per step, and the old state is gone after the call."""
    return steps.jit_on_state(graphdef, trainer.make_step(loss_fn), donate=donate)


@nnx.jit
def _eval_loss(model: CharMLP, x, y):
    return loss_fn(model, x, y)


def evaluate(model: CharMLP, batches) -> float:
    """Mean loss over `batches`, dropout off; one read from the device at the end."""
    model.eval()
    losses = jnp.stack([_eval_loss(model, *as_arrays(x, y)) for x, y in batches])
    model.train()
    return float(losses.mean())


@nnx.jit
def _next_logits(model: CharMLP, context):  # context: (1, T)
    return model(context)[0]  # (V,)


def sample(model: CharMLP, prompt: np.ndarray, n: int, temperature: float, seed: int) -> np.ndarray:
    """`n` characters drawn one at a time after `prompt`, each from softmax(logits /
    temperature)."""
    model.eval()
    key = jax.random.key(seed)
    ids = list(prompt)
    for _ in range(n):
        key, sub = jax.random.split(key)
        logits = _next_logits(model, jnp.asarray(ids[-len(prompt) :])[None, :])
        ids.append(int(jax.random.categorical(sub, logits / temperature)))
    model.train()
    return np.array(ids[len(prompt) :])


def train(cfg: charlm.Config, data: charlm.Data, *, weights=None, ctx=loop.BARE, optimizer_fn=None):
    """Train for cfg.steps (or until ctx.stop_at); returns (model, History).

    optimizer_fn: (model, cfg) -> what make_optimizer returns (the adamw and lr_schedules labs
      swap the optimizer or the schedule).
    weights: start from these (Flax names, numpy) instead of cfg.seed's initialisation.
    ctx: checkpoints, resume, logging and stop requests, as the caller decides.
    """
    model = build_model(cfg, data.vocab_size, weights)
    optimizer = (optimizer_fn or make_optimizer)(model, cfg)
    val = charlm.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        trainer.make_step(loss_fn),
        lambda step: as_arrays(*charlm.train_batch(data, cfg, step)),  # (B, T), (B,)
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: {"val_loss": evaluate(model, val)},
    )
    return model, history


def restore(cfg: charlm.Config, checkpoint_dir) -> tuple[int, dict]:
    """(step, weights by Flax path) of the newest intact char-MLP checkpoint in
    `checkpoint_dir` (a training_loop run's, or the environment lab's char_mlp/)."""
    data = charlm.load_data(cfg)
    model = build_model(cfg, data.vocab_size)
    mngr = checkpoint.manager(pathlib.Path(checkpoint_dir))
    if checkpoint.latest_step(mngr) is None:
        raise FileNotFoundError(f"no intact checkpoint in {checkpoint_dir}")
    step = checkpoint.restore_train_state(mngr, model, make_optimizer(model, cfg))
    return step, get_weights(model)


def validation_loss(cfg: charlm.Config, weights: dict) -> float:
    """Validation loss (nats per character) of char-MLP `weights` on the run's validation
    batches."""
    data = charlm.load_data(cfg)
    model = build_model(cfg, data.vocab_size, weights)
    return evaluate(model, charlm.val_batches(data, cfg))
