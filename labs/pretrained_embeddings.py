"""Lab: pretrained and contextual embeddings: Google News word2vec, and a BERT encoder
(all-MiniLM-L6-v2) written from scratch in Flax and in torch.

What it teaches
---------------
A static embedding gives a word one vector, whatever the sentence: "bank" is the
same point next to "loan" and next to "river". A contextual encoder (BERT) gives
each *occurrence* its own vector, computed from the whole sentence by
self-attention. all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT distilled and then
trained on a billion sentence pairs so that the mean of its last layer, L2
normalised, is a sentence embedding: cosine similarity between two such vectors
measures how close two sentences are in meaning (semantic search).

The encoder is written out in both frameworks (week1_jax/lib/bert.py,
week1_torch/lib/bert.py): token + type + position embeddings, 6 post-LN layers of
12-head self-attention with the padding mask and an exact-GELU MLP, LayerNorm eps
1e-12 from config.json. The packaged model.safetensors is read with `safetensors`
and mapped onto each through the literal table `WEIGHT_MAP` below; texts go
through the packaged tokenizer.json (lower-casing WordPiece). The parity tests
compare every layer's hidden states with transformers' `BertModel` loaded from
the same folder.

How to read the results
-----------------------
- "one word, many vectors": per word, the cosine between sentences of its
  last-layer vectors (the mean over the word's WordPiece tokens). Sentences 1-2
  use one sense, 3-4 the other: the within-sense cosines are higher on average
  than the across-sense ones, not for every pair (this encoder was trained for
  sentence meaning, not word senses). The static vector is one and the same in
  all four sentences; its nearest neighbours (printed under the tables) mix the
  senses or follow the one its corpus prefers: Google News is case-sensitive and
  has "Apple" but not "apple", and its "Apple" neighbours are companies.
- "where the sense is resolved": the same within/across cosines layer by layer.
  At layer 0 (embeddings: the word's vector plus its position) the occurrences
  are almost identical; attention pulls them apart in the layers above.
- semantic search: the sentences ranked by cosine with each query. The best match
  shares few words with the query: the similarity is of meaning, not spelling.
- static vectors: Spearman rho on WordSim353 (relatedness) and SimLex-999
  (similarity) and 3CosAdd analogy accuracy, scored as gensim scores them. With
  `--vectors=PATH` (a word2vec text or binary file, e.g. from the word2vec lab)
  both sets are scored again on the words both know ("shared words"): the same
  pairs, the same questions, the same candidate answers. Google News was trained
  on about 100 billion words, the word2vec lab's corpora have about a million.
  By Zipf's law a word of frequency rank r in an N-word corpus occurs about
  N / (r ln V) times: rank 3,000 is a few dozen occurrences in a million words,
  millions in Google News. The last two tables show where the two sets rank a
  pair's similarity most differently, and their agreement by the trained corpus'
  frequency of the rarer word: a vector learnt from a few dozen contexts is mostly
  noise, so expect the rare third to agree least.
- sentences/s: the same batches (Shakespeare lines, padded to one length)
  through JAX jit (`--framework jax`), torch eager, torch.compile and
  transformers' own BertModel (`--framework torch`); `week1 bench
  pretrained_embeddings` puts all four in one table with ratios. On a busy CPU
  the absolute numbers move; compare ratios from one run.

Run it:  week1 run pretrained_embeddings --framework jax     (or torch)
         week1 run pretrained_embeddings --framework torch --vectors=runs/<word2vec run>/vectors.bin
         week1 bench pretrained_embeddings
         week1 parity pretrained_embeddings

History: docs/history.md#peters-2018, #devlin-2019
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np

from week1 import convert, report
from week1.config import require
from week1.data import minilm, shakespeare, vectors
from week1.exercises import Exercise, Part
from week1.timing import time_calls

N_LAYERS = convert.MINILM_LAYERS  # all-MiniLM-L6-v2
# Checkpoint names <-> Flax paths: a table of week1/convert.py, which other labs reuse.
WEIGHT_MAP = convert.MINILM

# The same word in sentences 1-2 in one sense, 3-4 in another.
SENSES = {
    "bank": (
        "She paid the cheque in at the bank before it closed.",
        "The bank raised its interest rate on mortgages again.",
        "We had a picnic on the grassy bank of the river.",
        "The canoe drifted slowly toward the muddy bank.",
    ),
    "bat": (
        "He swung the bat and hit the ball over the fence.",
        "She bought a new baseball bat for the season.",
        "A bat flew out of the cave at dusk.",
        "The bat hunts moths in the dark using echolocation.",
    ),
    "apple": (
        "Apple released a new iPhone this autumn.",
        "Shares of Apple rose after the earnings report.",
        "She ate a crisp red apple from the orchard.",
        "Slice the apple and bake it with cinnamon.",
    ),
}

SEARCH_CORPUS = (
    "The central bank cut interest rates to support the economy.",
    "You can withdraw cash from any machine in the network.",
    "Our savings account pays two percent a year.",
    "Bats leave their roosts at sunset to feed on insects.",
    "Owls hunt mice by night with silent wings.",
    "The team won the match with a six in the last over.",
    "Bananas and oranges are a quick and healthy snack.",
    "Grate the carrots and stir them into the batter.",
    "The river burst its banks after days of rain.",
    "The new phone has a faster chip and a better camera.",
    "The museum opens a new exhibition of Dutch paintings.",
    "Heavy snow closed the mountain roads overnight.",
)
SEARCH_QUERIES = (
    "How do I get money out of my account?",
    "animals that fly in the dark",
    "something good to eat between meals",
    "flooding after a storm",
)


@dataclasses.dataclass(frozen=True)
class Config:
    batch_size: int = 32  # texts per forward pass
    max_length: int = 256  # tokens per text: sentence-transformers' max_seq_length for this model
    bench_sentences: int = 128  # Shakespeare lines per timed pass
    iters: int = 5  # timed passes per variant (after one warm-up)
    top_k: int = 3  # results shown per query in the semantic-search demo
    vectors: str = ""  # word2vec file (text or binary) from the word2vec lab, compared statically

    def check(self) -> None:
        require(1 <= self.batch_size <= 4096, f"batch_size={self.batch_size}: must be in [1, 4096]")
        limit = minilm.BertConfig().max_position_embeddings
        require(
            2 <= self.max_length <= limit,
            f"max_length={self.max_length}: must be in [2, {limit}] (position embeddings)",
        )
        require(
            1 <= self.bench_sentences <= 100_000,
            f"bench_sentences={self.bench_sentences}: must be in [1, 100000]",
        )
        require(1 <= self.iters <= 1000, f"iters={self.iters}: must be in [1, 1000]")
        require(
            1 <= self.top_k <= len(SEARCH_CORPUS),
            f"top_k={self.top_k}: must be in [1, {len(SEARCH_CORPUS)}]",
        )
        require(
            not self.vectors or pathlib.Path(self.vectors).is_file(),
            f"vectors={self.vectors!r}: no such file (a word2vec text or binary file)",
        )


def pretrained(cfg: Config):
    """The packaged model: (BertConfig, {checkpoint name: array}, tokenizer)."""
    return minilm.load_config(), checkpoint_weights(), minilm.load_tokenizer(cfg.max_length)


def checkpoint_weights() -> dict[str, np.ndarray]:
    """model.safetensors as the table's torch names, checked against WEIGHT_MAP."""
    weights = minilm.load_weights()
    want = {torch for torch, _, _ in WEIGHT_MAP}
    require(
        set(weights) == want,
        f"model.safetensors does not match WEIGHT_MAP: missing {sorted(want - set(weights))}, "
        f"unexpected {sorted(set(weights) - want)}",
    )
    return weights


