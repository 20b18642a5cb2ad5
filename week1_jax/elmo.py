"""ELMo lab in JAX/Flax: a biLM on week1_jax/lib/recurrent.py's scan LSTM, the scalar mix, the
probes (word senses layer by layer, sentiment on frozen features) beside MiniLM and word2vec.

Read beside week1_torch/elmo.py: the same functions in the same order.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from labs import elmo as spec
from week1 import convert, loop
from week1_jax.lib import bert, devices, optim, schedules
from week1_jax.lib import train as trainer
from week1_jax.lib.models import set_weights
from week1_jax.lib.recurrent import LAYER_MAP, LSTM, LSTMLM

FRAMEWORK_ONLY = ("weight_map",)


def reverse_within(x, lengths=None):
    """Each row of x (B, T, ...) reversed within its length, padding left in place
    (position t <-> lengths - 1 - t); the whole row when lengths is None. Its own inverse."""
    if lengths is None:
        return x[:, ::-1]
    T = x.shape[1]
    t = jnp.arange(T)[None, :]  # (1, T)
    L = lengths[:, None]  # (B, 1)
    index = jnp.where(t < L, L - 1 - t, t)  # (B, T)
    return jnp.take_along_axis(x, index[..., None], axis=1)


class BiLM(nnx.Module):
    r"""ELMo's biLM: a forward and a backward stack of LSTM layers over one word embedding, one
    softmax shared by both directions (Peters et al. 2018, sec. 3.1); the maths is in
    week1_torch/elmo.py's BiLM.

    Called as (ids (B, T), lengths (B,) or None) -> L + 1 layers (B, T, 2H) in time order:
    layer 0 is [x_t; x_t], layer j is [h->_{t,j}; h<-_{t,j}].
    """

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int = 2, *, rngs):
        self.hidden_size = hidden_size
        self.wte = nnx.Embed(vocab_size, hidden_size, rngs=rngs)
        self.fwd = nnx.List(
            [LSTM(hidden_size, hidden_size, 1, rngs=rngs) for _ in range(num_layers)]
        )
        self.bwd = nnx.List(
            [LSTM(hidden_size, hidden_size, 1, rngs=rngs) for _ in range(num_layers)]
        )
        self.head = nnx.Linear(hidden_size, vocab_size, rngs=rngs)

    def __call__(self, ids, lengths=None):
        x = self.wte(ids)  # (B, T, H)
        f, b = x, reverse_within(x, lengths)  # b: each row read right to left
        layers = [jnp.concatenate([x, x], axis=-1)]  # (B, T, 2H)
        for k, (lf, lb) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            hf, hb = lf(f)[0], lb(b)[0]  # (B, T, H) each
            f, b = (hf + f, hb + b) if k else (hf, hb)
            layers.append(jnp.concatenate([f, reverse_within(b, lengths)], axis=-1))
        return layers


class ScalarMix(nnx.Module):
    r"""ELMo's task-specific mix (allennlp.modules.ScalarMix without layer norm)::

        mix(h) = gamma * sum_j softmax(s)_j h_j,    s = 0 (an equal mix), gamma = 1 at the start

    Called as (h (..., J, D)) -> (..., D).
    """

    def __init__(self, num_layers: int):
        self.s = nnx.Param(jnp.zeros((num_layers,)))
        self.gamma = nnx.Param(jnp.ones((1,)))

    def __call__(self, h):
        w = jax.nn.softmax(self.s[...])  # (J,)
        return self.gamma[...] * (w[:, None] * h).sum(axis=-2)  # (..., D)


class Probe(nnx.Module):
    """A linear classifier on a scalar mix of frozen feature layers: (B, J, D) -> (B, C)."""

    def __init__(self, num_layers: int, dim: int, num_classes: int, *, rngs):
        self.mix = ScalarMix(num_layers)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, features):
        return self.head(self.mix(features))


def weight_map(model: nnx.Module) -> tuple:
    """(torch name, Flax path, how) of every parameter: recurrent.LAYER_MAP's rows for each
    one-layer LSTM of both stacks, the embedding and the head as lib/recurrent's LSTMLM."""
    if isinstance(model, Probe):
        return (
            ("mix.s", "mix.s", convert.SAME),
            ("mix.gamma", "mix.gamma", convert.SAME),
            ("head.weight", "head.kernel", convert.TRANSPOSE),
            ("head.bias", "head.bias", convert.SAME),
        )
    rows = [
        (f"{stack}.{k}.{t.format(k=0, d='')}", f"{stack}.{k}.{f.format(k=0, d='')}", how)
        for stack in ("fwd", "bwd")
        for k in range(len(model.fwd))
        for t, f, how in LAYER_MAP
    ]
    return tuple(rows) + LSTMLM.TORCH_ROWS


def load_torch_weights(model: nnx.Module, weights: dict) -> None:
    set_weights(model, convert.torch_to_flax(weights, weight_map(model)))


def build_model(cfg: spec.Config, vocab_size: int, weights=None):
    """The biLM, initialised from cfg.seed (Flax's defaults) or from `weights` (torch names)."""
    model = BiLM(vocab_size, cfg.hidden_size, cfg.num_layers, rngs=nnx.Rngs(cfg.seed))
    if weights is not None:
        load_torch_weights(model, weights)
    return model


