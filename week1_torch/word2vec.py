"""word2vec lab in PyTorch: skip-gram, CBOW, FastText and GloVe trained with sparse row updates.

Read beside week1_jax/word2vec.py: the same functions in the same order. The batches
are week1/data/embeddings.py's (numpy, the same for both frameworks); the updates and the
training loop (`fit`) are week1_torch/lib/embeddings.py's.
"""

from __future__ import annotations

from labs import word2vec as spec
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
        log=run.log,
        should_stop=run.should_stop,
        show_progress=True,
        compile=compile,
    )
    return spec.report_run(run, cfg, sentences, trained, "torch.compile" if compile else "torch")


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
