"""word2vec parity: the pipeline against gensim's formulas, each update against the gradient of
its loss, JAX against torch step by step, the train() interface, the evaluation against gensim's.

- pipeline: EXACT for a seed (batch by batch); vocabulary, subsampling probabilities and the
  unigram^0.75 table equal to gensim's (build_vocab on the same sentences); FastText n-gram
  buckets equal to gensim's ft_ngram_hashes; windows equal to a plain loop; negatives drawn with
  unigram^0.75 frequencies;
- updates: SGNS/CBOW/FastText and GloVe steps equal plain SGD / glove.c's AdaGrad on the autograd
  gradient of their loss (torch autograd as the reference, F32);
- JAX vs torch: the same matrices through the same 40 batches, loss per step and final matrices
  (F32), for every model;
- train(): gensim's signature exactly, (words, float32 vectors), both frameworks agree;
- evaluation of trained vectors equal to gensim's evaluate_word_pairs / evaluate_word_analogies;
- `week1 run word2vec` in both frameworks on a small corpus: vectors gensim reads, the loss PNG.
Full-corpus runs against gensim's quality are `slow`.
"""

import dataclasses
import inspect
import itertools

import numpy as np
import pytest
import torch

from labs import word2vec as spec
from week1 import loop
from week1.data import embeddings, vectors, words
from week1.tolerances import EXACT, F32, F64, TRAJECTORY, assert_close
from week1_jax import word2vec as jax_lab
from week1_jax.lib import embeddings as jax_emb
from week1_torch import word2vec as torch_lab
from week1_torch.lib import embeddings as torch_emb

gensim_models = pytest.importorskip("gensim.models")

SMALL = 30_000  # words of Shakespeare in the CI cases
CFG = spec.Config(
    max_words=SMALL, min_count=3, vector_size=32, batch_size=64, window=2, reference=False
)


@pytest.fixture(scope="module")
def sentences():
    return words.sentences("shakespeare", SMALL)


def setup_for(model: str, sentences, **changes):
    settings = embeddings.Settings.of(dataclasses.replace(CFG, model=model, **changes))
    return settings, embeddings.setup(sentences, settings)


# ---------------------------------------------------------------------------------------------
# The pipeline


@pytest.mark.parametrize("model", spec.MODELS)
def test_batches_are_exact_for_a_seed(sentences, model):
    cfg, s = setup_for(model, sentences)
    first = list(itertools.islice(embeddings.stream(s, cfg), 30))
    again = list(itertools.islice(embeddings.stream(s, cfg), 30))
    for k, (a, b) in enumerate(zip(first, again, strict=True)):
        for i, (x, y) in enumerate(zip(a.arrays(), b.arrays(), strict=True)):
            assert_close("pipeline", f"batch{k}.array{i}", x, y, EXACT)
    other = next(iter(embeddings.batches(s, dataclasses.replace(cfg, seed=1), 0)))
    assert not np.array_equal(other.arrays()[0], first[0].arrays()[0])


def test_vocabulary_subsampling_and_negative_table_equal_gensim(sentences):
    cfg, s = setup_for("sgns", sentences, sample=1e-3)
    model = gensim_models.Word2Vec(min_count=cfg.min_count, sample=cfg.sample, workers=1)
    model.build_vocab(sentences)
    theirs = [str(w) for w in model.wv.index_to_key]
    assert sorted(theirs) == sorted(s.vocab.words)
    ours_at = [s.vocab.index[w] for w in theirs]  # our index of each gensim word
    counts = np.array([model.wv.get_vecattr(w, "count") for w in theirs])
    assert_close("vocab", "counts", s.vocab.counts[ours_at], counts, EXACT)
    assert list(s.vocab.counts) == sorted(s.vocab.counts, reverse=True)
    # gensim keeps a word when sample_int (p * 2^32, as uint32) >= a random uint32.
    sample_int = np.array([model.wv.get_vecattr(w, "sample_int") for w in theirs])
    assert_close("subsampling", "keep", s.keep[ours_at], sample_int / 2**32, F32)
    # gensim's cum_table: the cumulative count^0.75 scaled to 2^31, rounded.
    cum = model.cum_table.astype(np.float64)
    theirs_p = np.diff(np.r_[0.0, cum]) / cum[-1]
    ours_p = embeddings.unigram_probabilities(s.vocab.counts)
    assert_close("negatives", "unigram^0.75", ours_p[ours_at], theirs_p, F32)
    assert_close("negatives", "alias table", s.table.probabilities(), ours_p, F64)


