"""word2vec lab in JAX: skip-gram, CBOW, FastText and GloVe trained with sparse row updates.

Read beside week1_torch/word2vec.py: the same functions in the same order. The batches
are week1/data/embeddings.py's (numpy, the same for both frameworks); the updates and the
training loop (`fit`) are week1_jax/lib/embeddings.py's.
"""

from __future__ import annotations

import dataclasses

from labs import word2vec as spec
from week1 import loop
from week1.data import embeddings as pipeline
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
    trained = embeddings.fit(sentences, pipeline.Settings.of(cfg))
    return trained.words, trained.vectors


def run(cfg: spec.Config, run) -> dict:
    """`week1 run word2vec --framework jax`: train, save the vectors, score them next to
    gensim's, show neighbours (and FastText's unseen words), plot the loss."""
    sentences = spec.load_sentences(cfg)
    trained = embeddings.fit(
        sentences,
        pipeline.Settings.of(cfg),
        ctx=loop.Context(log=run.log, should_stop=run.should_stop, show_progress=True),
    )
    return spec.report_run(run, cfg, sentences, trained, "jax")


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare word2vec`: model `case` trained by the lab's loop (fit) from `weights` (numpy,
    the same names in both frameworks) on all but the held-out sentences, every update's loss
    logged; returns its Curves with the held-out loss at the start and at the end."""
    settings = dataclasses.replace(pipeline.Settings.of(cfg), model=case, log_every=1)
    sentences, held = spec.split_heldout(spec.load_sentences(cfg))
    clock = spec.UpdateClock()
    trained = embeddings.fit(
        sentences, settings, weights=weights, ctx=dataclasses.replace(ctx, log=clock.log)
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
    return spec.mean_loss(batches, lambda b: float(batch_loss(b)[0]))


def bench(cfg: spec.Config) -> dict:
    """`week1 bench word2vec`: one update of cfg.model on a batch of cfg.batch_size centres
    (the epoch's first batch)."""
    settings = pipeline.Settings.of(cfg)
    s = pipeline.setup(spec.load_sentences(cfg), settings)
    batch = next(iter(pipeline.batches(s, settings, 0)))
    update = embeddings.make_update(settings)
    holder = [embeddings.as_state(pipeline.init_weights(s, settings))]

    def one():
        holder[0], loss = update(holder[0], batch)  # the donated state is replaced each call
        return loss

    return {"jax jit": time_calls(one, devices.sync)}
