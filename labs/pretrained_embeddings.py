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
- "one word, many vectors": per word, the cosine of its contextual vectors (the
  mean of the last layer over the word's WordPiece tokens) between sentences.
  Sentences 1-2 use one sense, 3-4 the other: within-sense cosines are clearly
  higher than across-sense ones. The static vector is one and the same in all
  four sentences (cosine 1 everywhere). The Google News subset is case-sensitive
  and has "Apple" but not "apple": one string, one vector, and in news text the
  company wins.
- semantic search: the sentences ranked by cosine with each query. The query
  shares few words with its best match; similarity is in meaning, not spelling.
- static vectors: Spearman rho on WordSim353 and SimLex-999 and 3CosAdd analogy
  accuracy of the 300-d Google News vectors (trained on ~100 billion words) on
  the pairs both vocabularies cover, next to vectors you trained with the word2vec
  lab (`--vectors=PATH`, a word2vec text or binary file) on a corpus of about a
  million words. Where they disagree most, the trained vectors' words are rare in
  their corpus: a vector learnt from a handful of contexts is mostly noise.
  SimLex (similarity, not relatedness) is low for both: co-occurrence puts
  antonyms and associates together.
- sentences/s: the same batches (Shakespeare lines, padded to one length)
  through JAX jit (`--framework jax`), torch eager, torch.compile and
  transformers' own BertModel (`--framework torch`); `week1 bench
  pretrained_embeddings` puts all four in one table with ratios. On a busy CPU
  the absolute numbers move; compare ratios from one run.

Run it:  week1 run pretrained_embeddings --framework jax     (or torch)
         week1 run pretrained_embeddings --framework torch --vectors=runs/<word2vec run>/vectors.bin
         week1 bench pretrained_embeddings
         week1 parity pretrained_embeddings
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from week1 import report
from week1.config import require
from week1.convert import SAME, TRANSPOSE
from week1.data import minilm, shakespeare
from week1.timing import time_calls

# One encoder layer of the checkpoint (transformers' BertModel names, {i} = 0..5) and the
# Flax path of the same tensor in week1_jax.lib.bert; Linear weights transpose, (out, in) -> (in,
# out). The torch encoder (week1_torch.lib.bert) uses the checkpoint's names as they are.
_LAYER = (
    # torch (checkpoint)                                 flax                              transform
    ("attention.self.query.weight", "attention.self.query.kernel", TRANSPOSE),
    ("attention.self.query.bias", "attention.self.query.bias", SAME),
    ("attention.self.key.weight", "attention.self.key.kernel", TRANSPOSE),
    ("attention.self.key.bias", "attention.self.key.bias", SAME),
    ("attention.self.value.weight", "attention.self.value.kernel", TRANSPOSE),
    ("attention.self.value.bias", "attention.self.value.bias", SAME),
    ("attention.output.dense.weight", "attention.output.dense.kernel", TRANSPOSE),
    ("attention.output.dense.bias", "attention.output.dense.bias", SAME),
    ("attention.output.LayerNorm.weight", "attention.output.LayerNorm.scale", SAME),
    ("attention.output.LayerNorm.bias", "attention.output.LayerNorm.bias", SAME),
    ("intermediate.dense.weight", "intermediate.dense.kernel", TRANSPOSE),
    ("intermediate.dense.bias", "intermediate.dense.bias", SAME),
    ("output.dense.weight", "output.dense.kernel", TRANSPOSE),
    ("output.dense.bias", "output.dense.bias", SAME),
    ("output.LayerNorm.weight", "output.LayerNorm.scale", SAME),
    ("output.LayerNorm.bias", "output.LayerNorm.bias", SAME),
)
N_LAYERS = 6  # all-MiniLM-L6-v2
WEIGHT_MAP = (
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.embedding", SAME),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.embedding", SAME),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.embedding", SAME),
    ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.scale", SAME),
    ("embeddings.LayerNorm.bias", "embeddings.LayerNorm.bias", SAME),
    *(
        (f"encoder.layer.{i}.{torch}", f"encoder.layer.{i}.{flax}", how)
        for i in range(N_LAYERS)
        for torch, flax, how in _LAYER
    ),
    ("pooler.dense.weight", "pooler.dense.kernel", TRANSPOSE),
    ("pooler.dense.bias", "pooler.dense.bias", SAME),
)

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


def pretrained(cfg: Config):
    """The packaged model: (BertConfig, {checkpoint name: array}, tokenizer)."""
    return minilm.load_config(), checkpoint_weights(), minilm.load_tokenizer(cfg.max_length)


def checkpoint_weights(folder=None) -> dict[str, np.ndarray]:
    """model.safetensors as the table's torch names, checked against WEIGHT_MAP."""
    weights = minilm.load_weights(folder)
    want = {torch for torch, _, _ in WEIGHT_MAP}
    require(
        set(weights) == want,
        f"model.safetensors does not match WEIGHT_MAP: missing {sorted(want - set(weights))}, "
        f"unexpected {sorted(set(weights) - want)}",
    )
    return weights


def embed_in_batches(embed, tokenizer, texts: list[str], cfg: Config, hidden: int) -> np.ndarray:
    """`embed(Batch) -> (B, C) numpy` over `texts`, `cfg.batch_size` at a time: (len(texts), C).

    Texts are sorted by length first (as sentence-transformers does), so each
    batch pads little; the rows come back in the order of `texts`.
    """
    if not texts:
        return np.zeros((0, hidden), np.float32)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    order = np.argsort(lengths, kind="stable")  # (N,)
    out = np.zeros((len(texts), hidden), np.float32)  # (N, C)
    for start in range(0, len(texts), cfg.batch_size):
        rows = order[start : start + cfg.batch_size]
        batch = minilm.batch(tokenizer, [texts[i] for i in rows], cfg.max_length)
        out[rows] = embed(batch)
    return out


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


def cosines(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)  # (..., S, C)
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
    `static`: a gensim KeyedVectors (one vector per word, whatever the sentence) or None."""
    summary = {}
    for word, vectors in contextual.items():
        sim = cosines(vectors[-1])  # (4, 4)
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
            neighbours = static.most_similar(key, topn=8)
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
