"""Lab: word2vec (skip-gram, CBOW), GloVe and FastText from scratch, scored next to gensim.

All four are trained from scratch in JAX and in torch, and scored next to gensim on the same
corpus.

What it teaches
---------------
A word is known by the company it keeps. Skip-gram trains each word's vector to tell the words
that really occur around it from `negative` words drawn at random; CBOW predicts the word from
the mean of its context. What makes it work is in the data pipeline (week1/data/embeddings.py,
framework-free numpy, identical for both frameworks): frequent words subsampled, a window
shrunk at random (near words count more), negatives drawn from unigram^0.75, the learning rate
decaying linearly to `min_alpha`, rare words pruned by `min_count`. The update
(week1_*/lib/embeddings.py) is a few gathers, two small batched products and two sparse row
updates (`index_add_` / `.at[].add`): gradients touch only the rows of the words in the batch.

Where gensim (like word2vec.c) updates one (word, context) pair at a time on a CPU thread, this
lab updates `batch_size` centre words at once, all gradients taken at the same weights and
summed into the rows: that is what a GPU needs, and on a CPU it replaces gensim's C loop by a few
large array operations. By default the negatives are shared by a window (Ji et al. 2016,
HogBatch), each weighted by the number of contexts it stands against: the same expected loss
from one draw instead of one per pair, several times fewer rows to update, and a noisier
gradient; `--negatives=pair` draws them per pair as gensim does (compare the two rows of
scores: the price of sharing is visible, and so is its speed).

- `--model=glove`: GloVe (Pennington et al. 2014) fits w_i . w~_j + b_i + b~_j to log X_ij on
  the co-occurrence counts X (pairs within `window`, weighted 1/distance), weighted by
  f(X) = min(1, (X/x_max)^0.75), with glove.c's AdaGrad; the vectors are W + W~. The defaults
  (x_max 10, 15 passes) are glove.c's demo settings for a small corpus; the paper's x_max = 100
  is for billions of words. GloVe needs many co-occurrences per word: on a million words
  it trails skip-gram.
- `--model=fasttext`: skip-gram whose input vector is the mean of the word's vector and the
  vectors of its character n-grams (3-6 characters of "<word>", hashed into `bucket` buckets
  exactly as gensim and fastText hash them), so a word never seen still gets a vector from its
  n-grams (Bojanowski et al. 2017).

How to read the results
-----------------------
- The table: words/s (corpus words x epochs / training seconds; for GloVe, corpus words over
  the counting and training time), the ratio to gensim's one-worker speed measured in the same
  run, Spearman rho on WordSim353 (relatedness) and SimLex-999 (similarity), and 3CosAdd
  accuracy on Google's analogies, all on the pairs and questions the vocabulary covers
  (scored as gensim's evaluate_word_pairs / evaluate_word_analogies score them; the parity
  tests check they agree). On a million words of Shakespeare these scores are low for every
  implementation: compare ours with gensim's, not with published numbers from billions of words.
- Two gensim runs with the same settings (one worker, all cores) give the reference and show
  the noise: two runs of the same algorithm differ by a few hundredths of rho.
- Nearest neighbours of the probe words: names near names, titles near titles.
- FastText: neighbours of words that are not in the vocabulary, ours next to gensim's.
- The torch update runs on `threads` CPU threads (default 1): on a busy machine torch's OpenMP
  threads spin against each other and a batch runs many times slower.

The parity tests compare JAX and torch step by step from the same matrices and batches (F32),
check the pipeline against gensim's own formulas (subsampling, negative table, n-gram hashes),
and check each update against the gradient of its loss.

Run it:  week1 run word2vec --framework torch            (or jax; --model=cbow|glove|fasttext,
         week1 run word2vec --framework jax --corpus=wiki  --corpus=wiki|both, --reference=false)
         week1 run word2vec --framework torch --compile    (torch.compile'd update)
         week1 bench word2vec
         week1 parity word2vec
         week1 compare word2vec [--quick] [--model=...]
The vectors are saved in the run folder as vectors.txt and vectors.bin (word2vec formats that
gensim's KeyedVectors.load_word2vec_format reads); the embedding_viz and pretrained_embeddings
labs take them with --vectors=PATH.

`week1 compare word2vec` trains the model in JAX, torch and torch.compile from the same matrices
through the same batches (every 20th sentence held out), logging every update's loss: the curves
lie on each other and the difference panel stays near float32 rounding; the held-out loss is
measured at the start and the end (the training loop has no hook in between).

History: docs/history.md#mikolov-2013, #pennington-2014, #bojanowski-2017
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from week1 import report
from week1.comparison import Case, Curves
from week1.config import Range, require, validate
from week1.data import embeddings, vectors, words
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

MODELS = embeddings.MODELS


@dataclasses.dataclass(frozen=True)
class Config:
    model: str = "sgns"  # sgns | cbow | glove | fasttext
    corpus: str = "shakespeare"  # shakespeare | wiki | both
    max_words: int = 0  # train on the corpus's first N words only (0: all of it)
    vector_size: int = 100
    window: int = 5  # largest distance of a context word (GloVe: of a co-occurrence)
    negative: int = 5  # negative words per window (or per pair)
    negatives: str = "window"  # skip-gram, FastText: "window" (shared, HogBatch) or "pair"
    min_count: int = 5  # words seen fewer times are dropped
    sample: float = 1e-3  # subsampling threshold (0: keep every word)
    epochs: int = 5  # passes over the corpus (sgns, cbow, fasttext)
    alpha: float = 0.025  # initial learning rate, falling linearly to min_alpha
    min_alpha: float = 1e-4
    seed: int = 0
    batch_size: int = 1024  # centre words per update (GloVe: co-occurrence entries)
    min_n: int = 3  # FastText: shortest character n-gram
    max_n: int = 6  # FastText: longest character n-gram
    bucket: int = 2_000_000  # FastText: hash buckets of the n-grams (gensim's default)
    glove_epochs: int = 15  # GloVe: passes over the co-occurrence entries (glove.c's demo)
    glove_alpha: float = 0.05  # GloVe: AdaGrad's learning rate
    x_max: float = 10.0  # GloVe: counts above x_max get full weight (the paper: 100 on 6B words)
    power: float = 0.75  # GloVe: weight f(x) = (x / x_max)^power below x_max
    threads: int = 1  # torch's CPU threads (0: torch's default)
    log_every: int = 100  # updates between logged losses (each log syncs the device)
    reference: bool = True  # also train gensim with these settings (1 worker, all cores)
    probes: str = "king,love,death,france,good,night"  # words whose neighbours are shown
    oov_probes: str = "kingliness,lovesick,deathward,frenchwoman"  # FastText: unseen words

    RANGES = {
        "vector_size": Range(1, 4096),
        "window": Range(1, 100),
        "negative": Range(1, 100),
        "min_count": Range(1),
        "sample": Range(0, 1),
        "epochs": Range(1, 1000),
        "alpha": Range(0, 10, low_open=True),
        "min_alpha": Range(0, 10),
        "batch_size": Range(1, 1 << 20),
        "min_n": Range(1, 20),
        "max_n": Range(1, 20),
        "bucket": Range(1, 1 << 31),
        "glove_epochs": Range(1, 1000),
        "glove_alpha": Range(0, 10, low_open=True),
        "x_max": Range(0, low_open=True),
        "power": Range(0, 10),
        "threads": Range(0, 1024),
        "log_every": Range(1),
    }

    def check(self) -> None:
        require(self.model in MODELS, f"model={self.model!r}: allowed: {', '.join(MODELS)}")
        require(
            self.corpus in words.NAMES, f"corpus={self.corpus!r}: allowed: {', '.join(words.NAMES)}"
        )
        require(
            self.min_alpha <= self.alpha,
            f"min_alpha={self.min_alpha}: must be <= alpha={self.alpha}",
        )
        require(self.min_n <= self.max_n, f"min_n={self.min_n}: must be <= max_n={self.max_n}")
        require(
            self.negatives in embeddings.NEGATIVES,
            f"negatives={self.negatives!r}: allowed: {', '.join(embeddings.NEGATIVES)}",
        )


def word2vec_config(*, sg: int, **settings) -> Config:
    """The Config of the `train(sentences, ...)` interface (gensim's names): sg=1 skip-gram,
    sg=0 CBOW; the run-only parts (gensim reference, probes) off."""
    require(sg in (0, 1), f"sg={sg}: must be 0 (CBOW) or 1 (skip-gram)")
    cfg = Config(model="sgns" if sg else "cbow", reference=False, **settings)
    validate(cfg)
    return cfg


def load_sentences(cfg: Config) -> list[list[str]]:
    return words.sentences(cfg.corpus, cfg.max_words)


# ---------------------------------------------------------------------------------------------
# `week1 compare word2vec`: JAX and torch from the same matrices through the same batches

COMPARE_QUICK = {"max_words": 200_000, "epochs": 2}
COMPARE_TEST = {"max_words": 30_000, "epochs": 1, "vector_size": 32, "batch_size": 256}
HELDOUT_EVERY = 20  # a compare run holds out every 20th sentence from training


def compare_cases(cfg: Config) -> list[Case]:
    """One case, the configured model (its name is the case's): every update's loss per pair
    (F32, thousands of sparse updates whose rows are summed in each framework's order:
    TRAJECTORY); its metric is the loss on held-out sentences."""
    return [Case(cfg.model, "held-out loss", TRAJECTORY)]


def split_heldout(sentences: list) -> tuple[list, list]:
    """(training sentences, held-out sentences): every HELDOUT_EVERY-th sentence held out."""
    held = set(range(HELDOUT_EVERY - 1, len(sentences), HELDOUT_EVERY))
    return (
        [s for i, s in enumerate(sentences) if i not in held],
        [sentences[i] for i in sorted(held)],
    )


def heldout_batches(s: embeddings.Setup, held: list, cfg: embeddings.Settings) -> list:
    """The held-out sentences as batches of the training objective: the training vocabulary,
    its subsampling, reach and negatives drawn once from (seed, epoch 0); for GloVe the entries
    of their own co-occurrence counts. The same numpy batches for both frameworks."""
    corpus = embeddings.encode(held, s.vocab)
    cooc = None
    if cfg.model == "glove":
        cooc = embeddings.cooccurrence(corpus, len(s.vocab), cfg.window)
    return list(embeddings.batches(dataclasses.replace(s, corpus=corpus, cooc=cooc), cfg, 0))


def mean_loss(batches: list, batch_loss) -> float:
    """The loss per scored pair (GloVe: per entry) over `batches`, as training logs it;
    batch_loss(batch) -> the batch's summed loss (a float)."""
    total = sum(batch_loss(b) for b in batches)
    return total / max(sum(embeddings.pairs_of(b) for b in batches), 1.0)


class UpdateClock:
    """fit's `log` with log_every=1: the time each update's loss arrived (synced), so a compare
    run measures its speed without a second training loop."""

    def __init__(self):
        self.start, self.times = time.perf_counter(), []

    def log(self, step: int, **metrics) -> None:
        self.times.append(time.perf_counter())

    def curves(self, trained: embeddings.Trained, evals: list[float]) -> Curves:
        """The run's Curves: every update's loss, `evals` (held-out losses) at the start and
        the end; the first step from fit's call to the first loss, setup excluded (drawing the
        first epoch's windows, compilation, one update)."""
        t, history = self.times, trained.history
        return Curves(
            steps=list(history.steps),
            train_loss=list(history.train_loss),
            eval_steps=[0, len(history.steps)],
            evals=evals,
            first_step_s=t[0] - self.start - trained.setup.seconds,
            steps_per_s=(len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else float("nan"),
        )


def prepare(out_dir=None) -> list:
    """`week1 prepare word2vec`: tokenise both corpora and copy the evaluation files into the
    cache (carry it to a GPU box without gensim; run there with --reference=false)."""
    return words.prepare(out_dir) + vectors.prepare_eval(out_dir)


# ---------------------------------------------------------------------------------------------
# The gensim reference and the report


@dataclasses.dataclass(frozen=True, eq=False)
class Reference:
    name: str
    words_per_s: float
    wv: vectors.WordVectors
    model: object  # the gensim model (FastText's answers unseen words)


def gensim_reference(sentences, cfg: Config, workers: int) -> Reference:
    """gensim with the same settings (GloVe has none in gensim: skip-gram stands in), timed
    over train() alone, as ours is over its training loop."""
    from gensim.models import FastText, Word2Vec

    kind = FastText if cfg.model == "fasttext" else Word2Vec
    extra = (
        {"min_n": cfg.min_n, "max_n": cfg.max_n, "bucket": cfg.bucket} if kind is FastText else {}
    )
    model = kind(
        vector_size=cfg.vector_size,
        window=cfg.window,
        negative=cfg.negative,
        min_count=cfg.min_count,
        sample=cfg.sample,
        epochs=cfg.epochs,
        alpha=cfg.alpha,
        min_alpha=cfg.min_alpha,
        sg=0 if cfg.model == "cbow" else 1,
        hs=0,
        seed=cfg.seed,
        workers=workers,
        **extra,
    )
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=cfg.epochs)
    seconds = time.perf_counter() - start
    raw = sum(len(s) for s in sentences)
    label = "gensim " + ("sgns " if cfg.model == "glove" else "")
    name = f"{label}{workers} worker{'s' if workers > 1 else ''}"
    wv = vectors.WordVectors([str(w) for w in model.wv.index_to_key], model.wv.vectors)
    return Reference(name, raw * cfg.epochs / seconds, wv, model)


def references(sentences, cfg: Config) -> list[Reference]:
    """gensim at one worker and at all cores (one worker only on a one-core machine)."""
    if not cfg.reference:
        return []
    cores = os.cpu_count() or 1
    return [gensim_reference(sentences, cfg, w) for w in sorted({1, cores})]


def _probe_words(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def report_run(run, cfg: Config, sentences, trained: embeddings.Trained, framework: str) -> dict:
    """Save the vectors, score them next to gensim's, print the tables, plot the loss; the
    run's summary."""
    vectors.save_word2vec_format(run.path("vectors.txt"), trained.words, trained.vectors)
    vectors.save_word2vec_format(
        run.path("vectors.bin"), trained.words, trained.vectors, binary=True
    )
    ours = vectors.WordVectors(trained.words, trained.vectors)
    refs = references(sentences, cfg)
    name = f"{framework} {cfg.model}"
    scored = [(name, trained.words_per_s(cfg), ours)] + [
        (r.name, r.words_per_s, r.wv) for r in refs
    ]
    base = refs[0].words_per_s if refs else None
    rows, summary = [], {}
    for label, speed, wv in scored:
        scores = vectors.evaluate(wv)
        ratio = speed / base if base else float("nan")
        rows.append((label, speed, ratio, scores["ws353"], scores["simlex"], scores["analogies"]))
        key = "ours" if label == name else label.replace(" ", "_")
        summary.update(
            {
                f"{key}_words_per_s": speed,
                f"{key}_ws353": scores["ws353"],
                f"{key}_simlex": scores["simlex"],
                f"{key}_analogies": scores["analogies"],
            }
        )
    corpus = f"{cfg.corpus}: {trained.setup.corpus.raw_words:,} words, vocabulary {len(ours):,}"
    report.table(
        f"{cfg.model} on {corpus}",
        ["run", "words/s", "x gensim", "WS353 rho", "SimLex rho", "analogies"],
        rows,
    )
    summary["x_gensim"] = rows[0][2]
    summary["vocabulary"] = len(ours)
    report_neighbours(ours, [(r.name, r.wv) for r in refs[:1]], _probe_words(cfg.probes))
    if cfg.model == "fasttext":
        report_oov(trained, cfg, refs[:1])
    history = trained.history
    if history.logged_steps:
        report.plot_lines(
            run.path("loss.png"),
            {name: (history.logged_steps, history.logged_loss)},
            title=f"{cfg.model} on {cfg.corpus}: training loss",
            xlabel="update",
            ylabel="loss per pair" if cfg.model != "glove" else "loss per entry",
        )
    summary["final_loss"] = history.logged_loss[-1] if history.logged_loss else float("nan")
    return summary


def report_neighbours(ours: vectors.WordVectors, others: list, probes: list[str]) -> None:
    found = ours.nearest(probes, topn=5)
    theirs = {name: wv.nearest(probes, topn=5) for name, wv in others}
    rows = []
    for word, near in found.items():
        rows.append((word, "ours", ", ".join(w for w, _ in near)))
        for name, table in theirs.items():
            rows.append(("", name, ", ".join(w for w, _ in table.get(word, []))))
    report.table("nearest neighbours (cosine)", ["word", "vectors", "5 nearest"], rows)


def report_oov(trained: embeddings.Trained, cfg: Config, refs: list) -> None:
    """FastText: neighbours of unseen words, from their n-grams alone."""
    ours = vectors.WordVectors(trained.words, trained.vectors)
    rows = []
    for word in _probe_words(cfg.oov_probes):
        seen = "in vocabulary" if word in ours else "unseen"
        v = (
            ours[word]
            if word in ours
            else embeddings.oov_vector(trained.setup, trained.weights, word)
        )
        sims = ours.unit @ (v / max(np.linalg.norm(v), 1e-12))  # (V,)
        best = [ours.words[i] for i in np.argsort(-sims)[:5]]
        rows.append((word, seen, "ours", ", ".join(best)))
        for ref in refs:
            near = ref.model.wv.most_similar(word, topn=5)
            rows.append(("", "", ref.name, ", ".join(str(w) for w, _ in near)))
    report.table(
        "FastText: words from their character n-grams", ["word", "", "vectors", "5 nearest"], rows
    )


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "negative_sampling_loss",
        hints=(
            (
                "h is the (weighted) mean of the input rows, f = h . u the score of each output "
                "word; the loss is a sum of -log sigma(+f) for the true word and -log sigma(-f) for"
                " each negative."
            ),
            (
                "h = einsum('bs,bsc->bc', in_weights, w_in[inputs]); f = einsum('bc,btc->bt', h, "
                "w_out[outputs]); L = -sum(out_weights * logsigmoid(where(labels > 0, f, -f)))."
            ),
        ),
        jax=Part(
            "week1_jax/lib/embeddings.py::negative_sampling_loss",
            "test_word2vec.py::test_jax_loss_and_gradients_equal_torch[sgns]",
        ),
        torch=Part(
            "week1_torch/lib/embeddings.py::negative_sampling_loss",
            "test_word2vec.py::test_jax_loss_and_gradients_equal_torch[sgns]",
        ),
    ),
    Exercise(
        "negative_sampling_update",
        hints=(
            (
                "word2vec.c's rule is SGD on that loss: g = out_weights * (label - sigma(f)) per "
                "output; both matrices move by +lr times their part of g."
            ),
            (
                "w_out rows += lr * g h (scatter-add over outputs); every input row with weight != "
                "0 += lr * sum_t g u_t (the same dh for all of a row's inputs). Compute dh before "
                "touching w_out."
            ),
            (
                "Return the loss before the step, -sum(out_weights * logsigmoid(where(labels > 0, "
                "f, -f))). A flipped sign on the negatives' term makes them attract, not repel."
            ),
        ),
        jax=Part(
            "week1_jax/lib/embeddings.py::negative_sampling_update",
            "test_word2vec.py::test_jax_and_torch_take_the_same_steps[sgns]",
        ),
        torch=Part(
            "week1_torch/lib/embeddings.py::negative_sampling_update",
            "test_word2vec.py::test_negative_sampling_update_is_sgd_on_its_loss[sgns]",
        ),
    ),
)