def embed_in_batches(embed, tokenizer, texts: list[str], cfg: Config) -> np.ndarray:
    """`embed(Batch) -> (B, C) numpy` over `texts` (at least one), `cfg.batch_size` at a time:
    (len(texts), C) float32.

    Texts are sorted by length first (as sentence-transformers does), so each
    batch pads little; the rows come back in the order of `texts`.
    """
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    order = np.argsort(lengths, kind="stable")  # (N,): shortest first
    parts = [
        embed(minilm.batch(tokenizer, [texts[i] for i in rows], cfg.max_length))
        for rows in np.array_split(order, range(cfg.batch_size, len(texts), cfg.batch_size))
    ]
    by_length = np.concatenate(parts).astype(np.float32)  # (N, C), in `order`
    return by_length[np.argsort(order)]  # (N, C), in the order of `texts`


def word_positions(tokenizer, sentence: str, word: str) -> list[int]:
    """The token positions of the first whole-word, case-blind occurrence of `word`."""
    match = re.search(rf"\b{re.escape(word)}\b", sentence, flags=re.I)
    if match is None:
        raise ValueError(f"{word!r} is not in {sentence!r}")
    encoding = tokenizer.encode(sentence)
    return [
        t
        for t, (start, end) in enumerate(encoding.offsets)
        if encoding.special_tokens_mask[t] == 0 and match.start() <= start and end <= match.end()
    ]


