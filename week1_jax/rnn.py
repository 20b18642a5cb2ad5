"""RNN lab in JAX/Flax: from-scratch RNN/LSTM/GRU (week1_jax/lib/recurrent.py), a character
LSTM LM on Shakespeare and a polarity classifier, against Flax's built-in cells.

Read beside week1_torch/rnn.py: the same functions in the same order.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import rnn as spec
from week1 import loop
from week1.timing import time_calls
from week1_jax.lib import charlm, devices, optim, schedules, steps
from week1_jax.lib import train as trainer
from week1_jax.lib.recurrent import (  # noqa: F401  (the lab's layers: week1_jax.rnn.LSTM, ...)
    GRU,
    LSTM,
    LSTMLM,
    RNN,
    RNNClassifier,
    lm_loss,
    load_torch_state_dict,
)


def build_model(cfg: spec.Config, vocab_size: int, num_classes: int = 0, weights=None):
    """The task's model, initialised from cfg.seed, or from `weights` (torch.nn names, numpy)."""
    rngs = nnx.Rngs(cfg.seed)
    if cfg.task == "lm":
        model = LSTMLM(vocab_size, cfg.n_embd, cfg.hidden_size, cfg.num_layers, rngs=rngs)
    else:
        model = RNNClassifier(
            vocab_size,
            cfg.n_embd,
            cfg.hidden_size,
            num_classes,
            cell=cfg.cell,
            num_layers=cfg.num_layers,
            bidirectional=cfg.bidirectional,
            pooling=cfg.pooling,
            rngs=rngs,
        )
    if weights is not None:
        load_torch_state_dict(model, weights)
    return model


def make_optimizer(model, cfg: spec.Config) -> nnx.Optimizer:
    """Clip the global gradient norm (cfg.clip_norm, 0: off), then from-scratch AdamW on
    warmup-cosine; no decay on biases."""
    adamw = optim.adamw(
        schedules.from_config(cfg), weight_decay=cfg.weight_decay, mask=optim.decay_mask
    )
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw) if cfg.clip_norm else adamw
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def as_arrays(*arrays: np.ndarray):
    """A numpy batch as int32 jax arrays on the default device."""
    return devices.to_device(*arrays, dtype=jnp.int32)


def classifier_loss(model: RNNClassifier, ids, lengths, labels):
    """Mean cross-entropy of the class labels: ids (B, T), lengths (B,), labels (B,)."""
    logits = model(ids, lengths)  # (B, C)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def loss_fn(cfg: spec.Config):
    """The task's loss: lm_loss(model, x, y) or classifier_loss(model, ids, lengths, labels)."""
    return lm_loss if cfg.task == "lm" else classifier_loss


def train_batch(cfg: spec.Config, data, step: int) -> tuple:
    """Training batch `step` as numpy arrays, the loss function's arguments after the model."""
    if cfg.task == "lm":
        return spec.lm_batch(data, cfg, step)  # x (B, T), y (B, T)
    batch = spec.sentiment_batch(data, cfg, step)
    return batch.ids, batch.lengths, batch.labels


def make_train_step(cfg: spec.Config):
    """The task's step(model, optimizer, key, *batch) -> loss for lib/train.train (no dropout:
    the key goes unused); clipping is in the optimizer's chain."""
    loss = loss_fn(cfg)

    def train_step(model, optimizer, key, *batch):
        value, grads = nnx.value_and_grad(loss)(model, *batch)
        optimizer.update(model, grads)
        return value

    return train_step


@nnx.jit
def _lm_eval_loss(model, x, y):
    return lm_loss(model, x, y)


@nnx.jit
def _classify(model, ids, lengths, labels):
    logits = model(ids, lengths)  # (B, C)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()
    return loss, logits.argmax(-1)