def test_ngram_buckets_equal_gensim(sentences):
    from gensim.models.fasttext import ft_ngram_hashes

    vocab = embeddings.build_vocab(sentences, 3).words
    for word in [*vocab, "naïve", "café", "日本語", "a", "x'y", "ðe"]:
        assert embeddings.ngram_buckets(word, 3, 6, 2_000_000) == ft_ngram_hashes(
            word, 3, 6, 2_000_000
        ), word


def test_windows_equal_a_plain_loop(sentences):
    cfg, s = setup_for("sgns", sentences, sample=0.0)  # every word kept: positions are indices
    w = embeddings.epoch_windows(
        s.corpus, s.keep, s.table, window=cfg.window, negative=cfg.negative, seed=0, epoch=0
    )
    ids, sentence = s.corpus.ids, s.corpus.sentence
    offsets = [*range(-cfg.window, 0), *range(1, cfg.window + 1)]
    for m in range(0, len(w), 97):
        p, r = int(w.position[m]), int(w.reach[m])
        expect = [
            (k, int(ids[p + o]))
            for k, o in enumerate(offsets)
            if abs(o) <= r and 0 <= p + o < len(ids) and sentence[p + o] == sentence[p]
        ]
        assert [(k, int(w.contexts[m, k])) for k in np.flatnonzero(w.valid[m])] == expect
        assert int(w.centres[m]) == int(ids[p])
    counts = np.bincount(w.reach, minlength=cfg.window + 1)[1:]  # uniform over 1..window
    assert counts.min() > 0.9 * counts.mean()


def test_negatives_follow_unigram_to_the_075(sentences):
    _, s = setup_for("sgns", sentences)
    drawn = embeddings.draw_negatives(np.random.default_rng(0), s.table, 400_000)
    p = s.vocab.counts**0.75 / (s.vocab.counts**0.75).sum()
    seen = np.bincount(drawn, minlength=len(p))[:50] / len(drawn)
    sigma = np.sqrt(p[:50] * (1 - p[:50]) / len(drawn))
    assert np.all(np.abs(seen - p[:50]) < 5 * sigma)


