"""The data side of the static embedding models (word2vec skip-gram and CBOW, FastText, GloVe),
in numpy: what both frameworks' updates consume, byte-identical for a seed.

word2vec (Mikolov et al. 2013; gensim's defaults and names)
-----------------------------------------------------------
- vocabulary: words seen at least `min_count` times, most frequent first (ties: first seen);
  other words are dropped from the sentences before anything else, as gensim does.
- subsampling: each occurrence of word w is kept with probability
      p(w) = (sqrt(c(w) / t) + 1) * t / c(w),   t = sample * (total count of the vocabulary)
  (gensim's formula, capped at 1): frequent words ("the", "and") mostly go, rare ones stay.
- window: per kept centre word, a reach r drawn uniformly from 1..window (gensim's
  `reduced_window`); its contexts are the kept words at distance <= r in the same sentence.
  Near words are thus seen more often than far ones (weight (window - d + 1) / window).
- negatives: drawn from the unigram distribution raised to 0.75, P(w) ~ c(w)^0.75 (gensim's
  cum_table holds the same distribution), with an alias table (two look-ups per draw).
- learning rate: alpha decays linearly to min_alpha over all epochs, by the position in the
  corpus of each batch's first centre.

Every random choice of epoch e comes from numpy's Generator seeded with (seed, e): the batches of
an epoch depend on nothing else, and are the same arrays for JAX and torch.

One batch layout for the three negative-sampling models (`Batch`): an input vector per row
    h_b = sum_s in_weights[b, s] * W_in[inputs[b, s]]                          (B, C)
scored against output rows, f_bt = h_b . W_out[outputs[b, t]], with a logistic loss
    L = - sum_bt out_weights[b, t] * log sigmoid((2 labels[b, t] - 1) f_bt)
    sgns      input: the centre word;            outputs: its contexts (label 1, weight 1) and
              negatives (label 0): with negatives="window", `negative` words shared by the
              whole window, each weighted by the number of contexts it stands against (the
              HogBatch idea of Ji et al. 2016: one draw per window instead of one per pair,
              the same expected loss, a noisier estimate of it); with negatives="pair",
              `negative` words for every (centre, context) pair, as word2vec.c and gensim draw
              them (K times more output rows)
    cbow      input: the mean of the contexts;   outputs: the centre (1) and the negatives (0)
    fasttext  input: the mean of the centre word's vector and its character n-gram vectors
              (rows V.. of W_in); outputs as sgns (Bojanowski et al. 2017)
A negative that equals the positive it stands against counts nothing (gensim skips it).

GloVe (Pennington et al. 2014): the co-occurrence counts X_ij within `window` words (each pair
weighted 1/distance, both directions, as glove's cooccur.c), and batches of (i, j) entries with
f(X_ij) = min(1, (X_ij / x_max)^power) and log X_ij, shuffled per epoch.

Training (what both frameworks' loops, week1_*/lib/embeddings.fit, share): `Settings` (gensim's
names), `setup` (vocabulary, encoded corpus, tables, n-grams or counts, built once),
`init_weights` (the seeded starting matrices, numpy), `stream` (every epoch's batches, prepared
on a background thread), `History` (what the loop records, and the means the lab logs),
`export` (the word vectors at the end), `Trained` (what fit returns).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import queue
import threading
import time
from collections.abc import Iterable, Iterator

import numpy as np

from week1 import loop
from week1.config import require

NEGATIVE_SAMPLING = ("sgns", "cbow", "fasttext")  # the models of Batch
NEGATIVES = ("window", "pair")  # how skip-gram draws its negatives
GRAM_BAND = 16  # FastText batches group words whose n-gram counts fall in one band this wide
MODELS = (*NEGATIVE_SAMPLING, "glove")  # GloVe has its own batches


@dataclasses.dataclass(frozen=True, eq=False)
class Vocab:
    words: list  # index -> word, most frequent first
    counts: np.ndarray  # (V,) int64 corpus counts

    @functools.cached_property
    def index(self) -> dict:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)


def build_vocab(sentences, min_count: int) -> Vocab:
    """Words seen >= min_count times, by decreasing count (ties: the first seen first)."""
    counts = collections.Counter(w for sentence in sentences for w in sentence)  # insertion order
    kept = [(w, c) for w, c in counts.items() if c >= min_count]
    kept.sort(key=lambda wc: -wc[1])  # stable: ties keep first-seen order
    return Vocab([w for w, _ in kept], np.array([c for _, c in kept], dtype=np.int64))


@dataclasses.dataclass(frozen=True, eq=False)
class Encoded:
    ids: np.ndarray  # (N,) int32 vocabulary ids of the corpus, unknown words dropped
    sentence: np.ndarray  # (N,) int32 the sentence each id belongs to
    raw_words: int  # words before dropping the unknown ones (what words/s counts)


def encode(sentences, vocab: Vocab) -> Encoded:
    index = vocab.index
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)  # (S,)
    raw = int(lengths.sum())
    ids = np.fromiter((index.get(w, -1) for s in sentences for w in s), np.int32, raw)  # (R,)
    sentence = np.repeat(np.arange(len(sentences), dtype=np.int32), lengths)  # (R,)
    known = ids >= 0
    return Encoded(ids[known], sentence[known], raw)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """(V,) the probability that one occurrence survives subsampling (1 with sample=0)."""
    if sample <= 0:
        return np.ones(len(counts))
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)


def unigram_probabilities(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """(V,) P(w) = c(w)^power / sum of c^power: the distribution of the negatives."""
    weights = counts.astype(np.float64) ** power
    return weights / weights.sum()


@dataclasses.dataclass(frozen=True, eq=False)
class AliasTable:
    """Walker's alias method (Vose's construction): draw a column i uniformly, keep it with
    probability keep[i], else take alias[i]. Two look-ups per draw in V-sized tables, where
    inverting the cumulative distribution (word2vec.c's and gensim's table) costs a binary
    search each."""

    keep: np.ndarray  # (V,) float64
    alias: np.ndarray  # (V,) int32

    def probabilities(self) -> np.ndarray:
        """(V,) the distribution the table draws from (what it was built from, up to rounding)."""
        V = len(self.keep)
        p = self.keep.copy()
        np.add.at(p, self.alias, 1.0 - self.keep)
        return p / V


def unigram_table(counts: np.ndarray, power: float = 0.75) -> AliasTable:
    """The alias table of unigram_probabilities(counts, power)."""
    scaled = unigram_probabilities(counts, power) * len(counts)  # mean 1
    keep, alias = np.ones(len(counts)), np.arange(len(counts), dtype=np.int32)
    small = [i for i, x in enumerate(scaled) if x < 1.0]
    large = [i for i, x in enumerate(scaled) if x >= 1.0]
    while small and large:  # each column: one small entry topped up by one large one
        s, g = small.pop(), large.pop()
        keep[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return AliasTable(keep, alias)  # columns left over keep themselves (rounding)


def draw_negatives(rng: np.random.Generator, table: AliasTable, shape) -> np.ndarray:
    """Word ids drawn from the table's distribution."""
    column = rng.integers(0, len(table.keep), shape)
    kept = rng.random(shape) < table.keep[column]
    return np.where(kept, column, table.alias[column]).astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Windows:
    """One epoch of centre words, in corpus order, with their contexts and negatives."""

    centres: np.ndarray  # (M,) int32
    contexts: np.ndarray  # (M, 2W) int32 word ids at offsets -W..-1, 1..W; 0 where not valid
    valid: np.ndarray  # (M, 2W) bool
    reach: np.ndarray  # (M,) int32 the drawn reach r: only offsets -r..r can be valid
    negatives: np.ndarray  # (M, K) int32 per window, or (M, 2W, K) per (centre, context) pair
    position: np.ndarray  # (M,) int64 index of each centre in Encoded.ids

    def __len__(self) -> int:
        return len(self.centres)


