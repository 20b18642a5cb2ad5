"""RNN lab in JAX/Flax: from-scratch RNN/LSTM/GRU (week1_jax/lib/recurrent.py), a character
LSTM LM on Shakespeare and a polarity classifier, against Flax's built-in cells.

Read beside week1_torch/rnn.py: the same functions in the same order.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import rnn as spec
from week1.comparison import Curves
from week1.report import progress
from week1.runs import Diverged
from week1.timing import time_calls
from week1_jax.lib import charlm as mlp_lab
from week1_jax.lib import checkpoint, devices, optim, schedules, steps
from week1_jax.lib.recurrent import (  # noqa: F401  (the lab's layers: week1_jax.rnn.LSTM, ...)
    GRU,
    LSTM,
    LSTMLM,
    RNN,
    RNNClassifier,
    lm_loss,
    load_torch_state_dict,
    torch_state_dict,
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


def make_train_step(graphdef, loss):
    """A jitted step on the split (model, optimizer) state: state, *batch -> state, loss."""

    def train_step(model, optimizer, *batch):
        value, grads = nnx.value_and_grad(loss)(model, *batch)
        optimizer.update(model, grads)
        return value

    return steps.jit_on_state(graphdef, train_step)


@nnx.jit
def _lm_eval_loss(model, x, y):
    return lm_loss(model, x, y)


@nnx.jit
def _classify(model, ids, lengths, labels):
    logits = model(ids, lengths)  # (B, C)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()
    return loss, logits.argmax(-1)


def evaluate(model, cfg: spec.Config, batches) -> tuple[float, float | None]:
    """(mean loss, accuracy or None for the LM) over fixed evaluation batches."""
    if cfg.task == "lm":
        return float(np.mean([float(_lm_eval_loss(model, *as_arrays(*b))) for b in batches])), None
    total, predictions = 0.0, []
    for b in batches:
        loss, predicted = _classify(model, *as_arrays(b.ids, b.lengths, b.labels))
        total += float(loss)
        predictions.append(np.asarray(predicted))
    rows = sum(len(b.labels) for b in batches)
    return total / rows, spec.accuracy(predictions, batches)


def eval_batches(cfg: spec.Config, data, split: str = "validation") -> list:
    if cfg.task == "lm":
        return spec.lm_val_batches(data, cfg)
    return spec.sentiment_eval_batches(data, cfg, split)


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


def train(
    cfg: spec.Config,
    data,
    *,
    weights: dict | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    stop_at: int | None = None,
    log=None,
    should_stop=None,
    show_progress: bool = False,
):
    """Train the task's model for cfg.steps (or until `stop_at`); returns (model, history).

    data: spec.load_lm_data(cfg) (lm) or spec.load_sentiment(cfg) (sentiment).
    weights: start from these (torch.nn names, numpy) instead of cfg.seed's init.
    checkpoint_dir / resume / stop_at / log / should_stop: as in the training_loop lab; a
    non-finite loss raises Diverged.
    """
    model = build_model(cfg, *spec.model_sizes(cfg, data), weights)
    optimizer = make_optimizer(model, cfg)
    mngr = checkpoint.manager(checkpoint_dir) if checkpoint_dir is not None else None
    start = checkpoint.restore_train_state(mngr, model, optimizer) if resume else 0
    graphdef, state = nnx.split((model, optimizer))
    train_step = make_train_step(graphdef, loss_fn(cfg))
    val = eval_batches(cfg, data)
    history = spec.ClassifierHistory()
    end = cfg.steps if stop_at is None else stop_at
    with progress(f"jax {cfg.task}", total=end - start, enabled=show_progress) as advance:
        for step in range(start + 1, end + 1):
            batch = as_arrays(*train_batch(cfg, data, step))
            t0 = time.perf_counter()
            state, loss = train_step(state, *batch)
            loss = float(loss)
            if not math.isfinite(loss):
                raise Diverged(step, "loss")
            history.add_train(step, loss, time.perf_counter() - t0, log)
            stopping = should_stop is not None and should_stop()
            save = mngr is not None and (stopping or spec.is_checkpoint_step(cfg, step, stop_at))
            if save or spec.is_eval_step(cfg, step):
                nnx.update((model, optimizer), state)  # the objects see the new arrays
            if spec.is_eval_step(cfg, step):
                val_loss, val_accuracy = evaluate(model, cfg, val)
                history.add_val(step, val_loss, log)
                if val_accuracy is not None:
                    history.add_accuracy(step, val_accuracy, log)
            if save:
                checkpoint.save_train_state(mngr, step, model, optimizer)
            advance(loss)
            if stopping:
                break
    nnx.update((model, optimizer), state)
    return model, history


def run(cfg: spec.Config, run) -> dict:
    """`week1 run rnn --framework jax [--task=sentiment]`."""
    if cfg.task == "lm":
        data = spec.load_lm_data(cfg)
        mlp = spec.mlp_baseline(
            run, cfg, lambda mlp_cfg: mlp_lab.train(mlp_cfg, data, **spec.mlp_kwargs(run))[1]
        )
        if mlp is None:  # stopped while the baseline trained
            return {}
    else:
        data = spec.load_data(cfg)
    model, history = train(
        cfg,
        data,
        checkpoint_dir=run.checkpoint_dir,
        resume=run.resume,
        log=run.log,
        should_stop=run.should_stop,
        show_progress=True,
    )
    if run.should_stop():
        return history.summary()
    if cfg.task == "lm":
        text = data.corpus.decode(
            sample(model, spec.prompt_ids(data), cfg.sample_chars, cfg.temperature, cfg.seed)
        )
        return spec.lm_summary(run, cfg, data, history, mlp, text)
    test = evaluate(model, cfg, eval_batches(cfg, data, "test"))
    return spec.sentiment_summary(run, cfg, data, history, test)


def compare_run(cfg: spec.Config, case: str, weights=None, *, show_progress=False):
    """`week1 compare rnn`: train the task `case` ("lm" or "sentiment") from `weights` (torch's
    names, numpy; None: Flax's init); returns (the start weights under torch's names, Curves),
    the sentiment curves' evaluations being the validation accuracy."""
    cfg = dataclasses.replace(cfg, task=case)
    data = spec.load_data(cfg)
    if weights is None:
        weights = torch_state_dict(build_model(cfg, *spec.model_sizes(cfg, data)))
    _, history = train(cfg, data, weights=weights, show_progress=show_progress)
    return weights, Curves.of(history, history.val_accuracy if case == "sentiment" else None)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench rnn`: one LSTM LM training step (forward, backward, clip, AdamW) at each of
    cfg.bench_sizes, our scan LSTM and Flax's nnx.OptimizedLSTMCell under nnx.RNN."""
    data = spec.load_lm_data(cfg)
    timings = {}
    for B, T, H in cfg.bench_size_list:
        size = dataclasses.replace(cfg, batch_size=B, seq_len=T, hidden_size=H)
        batch = as_arrays(*spec.lm_batch(data, size, 1))
        for name, builtin in (("ours", False), ("nnx", True)):
            model = LSTMLM(
                data.vocab_size, cfg.n_embd, H, cfg.num_layers, builtin=builtin, rngs=nnx.Rngs(0)
            )
            graphdef, state = nnx.split((model, make_optimizer(model, size)))
            train_step = make_train_step(graphdef, lm_loss)
            timings[f"jax {name} H={H}"] = time_calls(
                lambda step=train_step, state=state: step(state, *batch),
                devices.sync,
                warmup=cfg.warmup,
                iters=cfg.iters,
            )
    return timings
