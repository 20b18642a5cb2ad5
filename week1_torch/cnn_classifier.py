"""CNN text classifier lab in PyTorch: Kim (2014), trained with the loop written out.

Read beside week1_jax/cnn_classifier.py: the same functions in the same order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from labs import cnn_classifier as spec
from week1 import loop
from week1.comparison import Curves
from week1.timing import time_calls
from week1_torch.lib import devices, optim, parallelize, schedules
from week1_torch.lib import train as trainer
from week1_torch.lib.models import KimCNN, get_weights, set_weights


def build_model(cfg: spec.Config, data: spec.Data, weights: dict | None = None) -> KimCNN:
    """The model on the default device from cfg.seed (initialised on the CPU), its embeddings
    from data.embeddings when the run uses vectors, or every parameter from `weights`
    (state_dict names) when given; CNN-static's embeddings do not train."""
    torch.manual_seed(cfg.seed)
    model = KimCNN(
        data.vocab_size,
        cfg.n_embd,
        cfg.n_maps,
        data.num_classes,
        widths=spec.WIDTHS,
        init_range=spec.UNKNOWN_RANGE,
        dropout=cfg.dropout,
    )
    if data.embeddings is not None:
        with torch.no_grad():
            model.wte.weight.copy_(torch.from_numpy(data.embeddings))
    if weights is not None:
        set_weights(model, weights)
    is_trainable = trainable(cfg)
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name))
    return devices.place(model)


def trainable(cfg: spec.Config):
    """name -> whether the optimizer updates it: all of them, but the embeddings in CNN-static."""
    return lambda name: not (cfg.embeddings == "static" and name.startswith("wte."))


def make_optimizer(model: KimCNN, cfg: spec.Config):
    """From-scratch AdamW on cfg.schedule; no decay on biases; frozen parameters left out."""
    optimizer = optim.AdamW(optim.param_groups(model, cfg.weight_decay))
    return optimizer, schedules.lambda_lr(optimizer, schedules.from_config(cfg))


def as_tensors(batch, device: torch.device | None = None):
    """A numpy Batch (ids, lengths, labels) as int64 tensors on `device` (default: the default
    device)."""
    return devices.to_device(*batch, dtype=torch.long, device=device)


def loss_fn(model, ids, lengths, labels):
    logits = model(ids, lengths)  # (B, C)
    return F.cross_entropy(logits, labels)


def train_step(model, optimizer):
    """step(ids, lengths, labels) -> loss: backward and AdamW (frozen embeddings have no
    gradient); the schedule steps in lib/train.train."""
    return trainer.make_step(model, optimizer, loss_fn)


@torch.no_grad()
def evaluate(model: KimCNN, batches) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, class probabilities (N, C)) over `batches`, dropout off."""
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(*as_tensors(b, device)[:2]).cpu() for b in batches]).numpy()  # (N, C)
    model.train()
    labels = np.concatenate([b.labels for b in batches])  # (N,)
    log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    return loss, spec.accuracy(labels, logits.argmax(axis=1)), np.exp(log_probs)


def train(cfg: spec.Config, data: spec.Data, *, weights: dict | None = None, ctx=loop.BARE):
    """Train for cfg.steps (or until ctx.stop_at); returns (model, History), its evaluations
    "val_loss" and "val_acc" every cfg.eval_every steps and after the last.

    ctx: checkpoints (every cfg.checkpoint_every steps, the last, and where a stop is asked),
    resume, logging, stop requests and torch.compile (of the whole step), as the caller
    decides (week1/loop.py). A non-finite loss raises Diverged (the last good checkpoint
    stays).
    """
    model = build_model(cfg, data, weights)
    optimizer, scheduler = make_optimizer(model, cfg)
    # Dropout draws from torch's global RNG: seeded by build_model, restored from a checkpoint.
    val = spec.eval_batches(data, cfg, "validation")
    history = trainer.train(
        model,
        optimizer,
        train_step(model, optimizer),
        lambda step: as_tensors(spec.train_batch(data, cfg, step, fixed=ctx.compile)),
        loop.Cadence.of(cfg),
        ctx,
        scheduler=scheduler,
        evaluate=lambda: spec.val_metrics(*evaluate(model, val)[:2]),
        label=f"torch {cfg.variant}",
    )
    return model, history


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run cnn_classifier --framework torch [--compile]`: train, then the test-split
    table, confusion matrix, curves and misclassified examples."""
    data = spec.load_data(cfg)
    model, history = train(cfg, data, ctx=loop.Context.of_run(run, compile))
    if run.should_stop():
        return history.summary()
    _, _, probs = evaluate(model, spec.eval_batches(data, cfg, "test"))
    return spec.report_run(cfg, data, history, probs, run, "torch")


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    data = spec.load_data(cfg)
    return get_weights(build_model(cfg, data))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare cnn_classifier`: train from `weights` (torch's names, numpy); returns its
    Curves of the validation accuracy. `case` is cfg.variant, the lab's only one."""
    data = spec.load_data(cfg)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return Curves.of(history, history.evals["val_acc"])


def bench(cfg: spec.Config) -> dict:
    """`week1 bench cnn_classifier`: one train step (forward, backward, AdamW) on training
    batch 1, eager and compiled."""
    data = spec.load_data(cfg)
    batch = as_tensors(spec.train_batch(data, cfg, 1))
    timings = {}
    for name, compile in (("torch eager", False), ("torch.compile", True)):
        model = build_model(cfg, data)
        optimizer, scheduler = make_optimizer(model, cfg)
        step = train_step(model, optimizer)
        step = parallelize.apply_compile(step) if compile else step
        timings[name] = time_calls(
            lambda step=step, s=scheduler: (step(*batch), s.step()), devices.sync
        )
    return timings
