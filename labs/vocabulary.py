"""Lab: vocabulary size and management, and why subwords beat a word vocabulary.

What it teaches
---------------
The vocabulary is a budget split between two costs. A bigger one makes sequences shorter
(fewer tokens per character: more text per context window, fewer steps of compute), but its
embedding matrix (and the output layer's, unless tied) grows as V x d: at d = 768, 64k
tokens are 49M parameters, 197 MB in float32, before the model has a single layer.

1. The size sweep: one byte-level BPE run to the largest size; a BPE of any smaller size is
   the first merges of it (training is greedy: the first k merges do not depend on how many
   come after), so every size in the sweep is a prefix of one merge list. For each size:
   tokens per character on held-out English, code and 28 languages, and the embedding
   matrix's parameters and bytes (float32 and bfloat16).
2. The word-level baseline: a vocabulary of whitespace-separated words from the same
   training text. How many words cover 95% of the training text's word occurrences, and what
   share of held-out words is out of vocabulary (OOV) with that vocabulary and with every
   training word, per kind and per language. A word vocabulary cannot spell a word it has
   not seen, and inflected, compounded, code and unsegmented text (Chinese, Japanese) are
   full of those; byte-level BPE has no OOV at all (bytes are its alphabet).
3. Adding tokens to a trained tokenizer (HF `Tokenizer.add_tokens`): new ids after the last,
   the tokenizer now keeps each new string whole, and the embedding matrix grows by as many
   rows, each new row the mean of the old ones (week1_jax/vocabulary.py and
   week1_torch/vocabulary.py: `resize_embedding`). The mean keeps a new token's vector inside
   the cloud of trained ones, so under a tied output layer its logit starts near the average
   one and the model's predictions barely move until it is trained (Hewitt 2021, "Initializing
   new word embeddings for pretrained language models"); zeros or a fresh random draw would
   not be.

Not here: the char LM trained per vocabulary size and per unit at a fixed compute budget
(it needs the shared training loop, being rewritten).

How to read the results
-----------------------
- tokens/char falls fast from 1k to 8k, then slowly: each doubling buys less compression
  while the embedding bytes double. Code and the languages the corpus has little of gain
  less from the larger sizes than English: the merges go where the text is frequent.
- word vocabulary: the 95%-coverage size against the number of distinct words; the OOV rate
  on held-out text is what a word-level model would map to <unk>.
- added tokens: ids, how many tokens the held-out English needs before and after, and the
  check that the old rows are unchanged and the new rows equal their mean.

Run it:  week1 run vocabulary --framework torch   (or jax; --sizes=1000,4000,16000 ...)

History: docs/history.md#sennrich-2016, #radford-2019
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from week1.config import Range, require
from week1.data import code, multilingual, shakespeare
from week1.exercises import Exercise, Part
from week1.tokenization import hf
from week1.tokenization.bytelevel import ALPHABET

KINDS = ("english", "code", "multilingual")


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: str = "1000,2000,4000,8000,16000,32000,64000"  # BPE vocabulary sizes, comma-separated
    chars_per_kind: int = 2_000_000  # training characters of English and of code
    held_out_every: int = 10  # every k-th text is held out
    n_embd: int = 768  # the embedding width the parameter counts assume
    coverage: float = 0.95  # the word vocabulary covers this share of training words
    added_size: int = 8000  # the BPE size the added tokens go into
    new_tokens: str = "THESEUS,HIPPOLYTA,self.assertEqual,<|user|>"  # comma-separated

    RANGES = {
        "chars_per_kind": Range(10_000),
        "held_out_every": Range(2),
        "coverage": Range(0, 1, low_open=True),
    }

    def check(self) -> None:
        require(
            all(s.strip().isdigit() and int(s) >= 300 for s in self.sizes.split(",")),
            f"sizes={self.sizes!r}: must be comma-separated ints >= 300",
        )
        require(self.added_size >= 300, f"added_size={self.added_size}: must be >= 300")
        require(bool(self.added), f"new_tokens={self.new_tokens!r}: give at least one token")

    @property
    def size_list(self) -> list[int]:
        return sorted({int(s) for s in self.sizes.split(",")})

    @property
    def added(self) -> list[str]:
        return [t for t in self.new_tokens.split(",") if t]


@dataclasses.dataclass(frozen=True)
class Corpus:
    train: list[str]
    held_out: dict[str, list[str]]  # kind -> texts
    languages: dict[str, tuple[list[str], list[str]]]  # language -> (train, held-out) texts


def load_corpus(cfg: Config) -> Corpus:
    """Shakespeare, the standard library's code and the 28 chatterbot languages; every
    `held_out_every`-th text (line or utterance) held out."""

    def split(texts):
        return [t for i, t in enumerate(texts) if i % cfg.held_out_every], texts[
            :: cfg.held_out_every
        ]

    english = [t for t in shakespeare.load_text()[: cfg.chars_per_kind].splitlines() if t.strip()]
    source = [t for t in "".join(code.load_texts(cfg.chars_per_kind)).splitlines() if t.strip()]
    train, held_out, languages = [], {}, {}
    for kind, texts in (("english", english), ("code", source)):
        fit, held_out[kind] = split(texts)
        train += fit
    held_out["multilingual"] = []
    for language, texts in multilingual.load_texts().items():
        languages[language] = split(texts)
        train += languages[language][0]
        held_out["multilingual"] += languages[language][1]
    return Corpus(train, held_out, languages)


def truncated(merges: list, vocab: dict, size: int):
    """The HF byte-level BPE of `size` entries that is the first merges of a larger run: the
    merges up to the one that made the size-th token (a merge that rebuilds an existing token
    adds none), and the tokens with ids below size (ids are given in order of creation)."""
    from tokenizers import models

    n, m = len(ALPHABET), 0
    made = {t for t, i in vocab.items() if i < n}
    while n < size and m < len(merges):
        token = "".join(merges[m])
        m += 1
        if token not in made:
            made.add(token)
            n += 1
    keep = {t: i for t, i in vocab.items() if i < n}
    return hf.byte_level(models.BPE(keep, merges[:m]))


def largest_bpe(cfg: Config):
    """(corpus, merges, vocab) of one BPE run at the largest size asked for."""
    return _largest_bpe(
        Config(chars_per_kind=cfg.chars_per_kind, held_out_every=cfg.held_out_every),
        max(cfg.size_list + [cfg.added_size]),
    )


@functools.cache  # keyed by what the corpus and the run depend on, not the other settings
def _largest_bpe(data: Config, size: int):
    corpus = load_corpus(data)
    merges, vocab = hf.merges_and_vocab(hf.train_bpe(corpus.train, size))
    return corpus, merges, vocab


def sweep(cfg: Config) -> list[tuple]:
    """Rows (size, tokens/char per kind, embedding parameters, MB in float32 and bfloat16)."""
    corpus, merges, vocab = largest_bpe(cfg)
    rows = []
    for size in cfg.size_list:
        tok = truncated(merges, vocab, size)
        per_kind = []
        for kind in KINDS:
            texts = corpus.held_out[kind]
            n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
            per_kind.append(n_tokens / sum(map(len, texts)))
        params = tok.get_vocab_size() * cfg.n_embd
        rows.append((tok.get_vocab_size(), *per_kind, params, params * 4 / 1e6, params * 2 / 1e6))
    return rows


def word_counts(texts: list[str]) -> dict[str, int]:
    counts = {}
    for text in texts:
        for word in text.split():
            counts[word] = counts.get(word, 0) + 1
    return counts


def coverage_size(counts: dict[str, int], share: float) -> int:
    """The fewest most-frequent words whose occurrences make up `share` of all occurrences."""
    freq = np.sort(np.fromiter(counts.values(), np.int64))[::-1]
    return int(np.searchsorted(np.cumsum(freq), share * freq.sum()) + 1)


def oov_rate(texts: list[str], vocab: set) -> float:
    words = [w for t in texts for w in t.split()]
    return sum(w not in vocab for w in words) / max(1, len(words))


def word_baseline(cfg: Config) -> tuple[dict, list[tuple]]:
    """The word vocabulary's sizes, and rows (text, OOV rate with every training word, OOV
    rate with the coverage vocabulary) for each kind and each language."""
    corpus = largest_bpe(cfg)[0]
    counts = word_counts(corpus.train)
    k = coverage_size(counts, cfg.coverage)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    full, top = set(counts), set(ranked[:k])
    sizes = {"distinct training words": len(counts), f"words for {cfg.coverage:.0%}": k}
    rows = [
        (f"all {kind}", *(oov_rate(corpus.held_out[kind], v) for v in (full, top)))
        for kind in KINDS
    ]
    rows += [
        (f"chatterbot {language}", oov_rate(held, full), oov_rate(held, top))
        for language, (_, held) in sorted(corpus.languages.items())
    ]
    return sizes, rows


def added_tokens(cfg: Config):
    """A trained BPE of `added_size` with `new_tokens` added: (tokenizer, size before, each
    token's id, how many were new, (held-out English + code tokens before, after)). A string
    already in the vocabulary keeps its id and adds no row."""
    corpus, merges, vocab = largest_bpe(cfg)
    tok = truncated(merges, vocab, cfg.added_size)
    texts = corpus.held_out["english"] + corpus.held_out["code"]
    before = sum(len(e.ids) for e in tok.encode_batch(texts))
    n_old = tok.get_vocab_size()
    tok.add_tokens(cfg.added)  # its return value counts the known strings too
    n_new = tok.get_vocab_size() - n_old
    after = sum(len(e.ids) for e in tok.encode_batch(texts))
    ids = [tok.token_to_id(t) for t in cfg.added]
    return tok, n_old, ids, n_new, (before, after)


def start_embedding(vocab_size: int, n_embd: int, seed: int = 0) -> np.ndarray:
    """The 'trained' embedding matrix the resize starts from (float32, seeded)."""
    return np.random.default_rng(seed).normal(size=(vocab_size, n_embd)).astype(np.float32)


def resize_reference(weight: np.ndarray, n_new: int) -> np.ndarray:
    """numpy: the old rows, then n_new rows equal to their mean (float64 mean, cast)."""
    mean = weight.astype(np.float64).mean(0).astype(weight.dtype)
    return np.concatenate([weight, np.broadcast_to(mean, (n_new, weight.shape[1]))])


def report(cfg: Config, added, resized: np.ndarray, start: np.ndarray, framework: str) -> dict:
    """Print the three tables; the summary `week1 run` prints after them."""
    from week1 import report as rich_report

    rich_report.table(
        f"BPE vocabulary sweep (one run, truncated), embedding width {cfg.n_embd}",
        ["vocab", *(f"tokens/char {k}" for k in KINDS), "emb params", "MB fp32", "MB bf16"],
        sweep(cfg),
    )
    sizes, rows = word_baseline(cfg)
    rich_report.table(
        f"word-level baseline: {sizes}",
        ["held-out text", "OOV, all training words", f"OOV, {cfg.coverage:.0%} vocabulary"],
        rows,
    )
    tok, n_old, ids, n_new, (before, after) = added
    rich_report.table(
        f"tokens added to the BPE of {n_old} (held-out English + code: {before} -> {after} tokens)",
        ["token", "id", "new", "encoded as"],
        [
            (t, i, "yes" if i >= n_old else "already a token", str(tok.encode(t).tokens))
            for t, i in zip(cfg.added, ids, strict=True)
        ],
    )
    old_same = bool(np.array_equal(resized[:n_old], start))
    new_rows = resized[n_old:]
    mean_gap = float(np.abs(new_rows - resize_reference(start, n_new)[n_old:]).max(initial=0))
    return {
        f"{framework} embedding": f"{start.shape} -> {resized.shape}",
        "old rows unchanged": old_same,
        "new rows - mean of old, max |diff|": mean_gap,
        "new ids": str(ids),
    }


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "resize_embedding",
        hints=(
            (
                "New tokens need rows: a new embedding with n_new more rows, the old rows copied "
                "unchanged."
            ),
            (
                "Initialise the new rows at the mean of the old ones (a neutral start, as HF's "
                "resize_token_embeddings can do): concatenate old and broadcast(old.mean(0))."
            ),
        ),
        jax=Part(
            "week1_jax/vocabulary.py::resize_embedding",
            "test_vocabulary.py::test_resized_embedding_is_the_same_in_jax_torch_and_numpy",
        ),
        torch=Part(
            "week1_torch/vocabulary.py::resize_embedding",
            "test_vocabulary.py::test_resized_embedding_is_the_same_in_jax_torch_and_numpy",
        ),
    ),
)