def epoch_windows(
    corpus: Encoded,
    keep: np.ndarray,
    table: AliasTable,
    *,
    window: int,
    negative: int,
    seed: int,
    epoch: int,
    per_pair: bool = False,
) -> Windows:
    """Subsample, draw each centre's reach, gather its contexts, draw its negatives (per window,
    or per context slot with per_pair): epoch `epoch`'s windows, from numpy's Generator seeded
    with (seed, epoch) alone."""
    rng = np.random.default_rng([seed, epoch])
    survives = rng.random(len(corpus.ids)) < keep[corpus.ids]  # (N,)
    position = np.flatnonzero(survives)  # (M,)
    ids, sentence = corpus.ids[position], corpus.sentence[position]  # (M,), (M,)
    reach = (window - rng.integers(0, window, len(ids))).astype(np.int32)  # (M,) in 1..window
    offsets = np.r_[-window:0, 1 : window + 1]  # (2W,)
    # Both ends padded with `window` words of sentence -1, which no centre belongs to.
    edge = np.full(window, -1, np.int32)
    padded_ids, padded_sentence = np.r_[edge, ids, edge], np.r_[edge, sentence, edge]
    at = np.arange(len(ids), dtype=np.int32)[:, None] + (offsets + window).astype(np.int32)
    valid = np.abs(offsets)[None, :] <= reach[:, None]  # (M, 2W)
    valid &= padded_sentence[at] == sentence[:, None]
    has_context = valid.any(axis=1)  # a one-word sentence has nothing to predict
    valid, at = valid[has_context], at[has_context]
    contexts = np.where(valid, padded_ids[at], 0).astype(np.int32)  # (M', 2W)
    centres = ids[has_context]
    shape = (len(centres), 2 * window, negative) if per_pair else (len(centres), negative)
    negatives = draw_negatives(rng, table, shape)  # (M', K) or (M', 2W, K)
    return Windows(centres, contexts, valid, reach[has_context], negatives, position[has_context])


