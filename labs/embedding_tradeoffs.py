"""Lab: embedding dimensions and trade-offs: how many dimensions, how many bits, how many
matrices.

What it teaches
---------------
An embedding's size is a cost paid on every stored vector and every comparison, and in a
language model once more in the output layer. Four ways to pay less, each measured against
what it loses:

1. Dimension (word2vec). Skip-gram with negative sampling (week1_{jax,torch}/lib/
   embeddings.fit, the word2vec lab's from-scratch trainer) at `dims` (25 ... 300) on
   the same corpus: Spearman rho on WordSim353 and SimLex-999, 3CosAdd analogy
   accuracy (week1/data/vectors.py, scored as gensim scores them), the matrix's bytes
   (V x C x 4) and the training speed in words/s. On a few hundred thousand words the
   larger sizes have more parameters than the data can fill: quality stops rising
   (and analogies need more data than that whatever the size), while memory keeps
   growing linearly.
2. Matryoshka representations (Kusupati et al. 2022). A projection head z = W e + b
   on frozen all-MiniLM-L6-v2 sentence vectors e (384-d), trained so that every
   prefix z[:m], m in `prefixes`, is itself a good embedding: the loss is
   sentence-transformers' MatryoshkaLoss around MultipleNegativesRankingLoss::

       L = sum_m w_m * CE(scale * cos(a_i[:m], b_j[:m]), j = i)   over the batch

   (cos of the truncated, then L2-normalised, prefixes; scale 20; w_m = 1). With no
   pair data, the positive of a text is itself seen through another dropout mask
   (SimCSE, Gao et al. 2021): here the masks drop input dimensions of the frozen
   vector (the encoder's own dropout would need a forward pass per step), drawn in
   numpy from (seed, step) so both frameworks see the same ones. The head starts
   as the identity: at step 0 it *is* naive truncation.
   Retrieval set (held out from training): passages of 2 x `half_words` words from
   the Wikipedia excerpt of week1/data/words.py, the first half the query, the second
   half the document to find among all held-out documents; recall@1 and @10 of each
   prefix for naive truncation of MiniLM, for PCA (the rotation that puts the most
   variance first, fitted on the training passages) and for the trained head.
3. Quantisation (MiniLM's 384 float32 = 1536 bytes per vector): int8 with a
   per-dimension scale (s_d = max |x_d| / 127 over the documents; 384 bytes) and
   binary (the sign of each dimension, packed: 48 bytes) searched by Hamming
   distance, then the best `rescore` x 10 candidates rescored with the float query
   against their float32 vectors (read for those few documents only). Recall@10 of
   the true document, and the overlap of the top 10 with float32 exact search.

4. Tying (Press & Wolf 2017; Inan et al. 2017). The character LM every training lab uses
   (week1/charlm.py: a window of 8 embedded characters, one hidden layer of 256) with its
   own output matrix (untied: logits = h W_head + b, W_head (H, V)) against the same model
   whose output layer is the embedding matrix, transposed (tied: the hidden state is first
   projected to the embedding size, g = h W_p + b_p, then logits = g E^T + b), at each
   embedding size of `tying_embd`, for `tying_steps` on the same batches through the one
   training loop. The embedding then learns from both ends: the gradient on E is the input
   side's plus the output side's (the parity tests check exactly that sum).

How to read the results
-----------------------
- "dimension sweep": rho and accuracy against the size; bytes double with the size.
  embedding_tradeoffs_dims.png puts quality and megabytes over the dimension.
- "Matryoshka": at 384 truncation and the head start equal (the head is the
  identity at step 0); PCA also subtracts the mean, which alone changes cosine
  retrieval (sentence vectors share a common direction), so compare its rows at 384
  too. What to look for is the fall from 384 to 32: steep for truncation, flatter
  where the training (or the rotation) has put the most useful directions first.
  A few hundred steps of a linear head on a few thousand passages is a small
  version of what Kusupati et al. train end to end; read the direction of the gaps.
  The training loss is summed over the prefixes: not comparable to one InfoNCE loss.
- "quantisation": int8 keeps recall almost exactly at a quarter of the bytes;
  binary loses some at a 32nd, and rescoring a few candidates wins most of it back.
- "tying": the output layer's parameters and the model's, and the validation loss (nats per
  character) after the same steps, untied and tied, at each embedding size. Untied the output
  layer costs H x V + V, tied H x C + C + V (the projection): tying saves H (V - C) - C,
  much where the embedding is far narrower than the vocabulary, little as C nears V, and
  it costs parameters once C > V. A word-level model saves V x C outright (V in the tens
  of thousands; and no projection where the last hidden layer is already C wide, as in
  GPT-2). The loss at equal steps: with Shakespeare's few dozen characters the tied model
  is level with the untied one or a little above it (one matrix now serves as the input
  vectors and as the output classifier, and an untied head over so few characters is
  cheap); read it against the parameters saved. Press & Wolf (2017) found tying lowers
  perplexity on word-level models, where the output matrix is most of the model.

Run it:  week1 run embedding_tradeoffs --framework torch     (or jax)
         week1 run embedding_tradeoffs --framework jax --parts=tying   (the tying table alone)
         week1 compare embedding_tradeoffs --quick

History: docs/history.md#mikolov-2013
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from week1 import charlm, loop, report
from week1.comparison import Case, Curves
from week1.config import Range, require
from week1.data import embeddings, vectors, words
from week1.exercises import Exercise, Part
from week1.tolerances import TRAJECTORY

PARTS = ("dims", "matryoshka", "quantise", "tying")


@dataclasses.dataclass(frozen=True)
class Config:
    parts: str = "dims,matryoshka,quantise,tying"  # comma-separated, of PARTS
    seed: int = 0
    # 1. the dimension sweep
    dims: str = "25,50,100,200,300"  # word2vec vector sizes
    corpus: str = "wiki"  # words.py corpus: wiki, shakespeare or both
    max_words: int = 0  # words of the corpus the sweep trains on (0: all)
    epochs: int = 5  # word2vec passes per size
    # 2. Matryoshka (and the retrieval set of 3.)
    prefixes: str = "32,64,128,384"  # the nested sizes the loss sums over
    half_words: int = 16  # words per query and per document
    train_passages: int = 1500  # passages the head trains on (SimCSE: no pairs needed)
    eval_passages: int = 500  # held-out (query, document) pairs
    steps: int = 300
    batch_size: int = 128
    lr: float = 1e-3
    schedule: str = "warmup_cosine"
    warmup_steps: int = 20
    final_lr: float = 1e-4
    weight_decay: float = 0.0
    # dropout on the frozen vector (the two views of a passage); SimCSE's 0.1 acts inside the
    # encoder, on a frozen vector 0.1 leaves the views too alike to teach much
    drop: float = 0.3
    scale: float = 20.0  # the InfoNCE logit scale (1 / temperature)
    eval_every: int = 100
    checkpoint_every: int = 0
    # 3. quantisation
    rescore: int = 4  # binary search: rescore this many x 10 Hamming candidates
    # 4. tying: the char LM (week1/charlm.py's defaults otherwise), untied and tied
    tying_embd: str = "16,64"  # its embedding sizes n_embd, comma-separated
    tying_steps: int = 1500  # training steps of each (n_embd, tied) arm

    RANGES = {
        "max_words": Range(0),
        "epochs": Range(1, 100),
        "half_words": Range(2, 100),
        "train_passages": Range(8, 1_000_000),
        "eval_passages": Range(10, 1_000_000),
        "drop": Range(0.0, 0.9),
        "scale": Range(0.0),
        "rescore": Range(1, 1000),
        "tying_steps": Range(1, 1_000_000),
    }

    def check(self) -> None:
        parts = self.part_list
        require(
            parts and all(p in PARTS for p in parts),
            f"parts={self.parts!r}: comma-separated, of {', '.join(PARTS)}",
        )
        require(self.corpus in words.NAMES, f"corpus={self.corpus!r}: allowed: {words.NAMES}")
        require(_positive_ints(self.dims), f"dims={self.dims!r}: comma-separated positive integers")
        require(
            _positive_ints(self.tying_embd) and max(self.tying_embd_list) <= 4096,
            f"tying_embd={self.tying_embd!r}: comma-separated integers in [1, 4096]",
        )
        require(
            _positive_ints(self.prefixes) and max(self.prefix_list) <= 384,
            f"prefixes={self.prefixes!r}: comma-separated integers in [1, 384]",
        )
        require(
            self.warmup_steps <= self.steps,
            f"warmup_steps={self.warmup_steps}: must be in [0, steps={self.steps}]",
        )
        require(self.final_lr <= self.lr, f"final_lr={self.final_lr}: must be <= lr={self.lr}")

    @property
    def part_list(self) -> list[str]:
        return [p.strip() for p in self.parts.split(",") if p.strip()]

    @property
    def dim_list(self) -> list[int]:
        return [int(d) for d in self.dims.split(",")]

    @property
    def prefix_list(self) -> list[int]:
        return sorted(int(d) for d in self.prefixes.split(","))

    @property
    def tying_embd_list(self) -> list[int]:
        return [int(d) for d in self.tying_embd.split(",")]


def _positive_ints(text: str) -> bool:
    parts = [p.strip() for p in text.split(",")]
    return bool(parts) and all(p.isdigit() and int(p) > 0 for p in parts)


# --- 1. the dimension sweep ------------------------------------------------------------------


def sweep_settings(cfg: Config, dim: int) -> embeddings.Settings:
    """word2vec's settings at one size (gensim's defaults otherwise)."""
    return embeddings.Settings(model="sgns", vector_size=dim, epochs=cfg.epochs, seed=cfg.seed)


def report_dims(run, cfg: Config, sentences, fit) -> dict:
    """Train word2vec at each size with `fit(sentences, settings) -> embeddings.Trained` (the
    framework's lib/embeddings.fit); table and plot."""
    rows, summary, curves = [], {}, {"WS353 rho": [], "SimLex rho": [], "analogy accuracy": []}
    for dim in cfg.dim_list:
        settings = sweep_settings(cfg, dim)
        trained = fit(sentences, settings)
        score = vectors.evaluate(vectors.WordVectors(trained.words, trained.vectors))
        size = trained.vectors.size * 4
        speed = trained.words_per_s(settings)
        rows.append((dim, score["ws353"], score["simlex"], score["analogies"], size / 2**20, speed))
        summary |= {
            f"dim {dim} ws353": score["ws353"],
            f"dim {dim} simlex": score["simlex"],
            f"dim {dim} analogies": score["analogies"],
            f"dim {dim} MB": size / 2**20,
            f"dim {dim} words/s": speed,
        }
        for key, name in zip(curves, ("ws353", "simlex", "analogies"), strict=True):
            curves[key].append(score[name])
    report.table(
        f"dimension sweep: word2vec skip-gram on {cfg.corpus}, "
        f"{sum(len(s) for s in sentences):,} words x {cfg.epochs} epochs",
        ["dim", "WS353 rho", "SimLex rho", "analogies", "matrix MB (fp32)", "words/s"],
        rows,
    )
    from week1.report import Panel, plot_panels

    dims = cfg.dim_list
    plot_panels(
        run.path("embedding_tradeoffs_dims.png"),
        [
            Panel({k: (dims, v) for k, v in curves.items()}, "score"),
            Panel({"matrix MB": (dims, [r[4] for r in rows])}, "MB (float32)"),
        ],
        title="word2vec: quality and memory against the dimension",
        xlabel="vector size",
    )
    return summary


# --- 2. the retrieval set and Matryoshka -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Passages:
    train: list  # texts the head trains on
    queries: list  # held-out first halves
    documents: list  # held-out second halves (documents[i] answers queries[i])


def passages(cfg: Config) -> Passages:
    """Consecutive 2 x half_words chunks of the Wikipedia excerpt, shuffled (seeded); the first
    eval_passages are held out as (query, document) pairs, the next train_passages train."""
    n = 2 * cfg.half_words
    chunks = [s[i : i + n] for s in words.sentences("wiki") for i in range(0, len(s) - n + 1, n)]
    order = np.random.default_rng(cfg.seed).permutation(len(chunks))
    need = cfg.eval_passages + cfg.train_passages
    require(need <= len(chunks), f"eval_passages + train_passages={need}: at most {len(chunks)}")
    held = [chunks[i] for i in order[: cfg.eval_passages]]
    train = [" ".join(chunks[i]) for i in order[cfg.eval_passages : need]]
    half = cfg.half_words
    return Passages(train, [" ".join(c[:half]) for c in held], [" ".join(c[half:]) for c in held])


def dropout_masks(cfg: Config, step: int, dim: int = 384) -> tuple[np.ndarray, np.ndarray]:
    """Two inverted-dropout masks (B, dim) float32 (0 or 1/(1-drop)) for step `step`: the two
    views of each passage, the same in both frameworks."""
    rng = np.random.default_rng([cfg.seed, 11, step])
    keep = rng.random((2, cfg.batch_size, dim)) >= cfg.drop
    masks = keep.astype(np.float32) / (1.0 - cfg.drop)
    return masks[0], masks[1]


def head_batch(features: np.ndarray, cfg: Config, step: int) -> tuple:
    """(e (B, 384), mask_a, mask_b) of training step `step`."""
    rows = np.random.default_rng([cfg.seed, 12, step]).integers(0, len(features), cfg.batch_size)
    return (features[rows], *dropout_masks(cfg, step, features.shape[1]))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def top_k(queries: np.ndarray, documents: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) indices of the k documents of highest cosine to each query."""
    sim = unit(queries) @ unit(documents).T  # (Q, N)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def recall_at(found: np.ndarray, k: int) -> float:
    """Fraction of queries whose own document (index = query index) is in the first k found."""
    return float(np.mean((found[:, :k] == np.arange(len(found))[:, None]).any(axis=1)))


def pca_rotation(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (C,), rotation (C, C)): the principal axes of the training vectors, most variance
    first (x -> (x - mean) @ rotation)."""
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    return mean, vt.T


def report_matryoshka(cfg: Config, queries, documents, train, head) -> dict:
    """recall@1/@10 per prefix for naive truncation, PCA and the head (`head`: x -> z)."""
    mean, rotation = pca_rotation(train)
    ways = {
        "truncation": lambda x: x,
        "PCA, truncated": lambda x: (x - mean) @ rotation,
        "Matryoshka head": head,
    }
    rows, summary = [], {}
    for name, f in ways.items():
        q, d = f(queries), f(documents)
        for m in cfg.prefix_list:
            found = top_k(q[:, :m], d[:, :m], 10)
            r1, r10 = recall_at(found, 1), recall_at(found, 10)
            rows.append((name, m, m * 4, r1, r10))
            summary[f"{name} {m} recall@10"] = r10
    report.table(
        f"Matryoshka: held-out retrieval ({len(queries)} queries, {len(documents)} documents)",
        ["embedding", "dims", "bytes (fp32)", "recall@1", "recall@10"],
        rows,
    )
    return summary


# --- 3. quantisation -------------------------------------------------------------------------


def report_quantise(queries, documents, found: dict) -> dict:
    """recall@10 and overlap with exact float32 search against bytes per vector. `found`: the
    framework's searches' top 10 (Q, 10) {"int8", "binary", "binary + rescore"}."""
    exact = top_k(queries, documents, 10)
    D = documents.shape[1]
    sizes = {"float32": 4 * D, "int8": D, "binary": D // 8, "binary + rescore": D // 8}
    rows, summary = [], {}
    for name, top in ({"float32": exact} | found).items():
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, exact, strict=True)])
        rows.append((name, sizes[name], recall_at(top, 10), float(overlap)))
        summary[f"{name} recall@10"] = recall_at(top, 10)
    report.table(
        "quantisation: MiniLM document vectors, held-out retrieval",
        ["vectors", "bytes/vector", "recall@10", "top-10 overlap with float32"],
        rows,
    )
    return summary