def evaluate(model, cfg: spec.Config, batches) -> dict:
    """{"loss": mean loss, "accuracy": (sentiment only)} over fixed evaluation batches."""
    if cfg.task == "lm":
        losses = jnp.stack([_lm_eval_loss(model, *as_arrays(*b)) for b in batches])
        return {"loss": float(losses.mean())}
    total, predictions = 0.0, []
    for b in batches:
        loss, predicted = _classify(model, *as_arrays(b.ids, b.lengths, b.labels))
        total += float(loss)
        predictions.append(np.asarray(predicted))
    rows = sum(len(b.labels) for b in batches)
    return {"loss": total / rows, "accuracy": spec.accuracy(predictions, batches)}


@nnx.jit
def _next_logits(model, ids, state):  # ids: (1, T)
    logits, state = model(ids, hx=state)  # (1, T, V)
    return logits[0, -1], state


def sample(model, prompt: np.ndarray, n: int, temperature: float, seed: int) -> np.ndarray:
    """`n` characters after `prompt`: the prompt sets the state once, then one character at a
    time, each drawn from softmax(logits / temperature) and fed back with the state."""
    key = jax.random.key(seed)
    logits, state = _next_logits(model, jnp.asarray(prompt)[None, :], None)
    ids = []
    for _ in range(n):
        key, sub = jax.random.split(key)
        ids.append(int(jax.random.categorical(sub, logits / temperature)))
        logits, state = _next_logits(model, jnp.array([[ids[-1]]], jnp.int32), state)
    return np.array(ids)


def train(cfg: spec.Config, data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train the task's model for cfg.steps (or until ctx.stop_at); returns (model, History),
    its evaluations "val_loss" (and "val_accuracy" for the sentiment task).

    data: spec.load_lm_data(cfg) (lm) or spec.load_sentiment(cfg) (sentiment).
    weights: start from these (torch.nn names, numpy) instead of cfg.seed's init.
    ctx: checkpoints, resume, logging and stop requests, as the caller decides (week1/loop.py).
    """
    model = build_model(cfg, *spec.model_sizes(cfg, data), weights)
    optimizer = make_optimizer(model, cfg)
    val = spec.eval_batches(cfg, data)
    history = trainer.train(
        model,
        optimizer,
        make_train_step(cfg),
        lambda step: as_arrays(*train_batch(cfg, data, step)),
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: spec.val_metrics(evaluate(model, cfg, val)),
        label=f"jax {cfg.task}",
    )
    return model, history


def run(cfg: spec.Config, run) -> dict:
    """`week1 run rnn --framework jax [--task=sentiment]` (labs/rnn.py)."""
    return spec.run(cfg, run, sys.modules[__name__], charlm.train)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare rnn`: train the task `case` ("lm" or "sentiment") from `weights` (torch's
    names, numpy); returns its Curves, the sentiment curves' evaluations being the validation
    accuracy."""
    cfg = dataclasses.replace(cfg, task=case)
    data = spec.load_data(cfg)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return spec.compare_curves(history, case)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench rnn`: one LSTM LM training step (forward, backward, clip, AdamW) at each of
    cfg.bench_sizes, our scan LSTM and Flax's nnx.OptimizedLSTMCell under nnx.RNN."""
    data = spec.load_lm_data(cfg)
    timings = {}
    for B, T, H in cfg.bench_size_list:
        size = dataclasses.replace(cfg, task="lm", batch_size=B, seq_len=T, hidden_size=H)
        batch = as_arrays(*spec.lm_batch(data, size, 1))
        for name, builtin in (("ours", False), ("nnx", True)):
            model = LSTMLM(
                data.vocab_size, cfg.n_embd, H, cfg.num_layers, builtin=builtin, rngs=nnx.Rngs(0)
            )
            graphdef, state = nnx.split((model, make_optimizer(model, size)))
            train_step = steps.jit_on_state(graphdef, make_train_step(size))
            key = jax.random.key(0)
            timings[f"jax {name} H={H}"] = time_calls(
                lambda step=train_step, state=state: step(state, key, *batch),
                devices.sync,
                warmup=cfg.warmup,
                iters=cfg.iters,
            )
    return timings