# ---------------------------------------------------------------------------------------------
# FastText's character n-grams


def ngrams_bytes(word: str, min_n: int, max_n: int) -> list[bytes]:
    """The UTF-8 n-grams (n counted in characters) of "<word>", as fastText and gensim's
    compute_ngrams_bytes take them (single boundary characters "<" and ">" excluded)."""
    data = f"<{word}>".encode()
    out = []
    for i in range(len(data)):
        if data[i] & 0xC0 == 0x80:  # inside a multi-byte character
            continue
        j, n = i, 1
        while j < len(data) and n <= max_n:
            j += 1
            while j < len(data) and data[j] & 0xC0 == 0x80:
                j += 1
            if n >= min_n and not (n == 1 and (i == 0 or j == len(data))):
                out.append(data[i:j])
            n += 1
    return out


def ft_hash(data: bytes) -> int:
    """fastText's 32-bit FNV-1a over the bytes read as *signed* chars (gensim's ft_hash_bytes)."""
    h = 2166136261
    for b in data:
        h = ((h ^ ((b - 256) & 0xFFFFFFFF if b >= 128 else b)) * 16777619) & 0xFFFFFFFF
    return h


def ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> list[int]:
    """gensim's ft_ngram_hashes: each n-gram's bucket (duplicates kept)."""
    return [ft_hash(g) % bucket for g in ngrams_bytes(word, min_n, max_n)]


@dataclasses.dataclass(frozen=True, eq=False)
class Subwords:
    """The vocabulary's n-grams as rows of the input matrix: rows 0..V-1 are the words, row
    V + k is the k-th distinct bucket that some vocabulary word uses. Buckets no vocabulary word
    uses are never trained, so they get no row (gensim allocates all `bucket` of them)."""

    rows: np.ndarray  # (V, G) int32 input rows of each word's n-grams, 0 as padding
    count: np.ndarray  # (V,) int32 n-grams per word
    buckets: np.ndarray  # (U,) int64 the bucket of row V + k
    min_n: int
    max_n: int
    bucket: int

    @functools.cached_property
    def row_of_bucket(self) -> dict:
        V = len(self.rows)
        return {int(b): V + k for k, b in enumerate(self.buckets)}

    def oov_rows(self, word: str) -> list[int]:
        """Input rows of an unseen word's n-grams that were trained (the others are zero)."""
        found = self.row_of_bucket
        buckets = ngram_buckets(word, self.min_n, self.max_n, self.bucket)
        return [found[b] for b in buckets if b in found]


