"""CNN text classifier lab in JAX/Flax: Kim (2014), trained with the loop written out.

Read beside week1_torch/cnn_classifier.py: the same functions in the same order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import cnn_classifier as spec
from week1 import convert, loop
from week1.comparison import Curves
from week1.timing import time_calls
from week1_jax.lib import devices, optim, schedules, steps
from week1_jax.lib import train as trainer
from week1_jax.lib.models import KimCNN, set_weights


def build_model(cfg: spec.Config, data: spec.Data, weights: dict | None = None) -> KimCNN:
    """The model from cfg.seed, its embeddings from data.embeddings when the run uses vectors,
    or every parameter from `weights` (Flax names) when given."""
    model = KimCNN(
        data.vocab_size,
        cfg.n_embd,
        cfg.n_maps,
        data.num_classes,
        widths=spec.WIDTHS,
        init_range=spec.UNKNOWN_RANGE,
        dropout=cfg.dropout,
        rngs=nnx.Rngs(cfg.seed),
    )
    if data.embeddings is not None:
        model.wte.embedding[...] = jnp.asarray(data.embeddings)
    if weights is not None:
        set_weights(model, weights)
    return model


def trainable(cfg: spec.Config):
    """The parameters the optimizer updates: all of them, but the embeddings in CNN-static."""
    if cfg.embeddings == "static":
        return nnx.All(nnx.Param, nnx.Not(nnx.PathContains("wte")))
    return nnx.Param


def make_optimizer(model: KimCNN, cfg: spec.Config) -> nnx.Optimizer:
    """From-scratch AdamW on cfg.schedule; no decay on biases."""
    tx = optim.adamw(
        schedules.from_config(cfg), weight_decay=cfg.weight_decay, mask=optim.decay_mask
    )
    return nnx.Optimizer(model, tx, wrt=trainable(cfg))


def as_arrays(batch):
    """A numpy Batch (ids, lengths, labels) as int32 jax arrays on the default device."""
    return devices.to_device(*batch, dtype=jnp.int32)


def loss_fn(model: KimCNN, ids, lengths, labels, rngs: nnx.Rngs | None = None):
    logits = model(ids, lengths, rngs=rngs)  # (B, C)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_train_step(cfg: spec.Config):
    """step(model, optimizer, key, ids, lengths, labels) -> loss for lib/train.train, dropout
    drawn from `key`; gradients only for what the optimizer trains (not frozen embeddings)."""
    grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, trainable(cfg)))

    def train_step(model, optimizer, key, ids, lengths, labels):
        loss, grads = grad_fn(model, ids, lengths, labels, nnx.Rngs(dropout=key))
        optimizer.update(model, grads)
        return loss

    return train_step


@nnx.jit
def _eval_logits(model: KimCNN, ids, lengths):
    return model(ids, lengths)


def evaluate(model: KimCNN, batches) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, class probabilities (N, C)) over `batches`, dropout off."""
    model.eval()
    logits = np.concatenate(
        [np.asarray(_eval_logits(model, *as_arrays(b)[:2])) for b in batches]
    )  # (N, C)
    model.train()
    labels = np.concatenate([b.labels for b in batches])  # (N,)
    log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    return loss, spec.accuracy(labels, logits.argmax(axis=1)), np.exp(log_probs)


def train(cfg: spec.Config, data: spec.Data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train for cfg.steps (or until ctx.stop_at); returns (model, History), its evaluations
    "val_loss" and "val_acc" every cfg.eval_every steps and after the last.

    ctx: checkpoints (every cfg.checkpoint_every steps, the last, and where a stop is asked),
    resume, logging, stop requests, as the caller decides (week1/loop.py). A non-finite
    loss raises Diverged (the last good checkpoint stays).
    """
    model = build_model(cfg, data, weights)
    optimizer = make_optimizer(model, cfg)
    val = spec.eval_batches(data, cfg, "validation")
    history = trainer.train(
        model,
        optimizer,
        make_train_step(cfg),
        lambda step: as_arrays(spec.train_batch(data, cfg, step)),  # ids, lengths, labels
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,  # dropout of step i: fold_in(key(seed), i)
        evaluate=lambda: spec.val_metrics(*evaluate(model, val)[:2]),
        label=f"jax {cfg.variant}",
    )
    return model, history


def run(cfg: spec.Config, run) -> dict:
    """`week1 run cnn_classifier --framework jax`: train, then the test-split table, confusion
    matrix, curves and misclassified examples."""
    data = spec.load_data(cfg)
    model, history = train(cfg, data, ctx=loop.Context.of_run(run))
    if run.should_stop():
        return history.summary()
    _, _, probs = evaluate(model, spec.eval_batches(data, cfg, "test"))
    return spec.report_run(cfg, data, history, probs, run, "jax")


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare cnn_classifier`: train from `weights` (torch's names, numpy, converted through
    WEIGHT_MAP); returns its Curves of the validation accuracy. `case` is cfg.variant, the lab's
    only one."""
    data = spec.load_data(cfg)
    flax_weights = convert.torch_to_flax(weights, spec.WEIGHT_MAP)
    _, history = train(cfg, data, weights=flax_weights, ctx=ctx)
    return Curves.of(history, history.evals["val_acc"])


def bench(cfg: spec.Config) -> dict:
    """`week1 bench cnn_classifier`: one jitted train step (forward, backward, AdamW) on
    training batch 1."""
    data = spec.load_data(cfg)
    model = build_model(cfg, data)
    graphdef, state = nnx.split((model, make_optimizer(model, cfg)))
    train_step = steps.jit_on_state(graphdef, make_train_step(cfg))
    batch = as_arrays(spec.train_batch(data, cfg, 1))
    key = jax.random.key(cfg.seed)
    return {"jax jit": time_calls(lambda: train_step(state, key, *batch), devices.sync)}