# --- 4. tying ---------------------------------------------------------------------------------


def tying_config(cfg: Config, n_embd: int, tied: bool) -> charlm.Config:
    """The char LM of one tying arm: week1/charlm.py's defaults, but cfg.tying_steps (warmup a
    tenth of them, at most the default's), this embedding size, tied or not, cfg.seed."""
    warmup = min(charlm.Config.warmup_steps, cfg.tying_steps // 10)
    return charlm.Config(
        steps=cfg.tying_steps, warmup_steps=warmup, n_embd=n_embd, tied=tied, seed=cfg.seed
    )


def tying_part(n_embd: int, tied: bool) -> str:
    """An arm's part name: its metrics are logged as "tying-n_embd=16-tied/val_loss", and an
    interruption names it."""
    return f"tying-n_embd={n_embd}-{'tied' if tied else 'untied'}"


def output_params(lm: charlm.Config, vocab_size: int) -> int:
    """The output layer's own parameters: untied the head H V + V; tied the projection H C + C
    and the logits' bias V (the matrix is the embedding's)."""
    H, C, V = lm.n_hidden, lm.n_embd, vocab_size
    return H * C + C + V if lm.tied else H * V + V


def report_tying(run, cfg: Config, train, ctx: loop.Context) -> dict:
    """The char LM untied and tied at each of cfg.tying_embd, trained with `train(lm_cfg, data,
    ctx=...) -> (model, History)` (the framework's lib/charlm.train) on the same batches; a
    table of parameters and validation loss. A stop ends it after the current step, with the
    finished arms in the summary."""
    data = charlm.load_data(charlm.Config())
    V = data.vocab_size
    rows, summary = [], {}
    for n_embd in cfg.tying_embd_list:
        for tied in (False, True):
            lm = tying_config(cfg, n_embd, tied)
            _, history = train(lm, data, ctx=ctx.part(tying_part(n_embd, tied)))
            if run.should_stop():
                return summary
            loss = history.val_loss[-1]  # the last step is evaluated
            name = "tied" if tied else "untied"
            rows.append((n_embd, name, output_params(lm, V), lm.n_params(V), loss))
            summary |= {
                f"tying n_embd={n_embd} {name} params": lm.n_params(V),
                f"tying n_embd={n_embd} {name} val_loss": loss,
            }
    report.table(
        f"tying: the char LM (vocabulary V={V}, hidden H={charlm.Config.n_hidden}), "
        f"{cfg.tying_steps} steps per arm",
        ["n_embd C", "output layer", "output params", "all params", "val loss (nats/char)"],
        rows,
    )
    return summary


def minilm_vectors(cfg: Config, encode) -> dict:
    """MiniLM sentence vectors of the passages: {"train", "queries", "documents"} (N, 384)
    (`encode`: texts -> vectors, the framework's lib/bert.encode)."""
    p = passages(cfg)
    return {
        "train": encode(p.train),
        "queries": encode(p.queries),
        "documents": encode(p.documents),
    }


@dataclasses.dataclass(frozen=True)
class Parts:
    """What `week1 run embedding_tradeoffs` needs from a framework."""

    fit: Callable  # (sentences, settings) -> embeddings.Trained: lib/embeddings.fit (dims)
    encode: Callable  # texts -> (N, 384) MiniLM sentence vectors: lib/bert.encode
    train: Callable  # (cfg, data, ctx=) -> (the Matryoshka head, History)
    project: Callable  # (head, x (N, 384) numpy) -> z (N, 384) numpy
    search: Callable  # (queries, documents, cfg) -> the quantised searches' top 10
    train_lm: Callable  # (lm_cfg, data, ctx=) -> (model, History): lib/charlm.train (tying)


def run_parts(cfg: Config, run, parts: Parts, compile: bool = False) -> dict:
    """`week1 run embedding_tradeoffs`: the parts cfg.parts names, in turn; compile: torch
    only."""
    summary = {}
    if "dims" in cfg.part_list:
        sentences = words.sentences(cfg.corpus, cfg.max_words)
        summary |= report_dims(run, cfg, sentences, parts.fit)
    if {"matryoshka", "quantise"} & set(cfg.part_list):
        data = minilm_vectors(cfg, parts.encode)
    if "matryoshka" in cfg.part_list:
        model, history = parts.train(cfg, data, ctx=loop.Context.of_run(run, compile))
        if run.should_stop():
            return summary | history.summary()
        summary |= history.summary()
        summary |= report_matryoshka(
            cfg,
            data["queries"],
            data["documents"],
            data["train"],
            lambda x: parts.project(model, x),
        )
    if "quantise" in cfg.part_list:
        found = parts.search(data["queries"], data["documents"], cfg)
        summary |= report_quantise(data["queries"], data["documents"], found)
    if "tying" in cfg.part_list:
        summary |= report_tying(run, cfg, parts.train_lm, loop.Context.of_run(run, compile))
    return summary


# `week1 compare embedding_tradeoffs`: the Matryoshka head from the same start on the same
# batches and dropout masks.
COMPARE_QUICK = {"steps": 100, "eval_every": 25, "train_passages": 600, "eval_passages": 200}
COMPARE_TEST = {"steps": 6, "eval_every": 3, "warmup_steps": 2, "train_passages": 64,
                "eval_passages": 32, "batch_size": 16}  # fmt: skip


def compare_cases(cfg: Config) -> list[Case]:
    return [Case("matryoshka", "val loss", TRAJECTORY)]


def compare_curves(history: loop.History) -> Curves:
    return Curves.of(history)


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "matryoshka_loss",
        hints=(
            (
                "MatryoshkaLoss around MultipleNegativesRankingLoss: for every prefix length m, a "
                "cross-entropy over the batch where text i must pick its own other view among all "
                "B, summed over the prefixes."
            ),
            (
                "For each m: logits = scale * shrink(a, m) @ shrink(b, m).T (B, B) (shrink: the "
                "first m dimensions, L2-normalised); target = arange(B); add the mean cross-"
                "entropy."
            ),
        ),
        jax=Part(
            "week1_jax/embedding_tradeoffs.py::matryoshka_loss",
            "test_embedding_tradeoffs.py::test_head_loss_and_grads_jax_equals_torch",
        ),
        torch=Part(
            "week1_torch/embedding_tradeoffs.py::matryoshka_loss",
            "test_embedding_tradeoffs.py::test_matryoshka_loss_equals_the_written_out_maths",
        ),
    ),
)