def subwords(words: list, min_n: int, max_n: int, bucket: int) -> Subwords:
    per_word = [ngram_buckets(w, min_n, max_n, bucket) for w in words]
    count = np.array([len(b) for b in per_word], dtype=np.int32)  # (V,)
    flat = np.fromiter((b for bs in per_word for b in bs), np.int64, int(count.sum()))
    buckets, compact = np.unique(flat, return_inverse=True)  # (U,), (sum count,)
    rows = np.zeros((len(words), max(int(count.max(initial=0)), 1)), np.int32)  # (V, G)
    mask = np.arange(rows.shape[1])[None, :] < count[:, None]
    rows[mask] = len(words) + compact  # row-major fill matches the flat order
    return Subwords(rows, count, buckets, min_n, max_n, bucket)


# ---------------------------------------------------------------------------------------------
# Batches of the negative-sampling models


@dataclasses.dataclass(frozen=True, eq=False)
class Batch:
    inputs: np.ndarray  # (B, S) int32 rows of W_in
    in_weights: np.ndarray  # (B, S) float32 how each input row mixes into h (0: padding)
    outputs: np.ndarray  # (B, T) int32 rows of W_out
    labels: np.ndarray  # (B, T) float32 1 for a true context, 0 for a negative
    out_weights: np.ndarray  # (B, T) float32 pairs this entry stands for (0: padding)
    lr: float  # learning rate of this step
    centres: int  # real (unpadded) rows

    def arrays(self) -> tuple:
        """The five arrays in the update functions' argument order."""
        return self.inputs, self.in_weights, self.outputs, self.labels, self.out_weights

    @property
    def pairs(self) -> float:
        """(input, output) pairs scored: the sum of the positive entries' weights."""
        return float((self.out_weights * self.labels).sum())


def linear_lr(alpha: float, min_alpha: float, progress: float) -> float:
    """gensim's learning rate: alpha at progress 0 falling linearly to min_alpha at 1."""
    return alpha - (alpha - min_alpha) * progress


def _skipgram_outputs(contexts, valid, negatives):
    """contexts, valid (B, 2r); negatives (B, K) per window or (B, 2r, K) per pair."""
    if negatives.ndim == 3:  # each negative stands against its own pair, unless equal to it
        weights = valid[:, :, None] & (negatives != contexts[:, :, None])  # (B, 2r, K)
        negatives, weights = (
            negatives.reshape(len(negatives), -1),
            weights.reshape(len(weights), -1),
        )
    else:  # each negative stands against every context of its window, except one equal to it
        n = valid.sum(axis=1)  # (B,) contexts in each window
        clashes = (valid[:, :, None] & (contexts[:, :, None] == negatives[:, None, :])).sum(axis=1)
        weights = n[:, None] - clashes  # (B, K)
    outputs = np.concatenate([contexts, negatives], axis=1)  # (B, 2r + K or 2r * (1 + K))
    labels = np.concatenate([np.ones_like(contexts), np.zeros_like(negatives)], axis=1)
    return outputs, labels, np.concatenate([valid, weights], axis=1)


