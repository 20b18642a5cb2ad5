"""Lab: byte-level BPE from scratch, merge-identical to HF tokenizers, three times.

What it teaches
---------------
How a GPT-2-style tokenizer is learned. Text is split into words by a regex, each
word becomes its UTF-8 bytes (written as 256 printable symbols, so nothing is ever
unknown), and the trainer repeatedly fuses the most frequent adjacent pair into a
new token until the vocabulary is full. Encoding replays the merges in the order
they were learned. Read week1/tokenization/ in order: bytelevel.py, train.py
(the pure-Python reference, with the naive loop beside it), model.py, hf.py.

The JAX and torch trainers keep every word back to back in one flat array and do
the per-merge work as array operations: find the occurrences of the best pair,
drop the neighbour pairs they destroy, insert the pairs they create, and keep a
count per pair slot, so that the next pair comes from a few reductions over the
slots (the highest count, then the smallest pair among the ties). Like the
reference, a merge touches only the occurrences of the merged pair, with two
exceptions where every pair is counted afresh: the table of pair slots is full,
or a merge creates a token that already exists (rare: Shakespeare and code never
hit it; a test forces it).

How to read the results
-----------------------
- `first_merges`: 'Ġ' is a space, 'Ċ' a newline. The first merges are ' t',
  'he', ' a': frequent English pairs, then whole words (' the' within the first
  dozen; ' and' just past the 30 shown, `--show_merges=40`).
- `bytes_per_token`: compression on the training text. Bytes are 1 token
  each before training; Shakespeare at vocab 8000 gets about 3.4 bytes/token.
- `train_s` of JAX includes compiling its merge kernel (one per bucket of occurrence
  counts, a few seconds each on a CPU); `week1 bench bpe` shows the first call apart.
- `same_as_hf`: 1 when our merges, vocabulary and ids equal HF BpeTrainer's
  trained on the same texts (ties broken the same way: higher count first,
  then the smaller pair of ids).
- `week1 bench bpe`: training time of HF (Rust), our JAX, torch and pure-Python
  trainers and the naive recount loop (extrapolated from its first merges), all
  as ratios to HF measured in one run; encode throughput too.

Run it:  week1 run bpe --framework torch   (or jax; --vocab_size=1000 ...)

History: docs/history.md#sennrich-2016, #radford-2019
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from week1.config import Range, require
from week1.data import shakespeare
from week1.exercises import Exercise, Part
from week1.tokenization import hf
from week1.tokenization.model import BPE


@dataclasses.dataclass(frozen=True)
class Config:
    # 256 bytes + the special tokens at least; at most 46340 = floor(sqrt(2**31)): the JAX
    # trainer keys a pair (a, b) as a * vocab_size + b in int32 (both frameworks keep one range).
    RANGES = {"vocab_size": Range(257, 46340)}

    vocab_size: int = 8000
    min_frequency: int = 0
    special_tokens: str = "<|endoftext|>"  # comma-separated
    corpus_chars: int = 0  # 0: the whole 5.3 MB of Shakespeare
    show_merges: int = 30
    naive_merges: int = 3  # merges the benchmark times the naive loop for

    def check(self) -> None:
        require(
            self.vocab_size >= 256 + len(self.specials),
            f"vocab_size={self.vocab_size}: must be >= {256 + len(self.specials)} (bytes + "
            "special tokens)",
        )
        require(self.min_frequency >= 0, f"min_frequency={self.min_frequency}: must be >= 0")
        require(self.corpus_chars >= 0, f"corpus_chars={self.corpus_chars}: must be >= 0")
        require(self.naive_merges > 0, f"naive_merges={self.naive_merges}: must be > 0")

    @property
    def specials(self) -> tuple[str, ...]:
        return tuple(t for t in self.special_tokens.split(",") if t)


def corpus_texts(cfg: Config) -> list[str]:
    """Shakespeare as lines (each one a text, as HF's train_from_iterator gets them)."""
    text = shakespeare.load_text()
    if cfg.corpus_chars:
        text = text[: cfg.corpus_chars]
    return text.splitlines(keepends=True)


def encode_sample(texts: list[str], n_chars: int = 1_000_000) -> list[str]:
    """The last ~1 MB of the corpus, as lines: what the benchmark encodes."""
    out, total = [], 0
    for text in reversed(texts):
        out.append(text)
        total += len(text)
        if total >= n_chars:
            break
    return out[::-1]


def flat_words(words: list[list[int]], counts: list[int]):
    """The array trainers' layout: all words back to back, each between -1 sentinels.

    Returns sym (N,) int64 symbol ids and weight (N,) int64, the count of the word
    each position belongs to (0 at sentinels). Position N-1 is an extra sentinel the
    array code uses as a harmless target for masked-out writes.
    """
    lengths = np.array([len(w) for w in words])
    sym = np.full(int(lengths.sum()) + len(words) + 2, -1, np.int64)
    weight = np.zeros_like(sym)
    starts = 1 + np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    sym[np.repeat(starts, lengths) + _ranks(lengths)] = np.concatenate(words)
    weight[np.repeat(starts, lengths) + _ranks(lengths)] = np.repeat(counts, lengths)
    return sym, weight


def _ranks(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., len-1 for each word, concatenated."""
    return np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def summarize(bpe: BPE, train_s: float, texts: list[str], cfg: Config, path) -> dict:
    """What `week1 run bpe` prints: saves the tokenizer, trains HF on the same texts, compares."""
    bpe.save(path)
    start = time.perf_counter()
    ref = hf.train_bpe(texts, cfg.vocab_size, cfg.min_frequency, cfg.specials)
    hf_s = time.perf_counter() - start
    text = "".join(texts)
    start = time.perf_counter()
    ids = bpe.encode(text)
    encode_s = time.perf_counter() - start
    merges, vocab = hf.merges_and_vocab(ref)
    same = merges == bpe.merges and vocab == bpe.vocab and ids == ref.encode(text).ids
    shown = "\n".join(
        f"{r:4d}  {a!r} + {b!r} -> {a + b!r}"
        for r, (a, b) in enumerate(bpe.merges[: cfg.show_merges])
    )
    return {
        "vocab_size": len(bpe.vocab),
        "merges": len(bpe.merges),
        "train_s": train_s,
        "hf_train_s": hf_s,
        "train_time_vs_hf": train_s / hf_s,
        "bytes_per_token": len(text.encode()) / len(ids),
        "encode_MB_per_s": len(text.encode()) / 1e6 / encode_s,
        "same_as_hf": int(same),
        "tokenizer": f"{path.name} (in the run folder)",
        "first_merges": shown,
    }


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "best",
        hints=(
            (
                "The most frequent pair wins; among equal counts, the smallest key (a * V + b): "
                "that is how HF's trainer breaks ties, and the ids must match it exactly."
            ),
            (
                "jax: three reductions over the slots: top = max(count[1:]); key = min of the keys "
                "whose count is top; the slot where both hold. torch: the score already packs count"
                " and tie-break, argmax it and unpack count = score >> shift, a = key // V, b = key"
                " % V."
            ),
        ),
        jax=Part(
            "week1_jax/bpe.py::best",
            (
                "test_bpe.py::test_same_as_hf[shakespeare-300-jax]",
                "test_bpe.py::test_same_as_hf[min_frequency-specials-jax]",
            ),
        ),
        torch=Part(
            "week1_torch/bpe.py::Pairs.best",
            (
                "test_bpe.py::test_same_as_hf[shakespeare-300-torch]",
                "test_bpe.py::test_same_as_hf[min_frequency-specials-torch]",
            ),
        ),
    ),
    Exercise(
        "merge",
        hints=(
            (
                "Every occurrence (a, b) becomes `new`: unlink b from the linked list of positions,"
                " then move counts: the pairs (x, a) and (b, y) around each occurrence lose one, "
                "(x, new) and (new, y) gain one."
            ),
            (
                "In a run a a a a with a == b only positions 0, 2, ... of the run merge (left to "
                "right): keep the occurrences whose distance from the run's start is even."
            ),
            (
                "Read the occurrences from order[start:start+size], keep those whose pslot is this "
                "slot, sort them; right = nxt[occ], left = prv[occ]; then update the counts with "
                "scatter-adds (index_add_ / .at[].add)."
            ),
        ),
        jax=Part(
            "week1_jax/bpe.py::merge",
            (
                "test_bpe.py::test_same_as_hf[shakespeare-1000-jax]",
                "test_bpe.py::test_same_as_hf[code-1000-jax]",
            ),
        ),
        torch=Part(
            "week1_torch/bpe.py::Pairs.merge",
            (
                "test_bpe.py::test_same_as_hf[shakespeare-1000-torch]",
                "test_bpe.py::test_same_as_hf[code-1000-torch]",
            ),
        ),
    ),
)