def sense_batches(cfg: Config, tokenizer) -> dict:
    """For each demo word: (its sentences as one Batch, the word's token positions per sentence)."""
    return {
        word: (
            minilm.batch(tokenizer, list(sentences), cfg.max_length),
            [word_positions(tokenizer, s, word) for s in sentences],
        )
        for word, sentences in SENSES.items()
    }


def word_vectors(hidden: list, positions: list[list[int]]) -> np.ndarray:
    """The word's vector in each sentence at each layer: the mean over its WordPiece tokens.

    hidden: L + 1 arrays (S, T, C) of one forward pass; returns (L + 1, S, C).
    """
    return np.stack(
        [np.stack([h[i, p].mean(axis=0) for i, p in enumerate(positions)]) for h in hidden]
    )


def cosines(rows: np.ndarray) -> np.ndarray:
    """Cosine of every pair of rows (over the last two axes)."""
    unit = rows / np.linalg.norm(rows, axis=-1, keepdims=True)  # (..., S, C)
    return unit @ np.swapaxes(unit, -1, -2)  # (..., S, S)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def static_key(static, word: str) -> str | None:
    """`word`'s entry in the static vocabulary: as written, else capitalised (Google News is
    case-sensitive: it has "Apple", not "apple"), else None."""
    if static is None:
        return None
    return next((k for k in (word, word.capitalize()) if k in static.key_to_index), None)


def within_across(sim: np.ndarray) -> tuple[float, float]:
    """Mean cosine within a sense (sentences 1-2, 3-4) and across senses, of a (4, 4) table."""
    return float((sim[0, 1] + sim[2, 3]) / 2), float(sim[:2, 2:].mean())


def report_senses(contextual: dict, static=None) -> dict:
    """Per word, the last layer's cosine table between its sentences; per layer, the mean
    within-sense and across-sense cosines over the words. `contextual`: word -> (L + 1, 4, C);
    `static`: a week1.data.vectors.WordVectors (one vector per word, whatever the sentence)."""
    summary = {}
    for word, layers in contextual.items():
        sim = cosines(layers[-1])  # (4, 4)
        rows = [
            (f"{i + 1}: {_clip(sentence, 32)}", *(float(v) for v in sim[i]))
            for i, sentence in enumerate(SENSES[word])
        ]
        key = static_key(static, word)
        rows.append(
            (f"static {key!r}: one vector", *[1.0] * len(sim))
            if key
            else ("static: not in the vocabulary", *["-"] * len(sim))
        )
        report.table(
            f"'{word}': cosine of its last-layer vectors between sentences",
            ["sentence", "1", "2", "3", "4"],
            rows,
        )
        summary[f"{word} cos within sense"], summary[f"{word} cos across senses"] = within_across(
            sim
        )
        if key:
            neighbours = static.most_similar([key], topn=8)
            summary[f"static neighbours of {key!r}"] = ", ".join(w for w, _ in neighbours)
    layers = len(next(iter(contextual.values())))
    rows = []
    for layer in range(layers):
        pairs = [within_across(cosines(v[layer])) for v in contextual.values()]
        within, across = np.mean(pairs, axis=0)
        rows.append((layer if layer else "0 (embeddings)", within, across, within - across))
    report.table(
        "where the sense is resolved (mean over the words)",
        ["layer", "cos within sense", "cos across senses", "gap"],
        rows,
    )
    return summary


