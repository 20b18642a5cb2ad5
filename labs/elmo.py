"""Lab: ELMo, a bidirectional LSTM language model whose layers are mixed per task.

What it teaches
---------------
ELMo (Peters et al. 2018, "Deep contextualized word representations") trains two
language models over the same text: a forward LM predicting w_{t+1} from w_1..w_t,
and a backward LM predicting w_{t-1} from w_t..w_N. They share the input layer
and the softmax; each is a stack of L LSTM layers (with a residual connection
from the second layer on). Token t then has L + 1 vectors: x_t (the input layer,
duplicated to [x_t; x_t]) and [h->_{t,j}; h<-_{t,j}] for j = 1..L. A downstream
task does not pick one of them; it learns a scalar mix (allennlp's ScalarMix)::

    ELMo_t^task = gamma^task * sum_j softmax(s^task)_j * h_{t,j}

with s (L + 1 numbers, starting at 0: an equal mix) and gamma (starting at 1)
trained with the task while the biLM stays frozen. The weights say which layer the
task prefers: in the paper the top layer serves word sense disambiguation better
(their Table 5), the first one part-of-speech tagging (Table 6), and Figure 2 shows
the learned weights per task; their Table 4 finds the biLM's neighbours of "play"
split by sense where GloVe's mix them (this lab's "play" probe).

Here the input layer is a word embedding, not ELMo's character CNN (2048 filters,
two highway layers, a 512 projection): a char CNN gives every word, seen or not, a
vector from its spelling, but at minutes of training on 2 cores its cost is better
spent on the LSTMs; words outside the vocabulary share one <unk> vector. Both LMs
are the from-scratch LSTMs of week1_{jax,torch}/lib/recurrent.py, one layer
object per layer so that each layer's states can be read. The backward LM reads
each sentence reversed within its own length (padding stays at the end), so
padded batches need no masking inside the recurrence.

Training text: the Wikipedia excerpt of week1/data/words.py and the training
split's Rotten Tomatoes snippets (their text only: labels are never seen by the
LM), one "</s>" between documents, a vocabulary of the `vocab_size` most frequent
words; windows of seq_len + 2 words give the forward targets (shifted left), the
backward targets (shifted right) and the inputs between. The loss is the mean of
the two directions' cross-entropies; perplexity = exp(loss).

How to read the results
-----------------------
- Validation loss of the biLM (both directions averaged) against steps, and its
  perplexity at the end. The paper's biLM (4096 LSTM units, 512 projections, a
  2048-filter char CNN, 10 epochs of the 1B Word Benchmark) reached an average
  forward/backward perplexity of 39.7; this one has a few hundred thousand words,
  a few hundred steps and 128 units: expect perplexities in the hundreds. Its
  layers carry far less than ELMo's: read the probes for their direction, not size.
- "where the sense is resolved": for "bank" (money, river) and "play" (theatre,
  game), the mean cosine of the word's vectors between sentences that use the
  same sense and between the senses, layer by layer: the static word2vec vector
  (Google News) is one vector (cosine 1 everywhere), ELMo's layer 0 is too (a
  word embedding has no context), its LSTM layers pull the senses apart, and so do
  MiniLM's attention layers. The gap (within minus across) is the signal.
- Sentiment probe (RT polarity, rotten vs fresh): a logistic regression on
  frozen sentence features (the mean over a snippet's words), trained through the
  one loop: the static vectors' mean, each ELMo layer alone, ELMo's learned
  scalar mix, and MiniLM's sentence embedding. Test accuracy per feature set, and
  the mix's softmax(s) and gamma: which layer the task leans on. MiniLM was
  trained on a billion sentence pairs; the minutes-scale biLM is not expected to
  reach it, nor even the 300-dimensional Google News vectors.
- `week1 compare elmo`: the biLM trained in JAX, torch eager and torch.compile from
  the same weights on the same batches: the train-loss curves lie on each other.

The parity tests check the biLM's losses and gradients against one built on
torch.nn.LSTM from the same weights, JAX against torch, and the scalar mix's
gradients against its written-out derivative.

torch --compile compiles the whole training step, the LSTMs' time loops unrolled (T steps x
2 directions x L layers): expect minutes of compilation on a CPU before the first step.

Run it:  week1 run elmo --framework jax          (or torch; --compile for torch.compile)
         week1 compare elmo --quick

History: docs/history.md#peters-2018, #hochreiter-1997
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import re
from collections.abc import Callable

import numpy as np

from week1 import charlm, loop, report
from week1.comparison import Case, Curves
from week1.config import Range, require
from week1.data import labelled, minilm, vectors, words
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

BOUNDARY, UNK = 0, 1  # ids of "</s>" (also the padding) and "<unk>"
SPECIALS = ("</s>", "<unk>")
MINILM_MAX_LENGTH = 128  # MiniLM tokens per sense sentence (lib/bert.pretrained's default)
CORPORA = ("wiki", "shakespeare", "both")

# Each word in sentences 1-2 in one sense, 3-4 in another (common words only, so that the
# small biLM's vocabulary knows them).
SENSES = {
    "bank": (
        "She paid the money into the bank before it closed.",
        "The bank raised its interest rates again this year.",
        "We sat on the grassy bank of the river all afternoon.",
        "The boat drifted slowly toward the muddy bank of the stream.",
    ),
    "play": (
        "The actors rehearsed the play for many weeks.",
        "We saw a new play at the theatre last night.",
        "The children went out to play in the park.",
        "The dogs like to play outside in the snow after dinner.",
    ),
}


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3  # peak learning rate of warmup-cosine
    seed: int = 0
    schedule: str = "warmup_cosine"
    warmup_steps: int = 30
    final_lr: float = 3e-4
    weight_decay: float = 0.01  # on matrices only
    clip_norm: float = 1.0  # clip the global gradient norm (0: off)
    corpus: str = "wiki"  # words.py corpus beside the RT training snippets: one of CORPORA
    vocab_size: int = 5000  # words in the LM's vocabulary, with </s> and <unk>
    hidden_size: int = 128  # LSTM units per direction, and the word embedding size
    num_layers: int = 2  # LSTM layers per direction
    seq_len: int = 32  # words per training window
    val_fraction: float = 0.05  # the end of the text, held out
    eval_every: int = 100
    eval_batches: int = 4
    checkpoint_every: int = 0  # 0: the last step only
    max_length: int = 48  # probes: words per snippet (longer ones are truncated)
    probe_rows: int = 2000  # RT training snippets the probes learn from (all test ones score)
    probe_steps: int = 300  # steps of each sentiment probe
    probe_lr: float = 1e-2  # the probes' Adam learning rate (constant)

    RANGES = {
        "vocab_size": Range(3, 1_000_000),
        "hidden_size": Range(1, 4096),
        "num_layers": Range(1, 8),
        "seq_len": Range(2, 4096),
        "clip_norm": Range(0),
        "max_length": Range(1, 1024),
        "probe_rows": Range(2, 1_000_000),
        "probe_steps": Range(1, 1_000_000),
        "probe_lr": Range(0),
    }

    def check(self) -> None:
        require(self.corpus in CORPORA, f"corpus={self.corpus!r}: allowed: {', '.join(CORPORA)}")
        require(
            self.schedule in charlm.SCHEDULES,
            f"schedule={self.schedule!r}: allowed: {', '.join(charlm.SCHEDULES)}",
        )
        require(
            self.warmup_steps <= self.steps,
            f"warmup_steps={self.warmup_steps}: must be in [0, steps={self.steps}]",
        )
        require(self.final_lr <= self.lr, f"final_lr={self.final_lr}: must be <= lr={self.lr}")
        require(
            0 < self.val_fraction < 0.5,
            f"val_fraction={self.val_fraction}: must be in (0, 0.5)",
        )


# --- the language model's text ---------------------------------------------------------------

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def tokens(text: str) -> list[str]:
    """Lower-case words (inner apostrophes kept), as week1/data/words.py cuts its corpora."""
    return _WORD.findall(text.lower())


@dataclasses.dataclass(frozen=True)
class Data:
    vocab: tuple  # id -> word, SPECIALS first
    train: np.ndarray  # (N,) int32 ids of the training text
    val: np.ndarray  # (M,) int32 ids of the held-out end
    polarity: labelled.Labelled  # the RT snippets (texts and labels) for the probe

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @functools.cached_property
    def index(self) -> dict:
        return {w: i for i, w in enumerate(self.vocab)}

    def encode(self, word_list: list[str]) -> list[int]:
        index = self.index
        return [index.get(w, UNK) for w in word_list]


def load_data(cfg: Config) -> Data:
    """The biLM's text (cfg.corpus, then the RT training snippets), its vocabulary (counted on
    the training part), and the polarity splits."""
    return _load_data(cfg.corpus, cfg.vocab_size, cfg.val_fraction, cfg.seed)


@functools.cache  # a compare loads it once per framework
def _load_data(corpus: str, vocab_size: int, val_fraction: float, seed: int) -> Data:
    polarity = labelled.prepare("polarity", seed=seed)
    documents = words.sentences(corpus) + [tokens(t) for t in polarity.splits["train"]["text"]]
    stream = [w for doc in documents for w in (*doc, SPECIALS[BOUNDARY])]
    cut = int(len(stream) * (1 - val_fraction))
    counts = collections.Counter(stream[:cut])
    del counts[SPECIALS[BOUNDARY]]
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: vocab_size - len(SPECIALS)]
    vocab = SPECIALS + tuple(w for w, _ in top)
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.array([index.get(w, UNK) for w in stream], dtype=np.int32)
    return Data(vocab, ids[:cut], ids[cut:], polarity)


def bilm_batch(ids: np.ndarray, seq_len: int, batch_size: int, seed: int, step: int):
    """Random windows of seq_len + 2 ids: inputs x (B, T), forward targets (x shifted left: the
    next word) and backward targets (shifted right: the previous word), int32; the same arrays
    for the same (seed, step) in both frameworks."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(ids) - seq_len - 1, size=batch_size)  # (B,)
    windows = ids[starts[:, None] + np.arange(seq_len + 2)[None, :]].astype(np.int32)
    return windows[:, 1:-1], windows[:, 2:], windows[:, :-2]  # 3 x (B, T)


