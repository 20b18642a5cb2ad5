"""word2vec lab in PyTorch: skip-gram, CBOW, FastText and GloVe trained with sparse row updates.

Read beside week1_jax/word2vec.py: the same functions in the same order. The batches are
labs/word2vec.py's (numpy, the same for both frameworks); the updates are
week1_torch/lib/embeddings.py's.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from labs import word2vec as spec
from week1.report import progress
from week1.runs import Diverged
from week1.timing import time_calls
from week1_torch.lib import devices, embeddings


def train(
    sentences,
    *,
    vector_size=100,
    window=5,
    negative=5,
    min_count=5,
    sample=1e-3,
    epochs=5,
    alpha=0.025,
    min_alpha=1e-4,
    sg=1,
    seed=0,
):
    """gensim's Word2Vec(sentences, ...) with negative sampling, from scratch: sentences is a
    list of token lists; returns (words, vectors): the vocabulary, most frequent first, and a
    (len(words), vector_size) float32 array."""
    cfg = spec.word2vec_config(
        sg=sg,
        vector_size=vector_size,
        window=window,
        negative=negative,
        min_count=min_count,
        sample=sample,
        epochs=epochs,
        alpha=alpha,
        min_alpha=min_alpha,
        seed=seed,
    )
    trained = fit(sentences, cfg)
    return trained.words, trained.vectors


@contextlib.contextmanager
def _threads(n: int):
    """torch's intra-op CPU threads set to n for the block (0: left as they are)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_state(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The matrices as float32 tensors on the default device (updated in place)."""
    names = list(weights)
    return dict(zip(names, devices.to_device(*(weights[k] for k in names)), strict=True))


def make_update(cfg: spec.Config, compile: bool = False):
    """(state, batch) -> the batch's loss (a 0-d tensor), updating `state` in place."""
    if cfg.model == "glove":
        glove = torch.compile(embeddings.glove_update) if compile else embeddings.glove_update

        def update(state, batch):
            params = tuple(state[k] for k in spec.GLOVE_PARAMS)
            grad_sq = tuple(state[f"g_{k}"] for k in spec.GLOVE_PARAMS)
            return glove(params, grad_sq, *devices.to_device(*batch.arrays()), cfg.glove_alpha)

        return update
    step = embeddings.negative_sampling_update
    step = torch.compile(step) if compile else step

    def update(state, batch):
        arrays = devices.to_device(*batch.arrays())
        return step(state["w_in"], state["w_out"], *arrays, batch.lr)

    return update


def fit(
    sentences,
    cfg: spec.Config,
    *,
    weights: dict | None = None,
    log=None,
    should_stop=None,
    show_progress: bool = False,
    compile: bool = False,
) -> spec.Trained:
    """Train cfg.model on `sentences` from `weights` (default: spec.init_weights).

    log: log(step, loss=...) every cfg.log_every updates (mean loss per pair since the last).
    should_stop: () -> bool, asked after every update: if True, stop there and return what was
      trained. A non-finite logged loss raises Diverged.
    """
    s = spec.setup(sentences, cfg)
    state = as_state(weights if weights is not None else spec.init_weights(s, cfg))
    update = make_update(cfg, compile)
    history = spec.History()
    step, pending, pairs, shown = 0, 0.0, 0.0, None
    with (
        _threads(cfg.threads),
        progress(f"torch {cfg.model}", spec.expected_steps(s, cfg), show_progress) as advance,
    ):
        start = time.perf_counter()
        for batch in spec.stream(s, cfg):
            pending = pending + update(state, batch)  # stays on the device until logged
            pairs += spec.pairs_of(batch)
            step += 1
            if step % cfg.log_every == 0:
                shown = float(pending) / max(pairs, 1.0)
                if not math.isfinite(shown):
                    raise Diverged(step, "loss")
                history.add(step, shown, log)
                pending, pairs = 0.0, 0.0
            advance(shown)
            history.stopped = should_stop is not None and should_stop()
            if history.stopped:
                break
        if pairs:
            history.add(step, float(pending) / pairs, log)
        devices.sync()
        history.seconds, history.updates = time.perf_counter() - start, step
    final = {k: v.cpu().numpy() for k, v in state.items()}
    return spec.Trained(s.vocab.words, spec.export(s, cfg, final), final, s, history)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run word2vec --framework torch`: train, save the vectors, score them next to
    gensim's, show neighbours (and FastText's unseen words), plot the loss."""
    sentences = spec.load_sentences(cfg)
    trained = fit(
        sentences,
        cfg,
        log=run.log,
        should_stop=run.should_stop,
        show_progress=True,
        compile=compile,
    )
    return spec.report_run(run, cfg, sentences, trained, "torch.compile" if compile else "torch")


def bench(cfg: spec.Config) -> dict:
    """`week1 bench word2vec`: one update of cfg.model on a batch of cfg.batch_size centres."""
    s = spec.setup(spec.load_sentences(cfg), cfg)
    batch = next(iter(spec.batches(s, cfg, 0)))
    out = {}
    with _threads(cfg.threads):
        for name, compile in (("torch eager", False), ("torch.compile", True)):
            state, update = as_state(spec.init_weights(s, cfg)), make_update(cfg, compile)
            out[name] = time_calls(lambda: update(state, batch), devices.sync)
    return out