def search(query_vectors: np.ndarray, corpus_vectors: np.ndarray, k: int) -> list[list[tuple]]:
    """For each query, the k corpus sentences of highest cosine: [(index, cosine), ...]."""
    sim = query_vectors @ corpus_vectors.T  # (Q, N): unit vectors, so dot = cosine
    return [[(int(j), float(row[j])) for j in np.argsort(-row, kind="stable")[:k]] for row in sim]


def report_search(hits: list[list[tuple]]) -> dict:
    rows = [
        (query if rank == 0 else "", rank + 1, cos, SEARCH_CORPUS[j])
        for query, ranked in zip(SEARCH_QUERIES, hits, strict=True)
        for rank, (j, cos) in enumerate(ranked)
    ]
    report.table(
        "semantic search (cosine of sentence embeddings)",
        ["query", "rank", "cos", "sentence"],
        rows,
    )
    return {
        f"search top-1 cos: {q}": ranked[0][1]
        for q, ranked in zip(SEARCH_QUERIES, hits, strict=True)
    }


# ---------------------------------------------------------------------------------------------
# Static vectors: Google News against vectors trained by the word2vec lab


def load_static(cfg: Config) -> dict:
    """{"Google News": the 13k x 300 wefe subset, "trained": cfg.vectors (if given)}."""
    sets = {"Google News": vectors.load_pretrained()}
    if cfg.vectors:
        sets["trained"] = vectors.load_word2vec_format(cfg.vectors)
    return sets


def _folded_index(wv) -> dict:
    """Upper-cased word -> index, the most frequent case variant winning (as the evaluation
    folds case)."""
    return {w.upper(): i for i, w in reversed(list(enumerate(wv.words)))}


def shared_vocabulary(a, b) -> tuple:
    """`a` and `b` restricted to the words both know (case-blind, as the evaluation is), each in
    its own frequency order: the same pairs and questions get scored for both, and analogy
    answers are searched among the same words."""
    folded_a, folded_b = _folded_index(a), _folded_index(b)

    def keep(wv, other):
        rows = [i for i, w in enumerate(wv.words) if w.upper() in other]
        return vectors.WordVectors([wv.words[i] for i in rows], wv.vectors[rows])

    return keep(a, folded_b), keep(b, folded_a)


def pair_cosines(a, b) -> list[tuple]:
    """(set, word, word, human score, cos in a, cos in b, frequency rank in b of the rarer word)
    for the WordSim353 and SimLex pairs both know; `b` is the trained set (most frequent
    first)."""
    index_a, index_b = _folded_index(a), _folded_index(b)
    rows, seen = [], set()
    for name, file in vectors.PAIR_SETS.items():
        for x, y, human in vectors.read_pairs(vectors.eval_path(file)):
            X, Y = x.upper(), y.upper()
            if (name, X, Y) in seen:  # WordSim353's file repeats a few pairs
                continue
            seen.add((name, X, Y))
            if all(w in index_a and w in index_b for w in (X, Y)):
                cos_a = float(a.unit[index_a[X]] @ a.unit[index_a[Y]])
                cos_b = float(b.unit[index_b[X]] @ b.unit[index_b[Y]])
                rows.append((name, x, y, human, cos_a, cos_b, max(index_b[X], index_b[Y]) + 1))
    return rows