def test_batch_layouts(sentences):
    _, s = setup_for("fasttext", sentences)
    w = embeddings.epoch_windows(s.corpus, s.keep, s.table, window=5, negative=5, seed=0, epoch=0)
    rows = np.flatnonzero(w.reach == 3)[:40]
    sg = embeddings.make_batch("sgns", w, rows, 3, 0.01)
    n = w.valid[rows].sum(axis=1)
    assert sg.outputs.shape == (40, 6 + 5) and sg.pairs == n.sum()
    clashes = (w.contexts[rows][:, :, None] == w.negatives[rows][:, None, :]) & w.valid[rows][
        :, :, None
    ]
    np.testing.assert_array_equal(sg.out_weights[:, 6:], n[:, None] - clashes.sum(axis=1))
    cbow = embeddings.make_batch("cbow", w, rows, 3, 0.01)
    np.testing.assert_allclose(cbow.in_weights.sum(axis=1), 1.0, rtol=1e-6)
    pairs = embeddings.epoch_windows(
        s.corpus, s.keep, s.table, window=5, negative=5, seed=0, epoch=0, per_pair=True
    )
    per_pair = embeddings.make_batch("sgns", pairs, rows, 3, 0.01)
    assert per_pair.outputs.shape == (40, 6 + 6 * 5) and per_pair.pairs == n.sum()
    own = pairs.negatives[rows][:, 2:8]  # (B, 2r, K): the negatives of offsets -3..3
    expect = pairs.valid[rows][:, 2:8, None] & (own != pairs.contexts[rows][:, 2:8, None])
    np.testing.assert_array_equal(per_pair.out_weights[:, 6:], expect.reshape(40, -1))
    ft = embeddings.make_batch("fasttext", w, rows, 3, 0.01, s.sub)
    count = s.sub.count[w.centres[rows]]
    np.testing.assert_allclose(ft.in_weights.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all((ft.in_weights > 0).sum(axis=1) == 1 + count)


# ---------------------------------------------------------------------------------------------
# Each update against the gradient of its loss (torch autograd as the reference)


VARIANTS = {"sgns-pair": ("sgns", {"negatives": "pair"})}


def setup_variant(name: str, sentences):
    model, changes = VARIANTS.get(name, (name, {}))
    return setup_for(model, sentences, **changes)


@pytest.mark.parametrize("model", [*embeddings.NEGATIVE_SAMPLING, *VARIANTS])
def test_negative_sampling_update_is_sgd_on_its_loss(sentences, model):
    cfg, s = setup_variant(model, sentences)
    weights = embeddings.init_weights(s, cfg)
    weights["w_out"] = np.random.default_rng(1).normal(0, 0.1, weights["w_out"].shape)
    weights["w_out"] = weights["w_out"].astype(np.float32)
    batch = next(iter(embeddings.batches(s, cfg, 0)))
    inputs, in_w, outputs, labels, out_w = (torch.from_numpy(a) for a in batch.arrays())
    w_in = torch.tensor(weights["w_in"])
    w_out = torch.tensor(weights["w_out"], requires_grad=True)
    h = torch.einsum("bs,bsc->bc", in_w, w_in[inputs]).requires_grad_()
    f = torch.einsum("bc,btc->bt", h, w_out[outputs])
    loss = -(out_w * torch.nn.functional.logsigmoid(torch.where(labels > 0, f, -f))).sum()
    loss.backward()
    # word2vec.c's rule: W_out by -lr dL/dW_out; every input row with weight != 0 by -lr dL/dh.
    lr = batch.lr
    expect_out = weights["w_out"] - lr * w_out.grad.numpy()
    expect_in = torch.tensor(weights["w_in"])
    touched = (in_w != 0).float()[..., None] * (-lr * h.grad)[:, None, :]  # (B, S, C)
    expect_in.index_add_(0, inputs.reshape(-1), touched.reshape(-1, cfg.vector_size))
    got_in, got_out = (torch.tensor(weights[k]) for k in ("w_in", "w_out"))
    got_loss = torch_emb.negative_sampling_update(
        got_in, got_out, *map(torch.from_numpy, batch.arrays()), lr
    )
    assert_close(f"{model} update", "loss", got_loss.numpy(), loss.detach().numpy(), F32)
    assert_close(f"{model} update", "w_out", got_out.numpy(), expect_out, F32)
    assert_close(f"{model} update", "w_in", got_in.numpy(), expect_in.numpy(), F32)
    if cfg.model == "sgns":  # one input row of weight 1: the rule is exactly SGD on L
        full = torch.tensor(weights["w_in"], requires_grad=True)
        loss, _ = torch_emb.negative_sampling_loss(
            full, torch.tensor(weights["w_out"]), inputs, in_w, outputs, labels, out_w
        )
        loss.backward()
        expect = weights["w_in"] - lr * full.grad.numpy()
        assert_close("sgns update", "w_in (SGD)", got_in.numpy(), expect, F32)


def test_glove_update_is_glove_c_adagrad_on_its_loss(sentences):
    cfg, s = setup_for("glove", sentences)
    state = {k: torch.tensor(v) for k, v in embeddings.init_weights(s, cfg).items()}
    lr = cfg.glove_alpha
    for k, batch in enumerate(itertools.islice(embeddings.batches(s, cfg, 0), 2)):
        i, j, f, logx = (torch.from_numpy(a) for a in batch.arrays())
        w = state["w"].clone().requires_grad_()
        loss, _ = torch_emb.glove_loss(w, i, j, f, logx)
        loss.backward()
        # glove.c: each entry moves its rows by -lr g / sqrt(G), G from before the batch (1 at
        # the start, then 1 + the squared steps so far): the rows move by -lr dL/dw / sqrt(G).
        expect = state["w"] - lr * w.grad / state["g"].sqrt()
        got = torch_emb.glove_update(state["w"], state["g"], i, j, f, logx, lr)
        assert_close("glove update", f"loss {k}", got.numpy(), loss.detach().numpy(), F32)
        assert_close("glove update", f"w {k}", state["w"].numpy(), expect.numpy(), F32)


@pytest.mark.parametrize("model", spec.MODELS)
def test_jax_loss_and_gradients_equal_torch(sentences, model):
    import jax

    cfg, s = setup_for(model, sentences)
    weights = embeddings.init_weights(s, cfg)
    names = ("w",) if model == "glove" else ("w_in", "w_out")
    if model != "glove":  # zero output rows would make every input gradient zero
        weights["w_out"] = np.random.default_rng(1).normal(0, 0.1, weights["w_out"].shape)
        weights["w_out"] = weights["w_out"].astype(np.float32)
    batch = next(iter(embeddings.batches(s, cfg, 0)))
    jax_loss = jax_emb.glove_loss if model == "glove" else jax_emb.negative_sampling_loss
    torch_loss = torch_emb.glove_loss if model == "glove" else torch_emb.negative_sampling_loss
    call_jax = lambda p: jax_loss(*p, *batch.arrays())[0]
    call_torch = lambda p: torch_loss(*p, *map(torch.from_numpy, batch.arrays()))[0]
    value, grads = jax.value_and_grad(call_jax)(tuple(weights[k] for k in names))
    params = [torch.tensor(weights[k], requires_grad=True) for k in names]
    loss = call_torch(params)
    loss.backward()
    assert_close(f"{model} loss", "value", np.asarray(value), loss.detach().numpy(), F32)
    for name, g, p in zip(names, grads, params, strict=True):
        assert_close(f"{model} loss", f"d/d{name}", np.asarray(g), p.grad.numpy(), F32)


# ---------------------------------------------------------------------------------------------
# JAX vs torch, step by step


@pytest.mark.parametrize("model", [*spec.MODELS, *VARIANTS])
def test_jax_and_torch_take_the_same_steps(sentences, model):
    cfg, s = setup_variant(model, sentences)
    weights = embeddings.init_weights(s, cfg)
    batches = list(itertools.islice(embeddings.stream(s, cfg), 40))
    jax_state, torch_state = jax_emb.as_state(weights), torch_emb.as_state(weights)
    jax_update, torch_update = jax_emb.make_update(cfg), torch_emb.make_update(cfg)
    for k, batch in enumerate(batches):
        jax_state, jax_loss = jax_update(jax_state, batch)
        torch_loss = torch_update(torch_state, batch)
        assert_close(f"{model} steps", f"loss {k}", np.asarray(jax_loss), torch_loss.numpy(), F32)
    for name in weights:
        assert_close(
            f"{model} steps",
            f"{name} after {len(batches)}",
            np.asarray(jax_state[name]),
            torch_state[name].numpy(),
            F32,
        )


# ---------------------------------------------------------------------------------------------
# train(), evaluation, the run


def test_train_has_gensims_signature():
    expect = {
        "vector_size": 100,
        "window": 5,
        "negative": 5,
        "min_count": 5,
        "sample": 1e-3,
        "epochs": 5,
        "alpha": 0.025,
        "min_alpha": 1e-4,
        "sg": 1,
        "seed": 0,
    }
    for lab in (jax_lab, torch_lab):
        params = inspect.signature(lab.train).parameters
        assert list(params) == ["sentences", *expect]
        assert params["sentences"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        for name, default in expect.items():
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
            assert params[name].default == default


@pytest.fixture(scope="module")
def trained(sentences):
    """train() in both frameworks, CBOW and skip-gram, on the small corpus."""
    settings = {"vector_size": 32, "min_count": 3, "epochs": 1, "window": 2}
    return {
        (name, sg): lab.train(sentences, sg=sg, **settings)
        for name, lab in (("jax", jax_lab), ("torch", torch_lab))
        for sg in (0, 1)
    }


@pytest.mark.parametrize("sg", [0, 1], ids=["cbow", "sgns"])
def test_train_returns_words_and_vectors_the_same_in_both(trained, sentences, sg):
    (jax_words, jax_vectors), (torch_words, torch_vectors) = (
        trained["jax", sg],
        trained["torch", sg],
    )
    vocab = embeddings.build_vocab(sentences, 3)
    assert jax_words == torch_words == vocab.words
    assert all(isinstance(w, str) for w in jax_words)
    assert jax_vectors.dtype == torch_vectors.dtype == np.float32
    assert jax_vectors.shape == (len(vocab), 32)
    assert_close("train()", "vectors", jax_vectors, torch_vectors, TRAJECTORY)


def test_evaluation_equals_gensims_on_trained_vectors(trained):
    words_, vectors_ = trained["torch", 1]
    ours = vectors.WordVectors(words_, vectors_)
    kv = gensim_models.KeyedVectors(vectors_.shape[1])
    kv.add_vectors(words_, vectors_)
    for name, file in vectors.PAIR_SETS.items():
        path = vectors.eval_path(file)
        mine = vectors.evaluate_word_pairs(ours, path)
        _, spearman, oov = kv.evaluate_word_pairs(str(path))
        assert mine.spearman == pytest.approx(spearman[0], abs=1e-9), name
        assert mine.oov_ratio == pytest.approx(oov), name
    path = vectors.eval_path(vectors.ANALOGIES)
    mine = vectors.evaluate_word_analogies(ours, path)
    score, sections = kv.evaluate_word_analogies(str(path))
    assert mine.total > 0 and mine.accuracy == score
    assert mine.correct == len(sections[-1]["correct"])


def test_fasttext_vectors_are_means_of_word_and_ngram_rows(sentences):
    cfg, s = setup_for("fasttext", sentences)
    weights = embeddings.init_weights(s, cfg)
    out = embeddings.export(s, cfg, weights)
    word = s.vocab.words[7]
    grams = [s.sub.row_of_bucket[b] for b in embeddings.ngram_buckets(word, 3, 6, cfg.bucket)]
    expect = (weights["w_in"][7] + weights["w_in"][grams].sum(axis=0)) / (1 + len(grams))
    assert_close("fasttext", "known word", out[7], expect, F32)
    unseen = "kingliness"
    assert unseen not in s.vocab.index
    found = s.sub.oov_rows(unseen)
    total = len(embeddings.ngram_buckets(unseen, 3, 6, cfg.bucket))
    assert 0 < len(found) <= total
    assert_close(
        "fasttext",
        "unseen word",
        embeddings.oov_vector(s, weights, unseen),
        weights["w_in"][found].sum(axis=0) / total,
        F32,
    )


def test_fit_stops_when_asked(sentences):
    cfg = embeddings.Settings.of(dataclasses.replace(CFG, log_every=5))
    asked = iter(range(1000))
    stop = loop.Context(should_stop=lambda: next(asked) >= 11)
    trained = torch_emb.fit(sentences, cfg, ctx=stop)
    assert trained.history.stopped and trained.history.steps == list(range(1, 13))
    assert trained.vectors.shape == (len(trained.words), cfg.vector_size)


@pytest.mark.parametrize(
    "framework, model", [("jax", "sgns"), ("torch", "fasttext"), ("jax", "glove")]
)
def test_week1_run(tmp_path, framework, model):
    from week1 import runs
    from week1.cli import main

    settings = [
        f"--model={model}",
        "--max_words=20000",
        "--epochs=1",
        "--glove_epochs=2",
        "--window=2",
    ]
    code = main(
        [
            "run",
            "word2vec",
            "--framework",
            framework,
            "--runs-dir",
            str(tmp_path),
            *settings,
            "--reference=false",
            "--min_count=3",
        ]
    )
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    assert runs.read_summary(run_dir)["status"] == "ok"
    assert (run_dir / "loss.png").stat().st_size > 0
    for name, binary in (("vectors.txt", False), ("vectors.bin", True)):
        kv = gensim_models.KeyedVectors.load_word2vec_format(str(run_dir / name), binary=binary)
        ours = vectors.load_word2vec_format(run_dir / name)
        assert [str(w) for w in kv.index_to_key] == ours.words
        np.testing.assert_array_equal(kv.vectors, ours.vectors)


# ---------------------------------------------------------------------------------------------
# Full corpus against gensim (slow)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sgns", "cbow"])
def test_quality_within_005_rho_of_gensim(model):
    cfg = dataclasses.replace(spec.Config(), model=model, reference=True)
    sentences = spec.load_sentences(cfg)
    ours = torch_emb.fit(sentences, embeddings.Settings.of(cfg))
    mine = vectors.evaluate(vectors.WordVectors(ours.words, ours.vectors))
    ref = spec.gensim_reference(sentences, cfg, workers=1)
    theirs = vectors.evaluate(ref.wv)
    for key in ("ws353", "simlex"):
        assert mine[key] > theirs[key] - 0.05, (key, mine[key], theirs[key])
