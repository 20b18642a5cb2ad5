"""Training loop lab in JAX/Flax: the char-MLP LM, trained with the loop written out.

Read beside week1_torch/training_loop.py: the same functions in the same order.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import training_loop as spec
from week1 import convert
from week1.comparison import Curves
from week1.report import progress
from week1.runs import Diverged
from week1.timing import time_calls
from week1_jax.lib import checkpoint, devices, optim, schedules, steps
from week1_jax.lib.models import CharMLP, get_weights, set_weights

LOG_EVERY = 50  # steps between reads of the losses from the device (train's docstring says why)


def build_model(cfg: spec.Config, vocab_size: int, weights: dict | None = None) -> CharMLP:
    """The model, initialised from cfg.seed, or from `weights` (Flax names) when given."""
    model = CharMLP(
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


def make_optimizer(model: CharMLP, cfg: spec.Config) -> nnx.Optimizer:
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
    """A jitted step on the split (model, optimizer) state: state, x, y, key -> state, loss
    (lib/steps.py says why jax.jit of a pure function rather than nnx.jit). With `donate` XLA
    writes the new state into the old one's buffers: no second copy of the parameters and AdamW
    moments per step, and the old state is gone after the call."""

    def train_step(model, optimizer, x, y, dropout_key):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y, nnx.Rngs(dropout=dropout_key))
        optimizer.update(model, grads)
        return loss

    return steps.jit_on_state(graphdef, train_step, donate=donate)


@nnx.jit
def _eval_loss(model: CharMLP, x, y):
    return loss_fn(model, x, y)


def evaluate(model: CharMLP, batches) -> float:
    model.eval()  # dropout off
    loss = float(np.mean([float(_eval_loss(model, *as_arrays(x, y))) for x, y in batches]))
    model.train()
    return loss


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


def train(
    cfg: spec.Config,
    data: spec.Data,
    *,
    weights: dict | None = None,
    optimizer_fn=None,
    checkpoint_dir=None,
    resume: bool = False,
    stop_at: int | None = None,
    log=None,
    should_stop=None,
    show_progress: bool = False,
):
    """Train for cfg.steps (or until `stop_at`); returns (model, History).

    optimizer_fn: (model, cfg) -> optimizer, as make_optimizer (the default) returns it.
    checkpoint_dir: save every cfg.checkpoint_every steps, at `stop_at`, and where a stop is asked.
    resume: continue from the newest intact checkpoint in checkpoint_dir.
    log: called as log(step, **metrics) for train and validation losses.
    should_stop: () -> bool, asked after every step (a signal arrived): if True, checkpoint this
      step and return.

    The losses stay on the device and are read every LOG_EVERY steps, and at every evaluation,
    checkpoint, stop and the end (reading one waits for the device: `float(loss)` per step
    would drain a GPU's queue every step). So a non-finite loss is found at the next reading:
    Diverged names the first step whose loss is not finite, the steps after it (up to the
    reading) have run, and no checkpoint is written past it (the last good one stays).
    The state is donated to each step (make_train_step): the model and optimizer objects see
    the arrays again after `nnx.update`, done before anything reads them.
    """
    model = build_model(cfg, data.vocab_size, weights)
    optimizer = (optimizer_fn or make_optimizer)(model, cfg)
    mngr = checkpoint.manager(checkpoint_dir) if checkpoint_dir is not None else None
    start = checkpoint.restore_train_state(mngr, model, optimizer) if resume else 0
    dropout_root = jax.random.key(cfg.seed)
    graphdef, state = nnx.split((model, optimizer))
    train_step = make_train_step(graphdef)
    val = spec.val_batches(data, cfg)
    history = spec.History()
    end = cfg.steps if stop_at is None else stop_at
    pending, since = [], time.perf_counter()  # [(step, loss on the device)] not read yet
    with progress("jax", total=end - start, enabled=show_progress) as advance:
        for step in range(start + 1, end + 1):
            x, y = spec.train_batch(data, cfg, step)  # (B, T), (B,)
            state, loss = train_step(
                state, *as_arrays(x, y), jax.random.fold_in(dropout_root, step)
            )
            pending.append((step, loss))
            stopping = should_stop is not None and should_stop()
            save = mngr is not None and (stopping or spec.is_checkpoint_step(cfg, step, stop_at))
            evaluating = spec.is_eval_step(cfg, step)
            if not (save or evaluating or stopping or _reading_step(step, start, end, pending)):
                advance()
                continue
            bad = _log_losses(pending, since, history, log)
            pending = []
            nnx.update((model, optimizer), state)  # the objects see the new arrays
            if bad is not None:
                raise Diverged(bad, spec.non_finite_what(get_weights(model)))
            if evaluating:
                history.add_val(step, evaluate(model, val), log)
            if save:
                checkpoint.save_train_state(mngr, step, model, optimizer)
            advance(history.train_loss[-1])
            if stopping:
                break
            since = time.perf_counter()  # evaluation and checkpoints are not training time
    nnx.update((model, optimizer), state)
    return model, history


def _reading_step(step: int, start: int, end: int, pending: list) -> bool:
    """Read the losses after the first step (its time is the compilation's), every LOG_EVERY
    steps and after the last."""
    return step == start + 1 or step == end or len(pending) >= LOG_EVERY


def _log_losses(pending: list, since: float, history: spec.History, log) -> int | None:
    """Read the losses of `pending` [(step, loss on the device)] in one transfer and add them to
    `history` (and `log`), sharing the wall time since `since` among them; returns the first
    step whose loss is not finite (it and the steps after it are not added), else None."""
    values = [float(v) for v in jax.device_get([loss for _, loss in pending])]
    seconds = (time.perf_counter() - since) / len(pending)
    for (step, _), value in zip(pending, values, strict=True):
        if not math.isfinite(value):
            return step
        history.add_train(step, value, seconds, log)
    return None


def run(cfg: spec.Config, run) -> dict:
    """`week1 run training_loop --framework jax`: train, evaluate, sample, checkpoint."""
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
    text = data.corpus.decode(
        sample(model, spec.prompt_ids(data, cfg), cfg.sample_chars, cfg.temperature, cfg.seed)
    )
    return {**history.summary(), "unigram_baseline": spec.unigram_baseline(data), "sample": text}


def compare_run(cfg: spec.Config, case: str, weights=None, *, show_progress=False):
    """`week1 compare training_loop`: train from `weights` (torch's names, numpy, converted
    through the lab's WEIGHT_MAP; None: Flax's init); returns (the start weights under torch's
    names, Curves). `case` is "lm", the lab's only one."""
    data = spec.load_data(cfg)
    if weights is None:
        weights = convert.flax_to_torch(get_weights(build_model(cfg, data.vocab_size)),
                                        spec.WEIGHT_MAP)  # fmt: skip
    flax_weights = convert.torch_to_flax(weights, spec.WEIGHT_MAP)
    _, history = train(cfg, data, weights=flax_weights, show_progress=show_progress)
    return weights, Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench training_loop`: one jitted train step (forward, backward, AdamW)."""
    data = spec.load_data(cfg)
    model = build_model(cfg, data.vocab_size)
    graphdef, state = nnx.split((model, make_optimizer(model, cfg)))
    train_step = make_train_step(graphdef)
    x, y = as_arrays(*spec.train_batch(data, cfg, 1))
    key = jax.random.key(cfg.seed)

    def call():  # the state is donated: each call takes the one the last returned
        nonlocal state
        state, loss = train_step(state, x, y, key)
        return state, loss

    return {"jax jit": time_calls(call, devices.sync)}