def report_static(sets: dict, probes=("king", "computer", "river", "happy")) -> dict:
    """Each set's scores (whole vocabulary, and on the shared one when a trained set is given),
    nearest neighbours of a few probes, and where the two sets disagree and why."""
    evaluated = {f"{name} (all its words)": wv for name, wv in sets.items()}
    if "trained" in sets:
        shared = shared_vocabulary(sets["Google News"], sets["trained"])
        evaluated |= {f"{name} (shared words)": wv for name, wv in zip(sets, shared, strict=True)}
    summary, rows = {}, []
    for label, wv in evaluated.items():
        score = vectors.evaluate(wv)
        rows.append(
            (
                label,
                len(wv),
                score["ws353"],
                score["ws353_pairs"],
                score["simlex"],
                score["simlex_pairs"],
                score["analogies"],
                score["analogy_questions"],
            )
        )
        summary |= {
            f"{label} {k}": v for k, v in score.items() if k in ("ws353", "simlex", "analogies")
        }
    report.table(
        "static vectors: Spearman rho (pairs) and 3CosAdd accuracy (questions)",
        ["vectors", "words", "WS353", "n", "SimLex", "n", "analogies", "n"],
        rows,
    )
    for name, wv in sets.items():
        near = wv.nearest(list(probes), topn=5)
        report.table(
            f"{name}: nearest neighbours",
            ["word", "neighbours (cosine)"],
            [(w, ", ".join(f"{n} {c:.2f}" for n, c in ns)) for w, ns in near.items()],
        )
    if "trained" in sets:
        summary |= report_disagreement(pair_cosines(*shared))
    return summary


def report_disagreement(rows: list[tuple]) -> dict:
    """Where the trained vectors' similarity ranking departs most from Google News's, and how
    that depends on how frequent the words were in the trained corpus."""
    if len(rows) < 6:
        report.console.print("too few pairs known to both sets to compare them")
        return {}
    cos_a, cos_b = np.array([r[4] for r in rows]), np.array([r[5] for r in rows])
    rarity = np.array([r[6] for r in rows])  # (P,) frequency rank of the rarer word
    # Disagreement: how far apart the pair sits in the two rankings, as a fraction of all pairs.
    ranks_a, ranks_b = (np.argsort(np.argsort(c, kind="stable")) for c in (cos_a, cos_b))
    gap = np.abs(ranks_a - ranks_b) / len(rows)  # (P,)
    worst = np.argsort(-gap, kind="stable")[:8]
    report.table(
        "pairs ranked most differently (rank gap: as a fraction of the pairs)",
        ["pair", "human", "cos GN", "cos trained", "rank gap", "rarer word's rank"],
        [
            (
                f"{rows[i][1]}-{rows[i][2]}",
                rows[i][3],
                *map(float, (cos_a[i], cos_b[i], gap[i])),
                int(rarity[i]),
            )
            for i in worst
        ],
    )
    # Split the pairs into thirds by the rarer word's frequency rank in the trained corpus.
    order = np.argsort(rarity, kind="stable")
    summary, table = {}, []
    for label, part in zip(("frequent", "middle", "rare"), np.array_split(order, 3), strict=True):
        rho = vectors.spearman(cos_a[part], cos_b[part])
        table.append(
            (
                label,
                f"{rarity[part].min()}-{rarity[part].max()}",
                len(part),
                rho,
                float(np.median(gap[part])),
            )
        )
        summary[f"GN vs trained rho, {label} words"] = rho
    report.table(
        "agreement of the two sets by word frequency in the trained corpus",
        ["thirds", "rank of rarer word", "pairs", "rho(cos GN, cos trained)", "median rank gap"],
        table,
    )
    return summary


def bench_texts(cfg: Config) -> list[str]:
    """The first `bench_sentences` lines of Shakespeare with at least 6 words."""
    lines = (line.strip() for line in shakespeare.load_text().splitlines())
    texts = [line for line in lines if len(line.split()) >= 6]
    require(
        len(texts) >= cfg.bench_sentences,
        f"bench_sentences={cfg.bench_sentences}: the corpus has {len(texts)} such lines",
    )
    return texts[: cfg.bench_sentences]


