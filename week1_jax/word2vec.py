"""word2vec lab in JAX: skip-gram, CBOW, FastText and GloVe trained with sparse row updates.

Read beside week1_torch/word2vec.py: the same functions in the same order. The batches are
labs/word2vec.py's (numpy, the same for both frameworks); the updates are
week1_jax/lib/embeddings.py's, jitted with the matrices donated (updated in place).
"""

from __future__ import annotations

import math
import time

import jax.numpy as jnp
import numpy as np

from labs import word2vec as spec
from week1.report import progress
from week1.runs import Diverged
from week1.timing import time_calls
from week1_jax.lib import devices, embeddings


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


def as_state(weights: dict[str, np.ndarray]) -> dict:
    """The matrices as float32 jax arrays on the default device."""
    names = list(weights)
    return dict(zip(names, devices.to_device(*(weights[k] for k in names)), strict=True))


def make_update(cfg: spec.Config):
    """(state, batch) -> (new state, the batch's loss); the old state's buffers are donated."""
    if cfg.model == "glove":

        def update(state, batch):
            params = tuple(state[k] for k in spec.GLOVE_PARAMS)
            grad_sq = tuple(state[f"g_{k}"] for k in spec.GLOVE_PARAMS)
            lr = np.float32(cfg.glove_alpha)
            arrays = devices.to_device(*batch.arrays())
            params, grad_sq, loss = embeddings.glove_update(params, grad_sq, *arrays, lr)
            names = (*spec.GLOVE_PARAMS, *(f"g_{k}" for k in spec.GLOVE_PARAMS))
            return dict(zip(names, (*params, *grad_sq), strict=True)), loss

        return update

    def update(state, batch):
        w_in, w_out, loss = embeddings.negative_sampling_update(
            state["w_in"], state["w_out"], *devices.to_device(*batch.arrays()), np.float32(batch.lr)
        )
        return {"w_in": w_in, "w_out": w_out}, loss

    return update


def fit(
    sentences,
    cfg: spec.Config,
    *,
    weights: dict | None = None,
    log=None,
    should_stop=None,
    show_progress: bool = False,
) -> spec.Trained:
    """Train cfg.model on `sentences` from `weights` (default: spec.init_weights).

    log: log(step, loss=...) every cfg.log_every updates (mean loss per pair since the last).
    should_stop: () -> bool, asked after every update: if True, stop there and return what was
      trained. A non-finite logged loss raises Diverged.
    """
    s = spec.setup(sentences, cfg)
    state = as_state(weights if weights is not None else spec.init_weights(s, cfg))
    update = make_update(cfg)
    history = spec.History()
    step, pending, pairs, shown = 0, jnp.float32(0), 0.0, None
    with progress(f"jax {cfg.model}", spec.expected_steps(s, cfg), show_progress) as advance:
        start = time.perf_counter()
        for batch in spec.stream(s, cfg):
            state, loss = update(state, batch)
            pending = pending + loss  # stays on the device until logged
            pairs += spec.pairs_of(batch)
            step += 1
            if step % cfg.log_every == 0:
                shown = float(pending) / max(pairs, 1.0)
                if not math.isfinite(shown):
                    raise Diverged(step, "loss")
                history.add(step, shown, log)
                pending, pairs = jnp.float32(0), 0.0
            advance(shown)
            history.stopped = should_stop is not None and should_stop()
            if history.stopped:
                break
        if pairs:
            history.add(step, float(pending) / pairs, log)
        devices.sync(state)
        history.seconds, history.updates = time.perf_counter() - start, step
    final = {k: np.asarray(v) for k, v in state.items()}
    return spec.Trained(s.vocab.words, spec.export(s, cfg, final), final, s, history)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run word2vec --framework jax`: train, save the vectors, score them next to
    gensim's, show neighbours (and FastText's unseen words), plot the loss."""
    sentences = spec.load_sentences(cfg)
    trained = fit(sentences, cfg, log=run.log, should_stop=run.should_stop, show_progress=True)
    return spec.report_run(run, cfg, sentences, trained, "jax")


def bench(cfg: spec.Config) -> dict:
    """`week1 bench word2vec`: one update of cfg.model on a batch of cfg.batch_size centres."""
    s = spec.setup(spec.load_sentences(cfg), cfg)
    batch = next(iter(spec.batches(s, cfg, 0)))
    update, holder = make_update(cfg), [as_state(spec.init_weights(s, cfg))]

    def one():
        holder[0], loss = update(holder[0], batch)  # the donated state is replaced each call
        return loss

    return {"jax jit": time_calls(one, devices.sync)}