def make_batch(
    model: str,
    w: Windows,
    rows: np.ndarray,
    reach: int,
    lr: float,
    sub: Subwords | None = None,
    gram_columns: int | None = None,
) -> Batch:
    """Windows `rows` (all of reach <= `reach`) as one update of `model`, with the context
    columns of offsets -reach..reach only, and for FastText the first `gram_columns` n-gram
    columns (None: all; enough for the centres' n-grams) (see the module docstring for the
    layouts)."""
    W = w.contexts.shape[1] // 2
    near = slice(W - reach, W + reach)  # offsets -reach..-1, 1..reach
    centres, negatives = w.centres[rows], w.negatives[rows]  # (B,), (B, K) or (B, 2W, K)
    contexts, valid = w.contexts[rows, near], w.valid[rows, near]  # (B, 2r)
    if negatives.ndim == 3:
        negatives = negatives[:, near]  # (B, 2r, K)
    if model == "cbow":
        inputs = contexts
        in_weights = valid / valid.sum(axis=1, keepdims=True)  # the mean of the contexts
        outputs = np.concatenate([centres[:, None], negatives], axis=1)  # (B, 1+K)
        labels = np.zeros(outputs.shape)
        labels[:, 0] = 1
        out_weights = np.concatenate(
            [np.ones((len(centres), 1), bool), negatives != centres[:, None]], axis=1
        )
    else:
        outputs, labels, out_weights = _skipgram_outputs(contexts, valid, negatives)
        if model == "fasttext":
            grams = sub.rows[centres, :gram_columns]  # (B, G)
            count = sub.count[centres][:, None]  # (B, 1)
            inputs = np.concatenate([centres[:, None], grams], axis=1)  # (B, 1+G)
            real = np.concatenate(
                [np.ones_like(count, bool), np.arange(grams.shape[1])[None, :] < count], axis=1
            )
            in_weights = real / (1.0 + count)  # the mean of the word and its n-grams
        else:
            inputs, in_weights = centres[:, None], np.ones((len(centres), 1))
    return Batch(
        inputs.astype(np.int32),
        in_weights.astype(np.float32),
        outputs.astype(np.int32),
        labels.astype(np.float32),
        out_weights.astype(np.float32),
        float(lr),
        len(centres),
    )


def pad(batch: Batch, size: int) -> Batch:
    """`batch` with zero-weight rows appended up to `size` rows (few shapes per run: JAX traces
    its update once per shape)."""
    extra = size - batch.centres
    if extra <= 0:
        return batch
    grow = lambda a: np.concatenate([a, np.zeros((extra, a.shape[1]), a.dtype)])
    names = ("inputs", "in_weights", "outputs", "labels", "out_weights")
    return dataclasses.replace(batch, **{name: grow(getattr(batch, name)) for name in names})


def epoch_batches(
    model: str,
    w: Windows,
    *,
    batch_size: int,
    epoch: int,
    epochs: int,
    corpus_len: int,
    alpha: float,
    min_alpha: float,
    sub: Subwords | None = None,
) -> Iterator[Batch]:
    """The epoch's windows, `batch_size` centres at a time, each batch holding centres of one
    reach r (so its rows carry 2r context columns, not 2 * window mostly empty ones: a
    quarter less work at window 5) and, for FastText, of one band of GRAM_BAND n-gram counts
    (so a batch of short words does not carry the columns of the longest word's n-grams). The
    batches come in the corpus order of their first centres, each with the learning rate at
    that position; a group's last batch is padded. JAX traces one update per batch shape:
    window shapes, times the n-gram bands for FastText."""
    reach = w.reach.astype(np.int64)
    band = np.zeros_like(reach)
    if model == "fasttext":
        band = -(-sub.count[w.centres].astype(np.int64) // GRAM_BAND)  # (M,) ceil(count / band)
    key = reach * (band.max(initial=0) + 1) + band  # (M,) one key per (reach, band)
    starts = []  # (corpus position, rows)
    for k in np.unique(key):
        rows = np.flatnonzero(key == k)
        starts += [
            (w.position[rows[i]], rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)
        ]
    starts.sort(key=lambda start: start[0])
    for position, rows in starts:
        lr = linear_lr(alpha, min_alpha, (epoch + position / corpus_len) / epochs)
        r, columns = int(reach[rows[0]]), int(band[rows[0]]) * GRAM_BAND or None
        yield pad(make_batch(model, w, rows, r, lr, sub, columns), batch_size)


def prefetch(items: Iterable, depth: int = 4) -> Iterator:
    """Yield `items`, produced up to `depth` ahead on a background thread: numpy prepares the
    next batches while the framework runs this one (both release the GIL in their kernels).
    An error in the producer is raised here; closing the generator stops the producer."""
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as error:  # handed to the consumer
            put((end, error))

    threading.Thread(target=produce, daemon=True).start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()


# ---------------------------------------------------------------------------------------------
# GloVe


@dataclasses.dataclass(frozen=True, eq=False)
class Cooccurrence:
    rows: np.ndarray  # (E,) int32 word i
    cols: np.ndarray  # (E,) int32 context word j
    counts: np.ndarray  # (E,) float64 X_ij, summed 1/distance


def cooccurrence(corpus: Encoded, vocab_size: int, window: int) -> Cooccurrence:
    """X_ij: for each pair of words at distance d <= window in one sentence, 1/d, both ways."""
    keys, weights = [], []
    for d in range(1, window + 1):
        same = corpus.sentence[d:] == corpus.sentence[:-d]  # (N-d,)
        left, right = corpus.ids[:-d][same].astype(np.int64), corpus.ids[d:][same]
        keys += [left * vocab_size + right, right * vocab_size + left]
        weights += [np.full(2 * len(left), 1.0 / d)]
    keys = np.concatenate(keys)
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(weights))
    rows, cols = np.divmod(unique, vocab_size)
    return Cooccurrence(rows.astype(np.int32), cols.astype(np.int32), counts)