def bench_batches(cfg: Config, tokenizer) -> list:
    """The timed workload: bench_texts in batches of batch_size, all padded to one length (one
    shape for jit and torch.compile), identical for every framework and variant."""
    texts = bench_texts(cfg)
    longest = max(len(e.ids) for e in tokenizer.encode_batch(texts))
    length = minilm.padded_length(longest, cfg.max_length)
    return [
        minilm.batch(tokenizer, texts[i : i + cfg.batch_size], cfg.max_length, length)
        for i in range(0, len(texts), cfg.batch_size)
    ]


def time_variants(variants: dict, batches: list, cfg: Config, sync, show_progress: bool) -> dict:
    """{name: Timing} of one pass of each `embed` over the same `batches` (first pass apart, one
    warm-up, then the median of iters synced passes)."""
    timings = {}
    for name, embed in variants.items():
        with report.progress(name, total=2 + cfg.iters, enabled=show_progress) as advance:

            def one_pass(embed=embed, advance=advance):
                out = [embed(b) for b in batches]
                advance()
                return out

            timings[name] = time_calls(one_pass, sync, warmup=1, iters=cfg.iters)
    return timings


def report_throughput(timings: dict, batches: list) -> dict:
    """Sentences/s of each variant (one pass over `batches` per timed call)."""
    n = sum(len(b.ids) for b in batches)
    B, T = batches[0].ids.shape
    base = next(iter(timings.values()))
    rows = [
        (name, n / t.median_s, base.median_s / t.median_s, t.first_s) for name, t in timings.items()
    ]
    report.table(
        f"encode throughput: {n} sentences, batches of {B} x {T} tokens",
        ["variant", "sentences/s", "speed vs first", "first pass s"],
        rows,
    )
    return {f"{name} sentences/s": n / t.median_s for name, t in timings.items()}


def run_demos(cfg: Config, tokenizer, forward, embed_texts, variants: dict, sync) -> dict:
    """`week1 run pretrained_embeddings` with the framework's model: `forward(batch)` -> its
    hidden states (the sense demo), `embed_texts(texts)` -> (N, C) numpy (the search demo),
    `variants` {name: embed(batch)} timed over the bench batches; then the static vectors."""
    static = load_static(cfg)
    contextual = {
        word: word_vectors(forward(batch)[0], positions)
        for word, (batch, positions) in sense_batches(cfg, tokenizer).items()
    }
    summary = report_senses(contextual, static["Google News"])
    queries, corpus = embed_texts(list(SEARCH_QUERIES)), embed_texts(list(SEARCH_CORPUS))
    summary |= report_search(search(queries, corpus, cfg.top_k))
    summary |= report_static(static)
    batches = bench_batches(cfg, tokenizer)
    timings = time_variants(variants, batches, cfg, sync, True)
    summary |= report_throughput(timings, batches)
    return summary


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "bert_self_attention",
        hints=(
            (
                "BERT's attention: q, k, v projections, split into heads, softmax(q k^T / sqrt(head"
                " dim) + mask bias), weighted sum of v, heads merged back."
            ),
            (
                "The padding mask (1 on real tokens), broadcast as (B, 1, 1, T), keeps a score or "
                "replaces it by the dtype's minimum (scores in at least float32), as transformers "
                "does."
            ),
            (
                "Shapes: (B, T, C) -> (B, nh, T, hd) for q, k, v; scores (B, nh, T, T); output (B, "
                "T, C) before the output dense layer (AddNorm does that)."
            ),
        ),
        jax=Part(
            "week1_jax/lib/bert.py::SelfAttention.__call__",
            "test_pretrained_embeddings.py::test_float64_jax_torch_transformers_agree_at_every_layer",
        ),
        torch=Part(
            "week1_torch/lib/bert.py::SelfAttention.forward",
            "test_pretrained_embeddings.py::test_float64_jax_torch_transformers_agree_at_every_layer",
        ),
    ),
)
