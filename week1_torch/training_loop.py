"""Training loop lab in PyTorch: the char-MLP LM, trained with the loop written out.

Read beside week1_jax/training_loop.py: the same functions in the same order.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from labs import training_loop as spec
from week1.comparison import Curves
from week1.report import progress
from week1.runs import Diverged
from week1.timing import time_calls
from week1_torch.lib import checkpoint, devices, optim, schedules
from week1_torch.lib.models import CharMLP, get_weights, set_weights

LOG_EVERY = 50  # steps between reads of the losses from the device (train's docstring says why)


def build_model(cfg: spec.Config, vocab_size: int, weights: dict | None = None) -> CharMLP:
    """The model on the default device, initialised from cfg.seed (on the CPU, so every device
    starts from the same numbers), or from `weights` (state_dict names) when given."""
    torch.manual_seed(cfg.seed)
    model = CharMLP(vocab_size, cfg.block_size, cfg.n_embd, cfg.n_hidden, dropout=cfg.dropout)
    if weights is not None:
        set_weights(model, weights)
    return devices.place(model)


def make_optimizer(model: CharMLP, cfg: spec.Config):
    """From-scratch AdamW on cfg.schedule (warmup-cosine by default); no decay on biases and norm
    scales."""
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
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model, batches) -> float:
    model.eval()  # dropout off
    device = next(model.parameters()).device
    loss = float(np.mean([float(loss_fn(model, *as_tensors(x, y, device))) for x, y in batches]))
    model.train()
    return loss


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
    compile: bool = False,
):
    """Train for cfg.steps (or until `stop_at`); returns (model, History).

    optimizer_fn: (model, cfg) -> optimizer, as make_optimizer (the default) returns it.
    checkpoint_dir: save every cfg.checkpoint_every steps, at `stop_at`, and where a stop is asked.
    resume: continue from the newest intact checkpoint in checkpoint_dir.
    log: called as log(step, **metrics) for train and validation losses.
    should_stop: () -> bool, asked after every step (a signal arrived): if True, checkpoint this
      step and return.
    compile: run the model through torch.compile (the optimizer stays eager).
    The model and batches go to the default device (the GPU when there is one).

    The losses stay on the device and are read every LOG_EVERY steps, and at every evaluation,
    checkpoint, stop and the end (reading one waits for the device: `float(loss)` per step
    would drain a GPU's queue every step). So a non-finite loss is found at the next reading:
    Diverged names the first step whose loss is not finite, the steps after it (up to the
    reading) have run, and no checkpoint is written past it (the last good one stays).
    """
    model = build_model(cfg, data.vocab_size, weights)
    optimizer, scheduler = (optimizer_fn or make_optimizer)(model, cfg)
    # Dropout draws from torch's global RNG: seeded by build_model, restored from a checkpoint.
    start = (
        checkpoint.restore_train_state(checkpoint_dir, model, optimizer, scheduler) if resume else 0
    )
    step_model = torch.compile(model) if compile else model
    val = spec.val_batches(data, cfg)
    history = spec.History()
    end = cfg.steps if stop_at is None else stop_at
    pending, since = [], time.perf_counter()  # [(step, loss on the device)] not read yet
    with progress(
        "torch.compile" if compile else "torch", total=end - start, enabled=show_progress
    ) as advance:
        for step in range(start + 1, end + 1):
            x, y = spec.train_batch(data, cfg, step)  # (B, T), (B,)
            loss = train_step(step_model, optimizer, scheduler, *as_tensors(x, y))
            pending.append((step, loss))
            stopping = should_stop is not None and should_stop()
            save = checkpoint_dir is not None and (
                stopping or spec.is_checkpoint_step(cfg, step, stop_at)
            )
            evaluating = spec.is_eval_step(cfg, step)
            if not (save or evaluating or stopping or _reading_step(step, start, end, pending)):
                advance()
                continue
            bad = _log_losses(pending, since, history, log)
            pending = []
            if bad is not None:
                raise Diverged(bad, spec.non_finite_what(get_weights(model)))
            if evaluating:
                history.add_val(step, evaluate(model, val), log)
            if save:
                checkpoint.save_train_state(checkpoint_dir, step, model, optimizer, scheduler)
            advance(history.train_loss[-1])
            if stopping:
                break
            since = time.perf_counter()  # evaluation and checkpoints are not training time
    return model, history


def _reading_step(step: int, start: int, end: int, pending: list) -> bool:
    """Read the losses after the first step (its time is the compilation's), every LOG_EVERY
    steps and after the last."""
    return step == start + 1 or step == end or len(pending) >= LOG_EVERY


def _log_losses(pending: list, since: float, history: spec.History, log) -> int | None:
    """Read the losses of `pending` [(step, loss on the device)] in one transfer and add them to
    `history` (and `log`), sharing the wall time since `since` among them; returns the first
    step whose loss is not finite (it and the steps after it are not added), else None."""
    values = torch.stack([loss for _, loss in pending]).float().cpu().tolist()
    seconds = (time.perf_counter() - since) / len(pending)
    for (step, _), value in zip(pending, values, strict=True):
        if not math.isfinite(value):
            return step
        history.add_train(step, value, seconds, log)
    return None


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run training_loop --framework torch [--compile]`: train, evaluate, sample,
    checkpoint."""
    data = spec.load_data(cfg)
    model, history = train(
        cfg,
        data,
        checkpoint_dir=run.checkpoint_dir,
        resume=run.resume,
        log=run.log,
        should_stop=run.should_stop,
        show_progress=True,
        compile=compile,
    )
    if run.should_stop():
        return history.summary()
    text = data.corpus.decode(
        sample(model, spec.prompt_ids(data, cfg), cfg.sample_chars, cfg.temperature, cfg.seed)
    )
    return {**history.summary(), "unigram_baseline": spec.unigram_baseline(data), "sample": text}


def compare_run(cfg: spec.Config, case: str, weights=None, *, compile=False, show_progress=False):
    """`week1 compare training_loop`: train from `weights` (torch's names, numpy; None: torch's
    init); returns (the start weights, Curves). `case` is "lm", the lab's only one."""
    data = spec.load_data(cfg)
    if weights is None:
        weights = get_weights(build_model(cfg, data.vocab_size))
    _, history = train(cfg, data, weights=weights, show_progress=show_progress, compile=compile)
    return weights, Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench training_loop`: one train step (forward, backward, AdamW), eager and
    compiled."""
    data = spec.load_data(cfg)
    x, y = as_tensors(*spec.train_batch(data, cfg, 1))
    timings = {}
    for name, compile in (("torch eager", False), ("torch.compile", True)):
        model = build_model(cfg, data.vocab_size)
        optimizer, scheduler = make_optimizer(model, cfg)
        step_model = torch.compile(model) if compile else model
        timings[name] = time_calls(
            lambda: train_step(step_model, optimizer, scheduler, x, y), devices.sync
        )
    return timings
