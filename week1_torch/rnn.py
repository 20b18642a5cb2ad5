"""RNN lab in PyTorch: from-scratch RNN/LSTM/GRU (week1_torch/lib/recurrent.py), a character
LSTM LM on Shakespeare and a polarity classifier, against torch.nn's built-in layers.

Read beside week1_jax/rnn.py: the same functions in the same order.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import torch
import torch.nn.functional as F

from labs import rnn as spec
from week1 import loop
from week1.timing import time_calls
from week1_torch.lib import charlm, devices, optim, schedules
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights, set_weights
from week1_torch.lib.recurrent import (  # noqa: F401  (the lab's layers: week1_torch.rnn.LSTM, ...)
    GRU,
    LSTM,
    LSTMLM,
    RNN,
    RNNClassifier,
    compile_cells,
    lm_loss,
)


def build_model(cfg: spec.Config, vocab_size: int, num_classes: int = 0, weights=None):
    """The task's model on the default device, initialised from cfg.seed (on the CPU, so every
    device starts from the same numbers), or from `weights` (state_dict names, numpy)."""
    torch.manual_seed(cfg.seed)
    if cfg.task == "lm":
        model = LSTMLM(vocab_size, cfg.n_embd, cfg.hidden_size, cfg.num_layers)
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
        )
    if weights is not None:
        set_weights(model, weights)
    return devices.place(model)


def make_optimizer(model, cfg: spec.Config):
    """From-scratch AdamW on warmup-cosine, no decay on biases (clipping is in train_step)."""
    optimizer = optim.AdamW(optim.param_groups(model, cfg.weight_decay))
    return optimizer, schedules.lambda_lr(optimizer, schedules.from_config(cfg))


def as_tensors(*arrays: np.ndarray):
    """A numpy batch as int64 tensors (what nn.Embedding and cross_entropy take) on the default
    device."""
    return devices.to_device(*arrays, dtype=torch.long)


def classifier_loss(model: RNNClassifier, ids, lengths, labels):
    """Mean cross-entropy of the class labels: ids (B, T), lengths (B,), labels (B,)."""
    logits = model(ids, lengths)  # (B, C)
    return F.cross_entropy(logits, labels)


def loss_fn(cfg: spec.Config):
    """The task's loss: lm_loss(model, x, y) or classifier_loss(model, ids, lengths, labels)."""
    return lm_loss if cfg.task == "lm" else classifier_loss


def train_batch(cfg: spec.Config, data, step: int, fixed: bool = False) -> tuple:
    """Training batch `step` as numpy arrays, the loss function's arguments after the model;
    fixed: sentiment batches all cfg.max_length long (spec.sentiment_batch)."""
    if cfg.task == "lm":
        return spec.lm_batch(data, cfg, step)  # x (B, T), y (B, T)
    batch = spec.sentiment_batch(data, cfg, step, fixed)
    return batch.ids, batch.lengths, batch.labels


def train_step(model, optimizer, cfg: spec.Config):
    """The task's step(*batch) -> loss: backward, clip the global gradient norm (cfg.clip_norm,
    0: off), AdamW (lib/train.make_step; the schedule steps in lib/train.train)."""
    return trainer.make_step(model, optimizer, loss_fn(cfg), clip_norm=cfg.clip_norm)


@torch.no_grad()
def evaluate(model, cfg: spec.Config, batches) -> dict:
    """{"loss": mean loss, "accuracy": (sentiment only)} over fixed evaluation batches."""
    if cfg.task == "lm":
        losses = torch.stack([lm_loss(model, *as_tensors(*b)) for b in batches])
        return {"loss": float(losses.mean())}
    total, predictions = 0.0, []
    for b in batches:
        ids, lengths, labels = as_tensors(b.ids, b.lengths, b.labels)
        logits = model(ids, lengths)  # (B, C)
        total += float(F.cross_entropy(logits, labels, reduction="sum"))
        predictions.append(logits.argmax(-1).cpu().numpy())
    rows = sum(len(b.labels) for b in batches)
    return {"loss": total / rows, "accuracy": spec.accuracy(predictions, batches)}


@torch.no_grad()
def sample(model, prompt: np.ndarray, n: int, temperature: float, seed: int) -> np.ndarray:
    """`n` characters after `prompt`: the prompt sets the state once, then one character at a
    time, each drawn from softmax(logits / temperature) and fed back with the state."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    logits, state = model(torch.tensor(prompt, dtype=torch.long, device=device)[None, :])
    ids = []
    for _ in range(n):
        probs = torch.softmax(logits[0, -1] / temperature, dim=-1).cpu()  # (V,)
        ids.append(int(torch.multinomial(probs, 1, generator=generator)))
        logits, state = model(torch.tensor([[ids[-1]]], device=device), hx=state)
    return np.array(ids)


def train(cfg: spec.Config, data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train the task's model for cfg.steps (or until ctx.stop_at); returns (model, History),
    its evaluations "val_loss" (and "val_accuracy" for the sentiment task).

    data: spec.load_lm_data(cfg) (lm) or spec.load_sentiment(cfg) (sentiment).
    weights: start from these (state_dict names, numpy) instead of cfg.seed's init.
    ctx: checkpoints, resume, logging, stop requests and torch.compile (of the whole step),
    as the caller decides (week1/loop.py).
    """
    model = build_model(cfg, *spec.model_sizes(cfg, data), weights)
    optimizer, scheduler = make_optimizer(model, cfg)
    val = spec.eval_batches(cfg, data)
    history = trainer.train(
        model,
        optimizer,
        train_step(model, optimizer, cfg),
        lambda step: as_tensors(*train_batch(cfg, data, step, fixed=ctx.compile)),
        loop.Cadence.of(cfg),
        ctx,
        scheduler=scheduler,
        evaluate=lambda: spec.val_metrics(evaluate(model, cfg, val)),
        label=f"torch {cfg.task}",
    )
    return model, history


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run rnn --framework torch [--compile] [--task=sentiment]` (labs/rnn.py)."""
    return spec.run(cfg, run, sys.modules[__name__], charlm.train, compile)


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    cfg = dataclasses.replace(cfg, task=case)
    data = spec.load_data(cfg)
    return get_weights(build_model(cfg, *spec.model_sizes(cfg, data)))


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
    cfg.bench_sizes, our LSTM and torch.nn.LSTM, eager; and at the largest size both under
    torch.compile (ours: each cell compiled, the time loop in Python)."""
    data = spec.load_lm_data(cfg)
    timings = {}
    for B, T, H in cfg.bench_size_list:
        size = dataclasses.replace(cfg, task="lm", batch_size=B, seq_len=T, hidden_size=H)
        batch = as_tensors(*spec.lm_batch(data, size, 1))
        variants = [("torch ours", False, False), ("torch.nn", True, False)]
        if cfg.bench_size_list[-1] == (B, T, H):
            variants += [("compile ours", False, True), ("compile nn", True, True)]
        for name, builtin, compiled in variants:
            torch.manual_seed(0)
            model = LSTMLM(data.vocab_size, cfg.n_embd, H, cfg.num_layers, builtin=builtin)
            model = devices.place(model)
            optimizer, scheduler = make_optimizer(model, size)
            step_model = model
            if compiled:
                step_model = compile_cells(model) if not builtin else torch.compile(model)
            step = trainer.make_step(step_model, optimizer, lm_loss, clip_norm=cfg.clip_norm)
            timings[f"{name} H={H}"] = time_calls(
                lambda step=step, s=scheduler: (step(*batch), s.step()),
                devices.sync,
                warmup=cfg.warmup,
                iters=cfg.iters,
            )
    return timings