@dataclasses.dataclass(frozen=True, eq=False)
class GloveBatch:
    rows: np.ndarray  # (B,) int32
    cols: np.ndarray  # (B,) int32
    weights: np.ndarray  # (B,) float32 f(X_ij); 0 on padding
    log_counts: np.ndarray  # (B,) float32 log X_ij; 0 on padding
    entries: int  # real (unpadded) entries

    def arrays(self) -> tuple:
        return self.rows, self.cols, self.weights, self.log_counts


def glove_weight(counts: np.ndarray, x_max: float, power: float) -> np.ndarray:
    """f(x) = (x / x_max)^power below x_max, 1 above: rare pairs count less, frequent ones are
    capped."""
    return np.minimum(1.0, (counts / x_max) ** power)


def glove_batches(
    co: Cooccurrence, *, batch_size: int, x_max: float, power: float, seed: int, epoch: int
) -> Iterator[GloveBatch]:
    """The co-occurrence entries in a fresh order (seeded by (seed, epoch)), `batch_size` at a
    time, the last batch padded with zero-weight entries."""
    order = np.random.default_rng([seed, epoch]).permutation(len(co.counts))
    weights = glove_weight(co.counts, x_max, power).astype(np.float32)
    logs = np.log(co.counts).astype(np.float32)
    for start in range(0, len(order), batch_size):
        take = order[start : start + batch_size]
        extra = batch_size - len(take)
        fill = lambda a, dtype: np.concatenate([a[take], np.zeros(extra, dtype)]).astype(dtype)
        yield GloveBatch(
            fill(co.rows, np.int32),
            fill(co.cols, np.int32),
            fill(weights, np.float32),
            fill(logs, np.float32),
            len(take),
        )