def train_batch(data: Data, cfg: Config, step: int):
    return bilm_batch(data.train, cfg.seq_len, cfg.batch_size, cfg.seed, step)


def val_batches(data: Data, cfg: Config) -> list:
    """A fixed set of held-out windows (seeded apart from training)."""
    return [
        bilm_batch(data.val, cfg.seq_len, cfg.batch_size, cfg.seed + 1_000_003, k)
        for k in range(cfg.eval_batches)
    ]


def padded(data: Data, texts, max_length: int):
    """Texts as ids (N, T) padded with </s>, lengths (N,) (at least 1: an empty text is one
    </s>), T the longest (at most max_length)."""
    rows = [data.encode(tokens(t))[:max_length] or [BOUNDARY] for t in texts]
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    ids = np.full((len(rows), int(lengths.max())), BOUNDARY, dtype=np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, lengths


def batches_of(n: int, size: int = 256) -> list[np.ndarray]:
    return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]


def mean_over_words(layers: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """layers (J, B, T, D) -> (B, J, D): each row's mean over its real words."""
    mask = (np.arange(layers.shape[2])[None, :] < lengths[:, None]).astype(np.float32)  # (B, T)
    summed = np.einsum("jbtd,bt->bjd", layers, mask)
    return summed / lengths[:, None, None]


# --- the probes ------------------------------------------------------------------------------


def word_position(sentence: str, word: str) -> int:
    return tokens(sentence).index(word)


def cosines(rows: np.ndarray) -> np.ndarray:
    """Cosine of every pair of rows (over the last two axes)."""
    unit = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
    return unit @ np.swapaxes(unit, -1, -2)


def within_across(sim: np.ndarray) -> tuple[float, float]:
    """Mean cosine within a sense (sentences 1-2, 3-4) and across senses, of a (4, 4) table."""
    return float((sim[0, 1] + sim[2, 3]) / 2), float(sim[:2, 2:].mean())


def static_word_vectors(static: vectors.WordVectors) -> dict:
    """Each probe word's static vector, repeated for its 4 sentences: {word: (1, 4, 300)}."""
    out = {}
    for word in SENSES:
        key = next((k for k in (word, word.capitalize()) if k in static), None)
        if key is not None:
            out[word] = np.repeat(static[key][None, None, :], len(SENSES[word]), axis=1)
    return out


def report_senses(models: dict) -> dict:
    """`models`: name -> {word: (layers, 4, C)}; one row per (model, layer): the mean within-
    and across-sense cosines over the words and their gap."""
    rows, summary = [], {}
    for name, by_word in models.items():
        layers = len(next(iter(by_word.values())))
        for layer in range(layers):
            pairs = [within_across(cosines(v[layer])) for v in by_word.values()]
            within, across = np.mean(pairs, axis=0)
            rows.append((name, layer, ", ".join(by_word), within, across, within - across))
            summary[f"sense gap {name} layer {layer}"] = float(within - across)
    report.table(
        "where the sense is resolved: cosine of a word's vectors between sentences",
        ["model", "layer", "words", "cos within sense", "cos across senses", "gap"],
        rows,
    )
    return summary


def static_sentence_features(static: vectors.WordVectors, texts) -> np.ndarray:
    """(N, 1, 300): the mean of the known words' Google News vectors (zeros when none)."""
    out = np.zeros((len(texts), 1, static.vector_size), np.float32)
    for i, text in enumerate(texts):
        known = [
            static[k]
            for w in tokens(text)
            if (k := next((k for k in (w, w.capitalize()) if k in static), None))
        ]
        if known:
            out[i, 0] = np.mean(known, axis=0)
    return out


def probe_texts(data: Data, cfg: Config) -> dict:
    """{"train": (texts, labels), "test": (texts, labels)}: the first probe_rows training
    snippets (a seeded permutation of the split already) and the whole test split."""
    train, test = data.polarity.splits["train"], data.polarity.splits["test"]
    n = min(cfg.probe_rows, len(train))
    return {
        "train": (list(train["text"][:n]), np.asarray(train["label"][:n], np.int32)),
        "test": (list(test["text"]), np.asarray(test["label"], np.int32)),
    }


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (layer, dimension) to zero mean and unit variance on the training rows (so that
    features of different scales meet the probe alike and a layer's scale does not decide
    its mix weight)."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6  # (J, D)
    return (train - mean) / std, (test - mean) / std


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """One sentiment probe's training (the shape lib/train and lib/schedules read)."""

    steps: int
    lr: float
    seed: int
    batch_size: int = 256
    schedule: str = "constant_with_warmup"
    warmup_steps: int = 0
    final_lr: float = 0.0
    weight_decay: float = 0.0
    clip_norm: float = 0.0
    eval_every: int = 0
    checkpoint_every: int = 0


def probe_config(cfg: Config) -> ProbeConfig:
    return ProbeConfig(steps=cfg.probe_steps, lr=cfg.probe_lr, seed=cfg.seed)


def probe_batch(n: int, pc: ProbeConfig, step: int) -> np.ndarray:
    """Rows of probe batch `step`: the same for the same (seed, step) in both frameworks."""
    return np.random.default_rng([pc.seed, 7, step]).integers(0, n, size=min(pc.batch_size, n))


def report_probes(results: dict, layers: int) -> dict:
    """`results`: name -> {"accuracy", "weights" (softmax(s)) or None, "gamma"}."""
    rows, summary = [], {}
    for name, r in results.items():
        mix = "-" if r["weights"] is None else " ".join(f"{w:.2f}" for w in r["weights"])
        rows.append((name, r["accuracy"], mix, "-" if r["weights"] is None else r["gamma"]))
        summary[f"probe accuracy {name}"] = r["accuracy"]
        if r["weights"] is not None:
            summary |= {f"mix weight layer {j}": float(w) for j, w in enumerate(r["weights"])}
            summary["mix gamma"] = r["gamma"]
    report.table(
        f"sentiment probe (RT polarity, test accuracy); mix: softmax(s) over layers 0..{layers}",
        ["features", "test accuracy", "softmax(s)", "gamma"],
        rows,
    )
    return summary


def majority(labels: np.ndarray) -> float:
    return float(np.bincount(labels).max() / len(labels))


def plot_bilm(path, history: loop.History):
    from week1.report import plot_lines

    return plot_lines(
        path,
        {"validation (both directions)": (history.val_steps, history.val_loss)},
        title="biLM held-out loss",
        xlabel="training step",
        ylabel="cross-entropy (nats/word)",
    )


def wordpiece_positions(tokenizer, sentence: str, word: str) -> list[int]:
    """MiniLM's token positions of the first whole-word, case-blind occurrence of `word`."""
    match = re.search(rf"\b{re.escape(word)}\b", sentence, flags=re.I)
    encoding = tokenizer.encode(sentence)
    return [
        t
        for t, (start, end) in enumerate(encoding.offsets)
        if encoding.special_tokens_mask[t] == 0 and match.start() <= start and end <= match.end()
    ]


def sense_vectors(elmo_layers, data: Data) -> dict:
    """{word: (L + 1, 4, 2H)}: the word's biLM layers in each of its sentences (`elmo_layers`:
    (ids, lengths) -> (L + 1, B, T, 2H) numpy, the framework's frozen biLM)."""
    out = {}
    for word, sentences in SENSES.items():
        ids, lengths = padded(data, sentences, 10_000)
        layers = elmo_layers(ids, lengths)  # (J, 4, T, 2H)
        at = [word_position(s, word) for s in sentences]
        out[word] = layers[:, np.arange(len(sentences)), at]
    return out


@dataclasses.dataclass(frozen=True)
class Encoders:
    """What the report needs from a framework (numpy out)."""

    elmo_senses: Callable  # () -> {word: (L + 1, 4, 2H)}
    elmo_sentences: Callable  # texts -> (N, L + 1, 2H)
    minilm_hidden: Callable  # minilm.Batch -> (L + 1 arrays (B, T, C), sentence vectors (B, C))
    minilm_tokenizer: Callable  # () -> MiniLM's tokenizer
    minilm_encode: Callable  # texts -> (N, C) sentence vectors


def minilm_senses(enc: Encoders, tokenizer) -> dict:
    """{word: (L + 1, 4, C)}: MiniLM's layers at the word (mean over its WordPiece tokens)."""
    out = {}
    for word, sentences in SENSES.items():
        hidden, _ = enc.minilm_hidden(minilm.batch(tokenizer, list(sentences), MINILM_MAX_LENGTH))
        at = [wordpiece_positions(tokenizer, s, word) for s in sentences]
        out[word] = np.stack(
            [np.stack([h[i, p].mean(0) for i, p in enumerate(at)]) for h in hidden]
        )
    return out


def report_run(run, cfg: Config, data: Data, history: loop.History, enc: Encoders, probe) -> dict:
    """The run's tables and plot after the biLM trained: perplexity, the sense table, the
    sentiment probes (`probe(name, features {"train", "test"}, labels {...})` -> {"accuracy",
    "weights", "gamma"}, the framework's training through the one loop)."""
    plot_bilm(run.path("elmo_bilm.png"), history)
    summary = {**history.summary(), "final_val_perplexity": math.exp(history.val_loss[-1])}
    static = vectors.load_pretrained()
    tokenizer = enc.minilm_tokenizer()
    senses = {
        "word2vec (Google News)": static_word_vectors(static),
        "ELMo (ours)": enc.elmo_senses(),
        "MiniLM": minilm_senses(enc, tokenizer),
    }
    summary |= report_senses(senses)
    texts = probe_texts(data, cfg)
    labels = {split: y for split, (_, y) in texts.items()}
    features = {
        "word2vec mean": {s: static_sentence_features(static, t) for s, (t, _) in texts.items()},
        "ELMo": {s: enc.elmo_sentences(t) for s, (t, _) in texts.items()},
        "MiniLM": {s: enc.minilm_encode(t)[:, None] for s, (t, _) in texts.items()},
    }
    layers = features["ELMo"]["train"].shape[1]
    results = {"word2vec mean (Google News)": probe("word2vec", features["word2vec mean"], labels)}
    for j in range(layers):
        one = {s: f[:, j : j + 1] for s, f in features["ELMo"].items()}
        results[f"ELMo layer {j} alone"] = probe(f"elmo_layer{j}", one, labels)
    results["ELMo scalar mix"] = probe("elmo_mix", features["ELMo"], labels)
    results["MiniLM sentence vector"] = probe("minilm", features["MiniLM"], labels)
    summary |= report_probes(results, layers - 1)
    summary["majority baseline"] = majority(labels["test"])
    return summary


def run(cfg: Config, run, lab, bert, compile: bool = False) -> dict:
    """`week1 run elmo` with the framework's module `lab` (week1_jax.elmo or week1_torch.elmo)
    and its lib/bert (MiniLM): the biLM, then the probes (report_run); compile: torch only."""
    data = load_data(cfg)
    model, history = lab.train(cfg, data, ctx=loop.Context.of_run(run, compile))
    if run.should_stop():
        return history.summary()
    enc = Encoders(
        elmo_senses=lambda: sense_vectors(functools.partial(lab.elmo_layers, model), data),
        elmo_sentences=lambda texts: lab.sentence_features(model, data, texts, cfg),
        minilm_hidden=lambda batch: bert.hidden_and_sentences(bert.pretrained()[0], batch),
        minilm_tokenizer=lambda: bert.pretrained()[1],
        minilm_encode=bert.encode,
    )
    probe = lambda name, features, labels: lab.train_probe(name, features, labels, cfg, run)
    return report_run(run, cfg, data, history, enc, probe)


# `week1 compare elmo --quick`: a smaller biLM, 100 steps.
COMPARE_QUICK = {"steps": 100, "eval_every": 25, "warmup_steps": 10, "hidden_size": 64,
                 "vocab_size": 3000, "seq_len": 24}  # fmt: skip
# CI: a few steps of a tiny biLM.
COMPARE_TEST = {"steps": 6, "eval_every": 3, "warmup_steps": 2, "hidden_size": 16,
                "vocab_size": 500, "seq_len": 12, "batch_size": 8, "eval_batches": 2}  # fmt: skip


def compare_cases(cfg: Config) -> list[Case]:
    """The biLM from the same start on the same batches (F32 curves over many steps)."""
    return [Case("bilm", "val loss", TRAJECTORY)]


def compare_curves(history: loop.History) -> Curves:
    return Curves.of(history)


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "reverse_within",
        hints=(
            (
                "The backward LM reads each sentence right to left: reverse every row within its "
                "own length and leave the padding where it is."
            ),
            (
                "Index with t' = where(t < length, length - 1 - t, t) per row (a gather along the "
                "time axis); with lengths None reverse the whole axis."
            ),
        ),
        jax=Part(
            "week1_jax/elmo.py::reverse_within",
            (
                "test_elmo.py::test_padded_batch_equals_each_sentence_alone",
                "test_elmo.py::test_bilm_jax_equals_torch",
            ),
        ),
        torch=Part(
            "week1_torch/elmo.py::reverse_within",
            (
                "test_elmo.py::test_padded_batch_equals_each_sentence_alone",
                "test_elmo.py::test_bilm_jax_equals_torch",
            ),
        ),
    ),
    Exercise(
        "scalar_mix",
        hints=(
            "ELMo's task-specific combination of the layers: gamma * sum_j softmax(s)_j h_j.",
            (
                "Softmax the per-layer scalars, weight the (L, ...) stack of layers and sum over L,"
                " then multiply by gamma."
            ),
        ),
        jax=Part(
            "week1_jax/elmo.py::ScalarMix.__call__", "test_elmo.py::test_scalar_mix_gradients"
        ),
        torch=Part(
            "week1_torch/elmo.py::ScalarMix.forward", "test_elmo.py::test_scalar_mix_gradients"
        ),
    ),
)