def make_optimizer(model, cfg) -> nnx.Optimizer:
    """Clip the global gradient norm (cfg.clip_norm, 0: off), then from-scratch AdamW on cfg's
    schedule; no decay on biases."""
    adamw = optim.adamw(
        schedules.from_config(cfg), weight_decay=cfg.weight_decay, mask=optim.decay_mask
    )
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw) if cfg.clip_norm else adamw
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def as_arrays(*arrays: np.ndarray):
    """Integer numpy arrays as int32 jax arrays on the default device."""
    return devices.to_device(*arrays, dtype=jnp.int32)


def _cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def bilm_loss(model: BiLM, x, y_fwd, y_bwd):
    """Mean of the two directions' next-word cross-entropies over every position: x and the
    targets (B, T) ids (y_fwd the next word, y_bwd the previous one)."""
    top = model(x)[-1]  # (B, T, 2H)
    H = model.hidden_size
    forward = _cross_entropy(model.head(top[..., :H]), y_fwd)
    backward = _cross_entropy(model.head(top[..., H:]), y_bwd)
    return (forward + backward) / 2


def probe_loss(model: Probe, features, labels):
    """Mean cross-entropy of the probe's logits: features (B, J, D), labels (B,)."""
    return _cross_entropy(model(features), labels)


def make_train_step(loss):
    """step(model, optimizer, key, *batch) -> loss for lib/train.train (no dropout: the key goes
    unused); clipping is in the optimizer's chain."""

    def train_step(model, optimizer, key, *batch):
        value, grads = nnx.value_and_grad(loss)(model, *batch)
        optimizer.update(model, grads)
        return value

    return train_step


_eval_loss = nnx.jit(bilm_loss)


def evaluate(model: BiLM, batches) -> dict:
    """{"val_loss": the mean biLM loss over fixed held-out batches}."""
    losses = jnp.stack([_eval_loss(model, *as_arrays(*b)) for b in batches])
    return {"val_loss": float(losses.mean())}


def train(cfg: spec.Config, data: spec.Data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train the biLM for cfg.steps (or until ctx.stop_at); returns (model, History) with the
    evaluations "val_loss". weights: start from these (torch names, numpy)."""
    model = build_model(cfg, data.vocab_size, weights)
    optimizer = make_optimizer(model, cfg)
    val = spec.val_batches(data, cfg)
    history = trainer.train(
        model,
        optimizer,
        make_train_step(bilm_loss),
        lambda step: as_arrays(*spec.train_batch(data, cfg, step)),
        loop.Cadence.of(cfg),
        ctx,
        seed=cfg.seed,
        evaluate=lambda: evaluate(model, val),
        label="jax biLM",
    )
    return model, history


@nnx.jit
def _layers(model: BiLM, ids, lengths):
    return jnp.stack(model(ids, lengths))  # (L + 1, B, T, 2H)


def elmo_layers(model: BiLM, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every layer of the frozen biLM: (L + 1, B, T, 2H) numpy."""
    return np.asarray(_layers(model, *as_arrays(ids, lengths)))


def sentence_features(model: BiLM, data: spec.Data, texts, cfg: spec.Config) -> np.ndarray:
    """(N, L + 1, 2H): each text's layers averaged over its words."""
    ids, lengths = spec.padded(data, texts, cfg.max_length)
    parts = [
        spec.mean_over_words(elmo_layers(model, ids[rows], lengths[rows]), lengths[rows])
        for rows in spec.batches_of(len(texts))
    ]
    return np.concatenate(parts)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run elmo --framework jax`: the biLM, then the probes (labs/elmo.py)."""
    return spec.run(cfg, run, sys.modules[__name__], bert)


def train_probe(name: str, features: dict, labels: dict, cfg: spec.Config, run) -> dict:
    """One sentiment probe (a scalar mix and a linear layer) on frozen features through the one
    loop: features/labels {"train", "test"}; returns {"accuracy", "weights", "gamma"}."""
    pc = spec.probe_config(cfg)
    train_x, test_x = spec.standardise(features["train"], features["test"])
    J, D = train_x.shape[1:]
    model = Probe(J, D, 2, rngs=nnx.Rngs(cfg.seed))
    optimizer = make_optimizer(model, pc)
    train_xa, test_xa = devices.to_device(train_x, test_x, dtype=jnp.float32)
    train_ya, test_ya = as_arrays(labels["train"], labels["test"])

    def batch(step):
        rows = jnp.asarray(spec.probe_batch(len(train_x), pc, step))
        return train_xa[rows], train_ya[rows]

    def accuracy():
        return {"test_accuracy": float((_predict(model, test_xa) == test_ya).mean())}

    ctx = loop.Context.of_run(run).part(f"probe {name}")
    history = trainer.train(
        model,
        optimizer,
        make_train_step(probe_loss),
        batch,
        loop.Cadence.of(pc),
        dataclasses.replace(ctx, show_progress=False),
        seed=cfg.seed,
        evaluate=accuracy,
        label=f"jax probe {name}",
    )
    weights = np.asarray(jax.nn.softmax(model.mix.s[...])) if J > 1 else None
    return {
        "accuracy": history.evals["test_accuracy"][-1],
        "weights": weights,
        "gamma": float(model.mix.gamma[0]),
    }


@nnx.jit
def _predict(model: Probe, features):
    return model(features).argmax(-1)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare elmo`: the biLM from `weights` (torch's names, numpy); returns its Curves."""
    data = spec.load_data(cfg)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return spec.compare_curves(history)