# ---------------------------------------------------------------------------------------------
# Training: settings, the prepared data, the starting matrices, the vectors at the end


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the pipeline and the training loops read (gensim's names and defaults). A lab's
    Config with fields of these names converts with Settings.of(cfg)."""

    model: str = "sgns"  # one of MODELS
    vector_size: int = 100
    window: int = 5
    negative: int = 5
    min_count: int = 5
    sample: float = 1e-3
    epochs: int = 5
    alpha: float = 0.025
    min_alpha: float = 1e-4
    seed: int = 0
    batch_size: int = 1024  # centre words per update (GloVe: co-occurrence entries)
    negatives: str = "window"  # "window": shared by a window; "pair": per (centre, context) pair
    min_n: int = 3
    max_n: int = 6
    bucket: int = 2_000_000
    glove_epochs: int = 15
    glove_alpha: float = 0.05
    x_max: float = 10.0
    power: float = 0.75
    threads: int = 1  # torch's CPU threads (0: torch's default)
    log_every: int = 100  # updates between logged losses

    @classmethod
    def of(cls, cfg) -> Settings:
        return cls(
            **{
                f.name: getattr(cfg, f.name)
                for f in dataclasses.fields(cls)
                if hasattr(cfg, f.name)
            }
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
    """Everything the training loop needs before its first step, built once from the corpus."""

    vocab: Vocab
    corpus: Encoded
    keep: np.ndarray  # (V,) subsampling keep probabilities
    table: AliasTable  # the negatives' unigram^0.75 distribution
    sub: Subwords | None  # FastText's n-gram rows
    cooc: Cooccurrence | None  # GloVe's counts
    seconds: float  # building it (GloVe's counting is part of its training time)

    @property
    def input_rows(self) -> int:
        """Rows of the input matrix: the words, then FastText's n-grams."""
        return len(self.vocab) + (len(self.sub.buckets) if self.sub is not None else 0)


def setup(sentences, cfg: Settings) -> Setup:
    start = time.perf_counter()
    vocab = build_vocab(sentences, cfg.min_count)
    require(len(vocab) >= 2, f"min_count={cfg.min_count}: fewer than 2 words are that frequent")
    corpus = encode(sentences, vocab)
    sub = cooc = None
    if cfg.model == "fasttext":
        sub = subwords(vocab.words, cfg.min_n, cfg.max_n, cfg.bucket)
    if cfg.model == "glove":
        cooc = cooccurrence(corpus, len(vocab), cfg.window)
    return Setup(
        vocab,
        corpus,
        keep_probabilities(vocab.counts, cfg.sample),
        unigram_table(vocab.counts),
        sub,
        cooc,
        time.perf_counter() - start,
    )


def init_weights(s: Setup, cfg: Settings) -> dict[str, np.ndarray]:
    """The starting matrices, seeded, the same numbers for both frameworks. word2vec's: input
    rows uniform in +-0.5 / vector_size, output rows zero; GloVe's (glove.c): every parameter
    uniform in +-0.5 / vector_size, AdaGrad's accumulators at 1, packed as glove.c packs them:
    w = [W b; W~ b~] (2V, C+1), word rows then context rows, the bias as the last column."""
    rng = np.random.default_rng([cfg.seed, 1 << 20])  # apart from the epochs' streams
    C, V = cfg.vector_size, len(s.vocab)
    uniform = lambda *shape: ((rng.random(shape) - 0.5) / C).astype(np.float32)
    if cfg.model == "glove":
        return {"w": uniform(2 * V, C + 1), "g": np.ones((2 * V, C + 1), np.float32)}
    return {"w_in": uniform(s.input_rows, C), "w_out": np.zeros((V, C), np.float32)}


def epochs(cfg: Settings) -> int:
    return cfg.glove_epochs if cfg.model == "glove" else cfg.epochs


def batches(s: Setup, cfg: Settings, epoch: int):
    """Epoch `epoch`'s batches (Batch, or GloveBatch for GloVe), from (seed, epoch)."""
    if cfg.model == "glove":
        return glove_batches(
            s.cooc,
            batch_size=cfg.batch_size,
            x_max=cfg.x_max,
            power=cfg.power,
            seed=cfg.seed,
            epoch=epoch,
        )
    w = epoch_windows(
        s.corpus,
        s.keep,
        s.table,
        window=cfg.window,
        negative=cfg.negative,
        seed=cfg.seed,
        epoch=epoch,
        per_pair=cfg.negatives == "pair" and cfg.model != "cbow",  # CBOW has one pair a window
    )
    return epoch_batches(
        cfg.model,
        w,
        batch_size=cfg.batch_size,
        epoch=epoch,
        epochs=cfg.epochs,
        corpus_len=len(s.corpus.ids),
        alpha=cfg.alpha,
        min_alpha=cfg.min_alpha,
        sub=s.sub,
    )


def stream(s: Setup, cfg: Settings):
    """All epochs' batches in order, prepared on a background thread (prefetch)."""
    return prefetch(b for epoch in range(epochs(cfg)) for b in batches(s, cfg, epoch))


def expected_steps(s: Setup, cfg: Settings) -> int:
    """About how many updates a run makes (the progress bar's total)."""
    if cfg.model == "glove":
        per_epoch = math.ceil(len(s.cooc.counts) / cfg.batch_size)
    else:
        kept = float(s.keep[s.corpus.ids].sum())
        per_epoch = math.ceil(kept / cfg.batch_size) + cfg.window  # a partial batch per reach
    return per_epoch * epochs(cfg)


def export(s: Setup, cfg: Settings, weights: dict[str, np.ndarray]) -> np.ndarray:
    """The word vectors (V, C) float32: word2vec's input rows; FastText's mean of each word's row
    and its n-gram rows (what gensim's FastText returns for a known word); GloVe's W + W~."""
    V = len(s.vocab)
    if cfg.model == "glove":
        w = weights["w"]
        return (w[:V, :-1] + w[V:, :-1]).astype(np.float32)
    w_in = weights["w_in"]
    if cfg.model != "fasttext":
        return np.ascontiguousarray(w_in[:V])
    real = np.arange(s.sub.rows.shape[1])[None, :] < s.sub.count[:, None]  # (V, G)
    grams = (w_in[s.sub.rows] * real[..., None]).sum(axis=1)  # (V, C)
    return ((w_in[:V] + grams) / (1.0 + s.sub.count[:, None])).astype(np.float32)


def oov_vector(s: Setup, weights: dict[str, np.ndarray], word: str) -> np.ndarray:
    """FastText's vector of a word outside the vocabulary: the sum of its trained n-gram rows
    over its number of n-grams (untrained buckets count as zero); zero if it has none."""
    rows = s.sub.oov_rows(word)
    total = len(ngram_buckets(word, s.sub.min_n, s.sub.max_n, s.sub.bucket))
    if not total:
        return np.zeros(weights["w_in"].shape[1], np.float32)
    return weights["w_in"][rows].sum(axis=0) / total


@dataclasses.dataclass
class History(loop.History):
    """The loop's History of a fit: each update's loss per scored pair (per entry for GloVe) in
    train_loss, its pairs in per_step["pairs"]. What the lab logs and plots is coarser: the mean
    loss per pair over every `log_every` updates (the last run of updates may be shorter)."""

    log_every: int = 1
    logged_steps: list = dataclasses.field(default_factory=list)
    logged_loss: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0  # training loop wall time (data preparation and compilation included)
    stopped: bool = False  # a stop was asked before the stream ended

    def add_train(self, step: int, loss: float, seconds: float, log=None, **extra) -> None:
        super().add_train(step, loss, seconds, **extra)  # no log: the lab logs runs of updates
        if step % self.log_every == 0:
            self.log_since_last(log)

    def log_since_last(self, log=None) -> None:
        """Log the mean loss per pair of the updates since the last logged one (if any)."""
        n = len(self.steps) - (self.logged_steps[-1] if self.logged_steps else 0)  # from step 1
        if n <= 0:
            return
        losses, pairs = self.train_loss[-n:], self.per_step["pairs"][-n:]
        mean = sum(loss * p for loss, p in zip(losses, pairs, strict=True)) / sum(pairs)
        self.logged_steps.append(self.steps[-1])
        self.logged_loss.append(mean)
        if log:
            log(self.steps[-1], loss=mean)


@dataclasses.dataclass(frozen=True, eq=False)
class Trained:
    words: list
    vectors: np.ndarray  # (V, C) float32
    weights: dict  # the final matrices, numpy
    setup: Setup
    history: History

    def words_per_s(self, cfg: Settings) -> float:
        """Corpus words x epochs per second of training (GloVe: corpus words per second of
        counting and training)."""
        raw = self.setup.corpus.raw_words
        if cfg.model == "glove":
            return raw / (self.setup.seconds + self.history.seconds)
        return raw * cfg.epochs / self.history.seconds


def pairs_of(batch) -> float:
    """What a batch's loss is averaged over: scored pairs (GloVe: real entries)."""
    return batch.pairs if isinstance(batch, Batch) else float(batch.entries)


def per_pair(sums: list[float], values: list[dict]) -> list[dict]:
    """fit's read: each update's summed loss (read off the device) over its pairs."""
    return [
        {"loss": total / value["pairs"], "pairs": value["pairs"]}
        for total, value in zip(sums, values, strict=True)
    ]
