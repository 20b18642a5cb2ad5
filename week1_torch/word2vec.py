"""word2vec lab in PyTorch: skip-gram, CBOW, FastText and GloVe trained with sparse row updates.

Read beside week1_jax/word2vec.py: the same functions in the same order. The batches
are week1/data/embeddings.py's (numpy, the same for both frameworks); the updates and the
training loop (`fit`) are week1_torch/lib/embeddings.py's.
"""

from __future__ import annotations

import dataclasses

import torch

from labs import word2vec as spec
from week1 import loop
from week1.data import embeddings as pipeline
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
    trained = embeddings.fit(sentences, pipeline.Settings.of(cfg))
    return trained.words, trained.vectors


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run word2vec --framework torch`: train, save the vectors, score them next to
    gensim's, show neighbours (and FastText's unseen words), plot the loss."""
    sentences = spec.load_sentences(cfg)
    trained = embeddings.fit(
        sentences,
        pipeline.Settings.of(cfg),
        ctx=loop.Context(
            log=run.log, should_stop=run.should_stop, show_progress=True, compile=compile
        ),
    )
    return spec.report_run(run, cfg, sentences, trained, "torch.compile" if compile else "torch")


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: the seeded start
    (pipeline.init_weights), numpy, the same names in both frameworks."""
    settings = dataclasses.replace(pipeline.Settings.of(cfg), model=case, log_every=1)
    sentences, _ = spec.split_heldout(spec.load_sentences(cfg))
    return pipeline.init_weights(pipeline.setup(sentences, settings), settings)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare word2vec`: model `case` trained by the lab's loop (fit) from `weights` (numpy,
    the same names in both frameworks) on all but the held-out sentences, every update's loss
    logged; returns its Curves with the held-out loss at the start and at the end."""
    settings = dataclasses.replace(pipeline.Settings.of(cfg), model=case, log_every=1)
    sentences, held = spec.split_heldout(spec.load_sentences(cfg))
    clock = spec.UpdateClock()
    trained = embeddings.fit(
        sentences,
        settings,
        # copies: on a CPU the state's tensors share memory with the numpy arrays (from_numpy)
        # and fit updates them in place, which would change the start the held-out loss reads
        weights={k: v.copy() for k, v in weights.items()},
        ctx=dataclasses.replace(ctx, log=clock.log),
    )
    batches = spec.heldout_batches(trained.setup, held, settings)
    evals = [_heldout_loss(case, w, batches) for w in (weights, trained.weights)]
    return clock.curves(trained, evals)


def _heldout_loss(model: str, weights: dict, batches: list) -> float:
    state = embeddings.as_state(weights)
    if model == "glove":
        batch_loss = lambda b: embeddings.glove_loss(state["w"], *devices.to_device(*b.arrays()))
    else:
        batch_loss = lambda b: embeddings.negative_sampling_loss(
            state["w_in"], state["w_out"], *devices.to_device(*b.arrays())
        )
    with torch.no_grad():
        return spec.mean_loss(batches, lambda b: float(batch_loss(b)[0]))


def bench(cfg: spec.Config) -> dict:
    """`week1 bench word2vec`: one update of cfg.model on a batch of cfg.batch_size centres
    (the epoch's first batch)."""
    settings = pipeline.Settings.of(cfg)
    s = pipeline.setup(spec.load_sentences(cfg), settings)
    batch = next(iter(pipeline.batches(s, settings, 0)))
    out = {}
    with embeddings.cpu_threads(cfg.threads):
        for name, compile in (("torch eager", False), ("torch.compile", True)):
            state = embeddings.as_state(pipeline.init_weights(s, settings))
            update = embeddings.make_update(settings, compile)
            out[name] = time_calls(lambda: update(state, batch), devices.sync)
    return out
