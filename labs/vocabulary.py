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

4. The char LM (the training_loop lab's MLP, week1_{jax,torch}/lib/charlm.py, on the shared
   loop) trained on Shakespeare cut into each unit of `lm_units`: bytes, byte-level BPE of
   each size (trained on the LM's training text, every size a prefix of one run again) and
   words. A word is one piece of the same GPT-2 pre-tokenizer BPE starts from (" the", ",",
   "\n"), so the word unit is what BPE would reach with no limit on merges; the `<size>` - 1
   most frequent training words get ids and every other word is `<unk>`. The budget is fixed
   in steps: the same `lm_steps` batches of 64 windows of `lm_block_size` tokens, so every
   unit makes the same number of predictions. What differs is what one prediction covers (a
   BPE token is several characters: the same 8 tokens of context reach further back) and
   what it costs (the output layer is n_hidden x V: the FLOPs column). Losses are compared per
   character: validation nats per token x tokens per character, in bits.

How to read the results
-----------------------
- tokens/char falls fast from 1k to 8k, then slowly: each doubling buys less compression
  while the embedding bytes double. Code and the languages the corpus has little of gain
  less from the larger sizes than English: the merges go where the text is frequent.
- word vocabulary: the 95%-coverage size against the number of distinct words; the OOV rate
  on held-out text is what a word-level model would map to <unk>.
- added tokens: ids, how many tokens the held-out English needs before and after, and the
  check that the old rows are unchanged and the new rows equal their mean.
- LM per unit (vocabulary_lm.png): bits per character against the vocabulary size. From
  bytes to a few thousand BPE tokens the loss per character falls: each prediction covers
  more text and sees a longer context, at the cost of a bigger output layer (more
  parameters to fit in the same steps, more FLOPs per step). The word unit's figure is a
  lower bound that flatters it: predicting `<unk>` costs one token's loss, where the
  other units must spell the rare word out; its <unk> share says how much is hidden. At
  minutes of CPU the largest sizes are undertrained (their rare tokens are seen a few
  times): read the shape of the curve, and raise --lm_steps to see the optimum move right.

Run it:  week1 run vocabulary --framework torch   (or jax; --sizes=1000,4000,16000 ...)
         week1 compare vocabulary --quick             (the LM per unit, JAX vs torch)

History: docs/history.md#sennrich-2016, #radford-2019
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import zipfile

import numpy as np
import tokenizers

from week1 import charlm
from week1.comparison import Case
from week1.config import Range, require
from week1.data import aside, cache_dir, code, multilingual, shakespeare
from week1.exercises import Exercise, Part
from week1.tokenization import hf
from week1.tokenization.bytelevel import ALPHABET
from week1.tolerances import TRAJECTORY

KINDS = ("english", "code", "multilingual")
UNIT_KINDS = ("byte", "bpe", "word")  # the LM's units: "byte", "bpe<size>", "word<size>"


def unit_kind_size(unit: str) -> tuple[str, int | None]:
    """("bpe", 1024) for "bpe1024", ("byte", None) for "byte"; the kind "" when malformed."""
    kind = unit.rstrip("0123456789")
    digits = unit[len(kind) :]
    if not kind or (digits and digits.startswith("0")):
        return "", None
    return kind, int(digits) if digits else None


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: str = "1000,2000,4000,8000,16000,32000,64000"  # BPE vocabulary sizes, comma-separated
    chars_per_kind: int = 2_000_000  # training characters of English and of code
    held_out_every: int = 10  # every k-th text is held out
    n_embd: int = 768  # the embedding width the parameter counts assume
    coverage: float = 0.95  # the word vocabulary covers this share of training words
    added_size: int = 8000  # the BPE size the added tokens go into
    new_tokens: str = "THESEUS,HIPPOLYTA,self.assertEqual,<|user|>"  # comma-separated
    # The LM per unit: "byte", "bpe<size>", "word<size>" (size: ids including <unk>).
    lm_units: str = "byte,bpe512,bpe1024,bpe2048,bpe4096,word4096"
    lm_steps: int = 1500  # the same training steps (batches of 64 windows) for every unit
    lm_block_size: int = 8  # tokens of context

    RANGES = {
        "chars_per_kind": Range(10_000),
        "held_out_every": Range(2),
        "coverage": Range(0, 1, low_open=True),
        "lm_steps": Range(1, 1_000_000),
        "lm_block_size": Range(1, 256),
    }

    def check(self) -> None:
        require(
            all(s.strip().isdigit() and int(s) >= 300 for s in self.sizes.split(",")),
            f"sizes={self.sizes!r}: must be comma-separated ints >= 300",
        )
        require(self.added_size >= 300, f"added_size={self.added_size}: must be >= 300")
        require(bool(self.added), f"new_tokens={self.new_tokens!r}: give at least one token")
        for unit in self.unit_list:
            kind, size = unit_kind_size(unit)
            require(
                kind in UNIT_KINDS and (kind == "byte") == (size is None),
                f"lm_units: {unit!r}: allowed: byte, bpe<size>, word<size> (comma-separated)",
            )
            require(
                size is None or 2 <= size <= 65_536 and (kind == "word" or size >= len(ALPHABET)),
                f"lm_units: {unit!r}: the size must be in [{len(ALPHABET)}, 65536] for bpe, "
                "[2, 65536] for word",
            )
        require(bool(self.unit_list), f"lm_units={self.lm_units!r}: give at least one unit")

    @property
    def size_list(self) -> list[int]:
        return sorted({int(s) for s in self.sizes.split(",")})

    @property
    def added(self) -> list[str]:
        return [t for t in self.new_tokens.split(",") if t]

    @property
    def unit_list(self) -> list[str]:
        return list(dict.fromkeys(u.strip() for u in self.lm_units.split(",") if u.strip()))


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


# --- the LM per unit ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Shakespeare as one unit's token ids, split where the char LM splits it: what
    week1_{jax,torch}/lib/charlm.train reads (`train`, `val`, `vocab_size`), plus what turns a
    loss per token into one per character."""

    unit: str
    train: np.ndarray  # (N_train,) int32 token ids
    val: np.ndarray  # (N_val,) int32
    vocab_size: int
    val_chars: int  # characters of the validation text
    val_unknown: float  # share of validation tokens that are <unk> (word units; 0 otherwise)

    @property
    def tokens_per_char(self) -> float:
        return len(self.val) / self.val_chars


def lm_config(cfg: Config) -> charlm.Config:
    """The char LM's settings for the sweep: its defaults, `lm_steps` and `lm_block_size`
    tokens of context, more validation batches (the units' losses are compared closely), and
    no checkpoints (the units are short; an interrupted sweep reports the units finished)."""
    return charlm.Config(
        steps=cfg.lm_steps,
        block_size=cfg.lm_block_size,
        warmup_steps=min(100, cfg.lm_steps // 10),
        eval_every=max(1, cfg.lm_steps // 6),
        eval_batches=50,
        checkpoint_every=0,
    )


def lm_text(val_fraction: float = charlm.Config.val_fraction) -> tuple[str, str]:
    """(training text, validation text): the char LM's corpus and split, as text."""
    text = shakespeare.load_text()
    cut = int(len(text) * (1.0 - val_fraction))
    return text[:cut], text[cut:]


# Bumped when what _cut computes changes: the cached arrays of an older version are not read.
TOKENS_VERSION = 1


@functools.cache
def unit_tokens(unit: str, largest_bpe: int = 0) -> Tokens:
    """The LM's text cut into `unit` (see unit_kind_size); a BPE unit is the prefix of the
    run at `largest_bpe` (or at its own size, if larger). Cached in the data folder (cutting
    takes seconds per unit, and a compare's workers and every later run need the same ids);
    a cache file that cannot be read is cut again and replaced."""
    kind, _ = unit_kind_size(unit)
    key = f"{unit}_bpe{largest_bpe}_tokenizers{tokenizers.__version__}" if kind == "bpe" else unit
    path = cache_dir() / f"vocabulary_tokens_v{TOKENS_VERSION}_{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            return Tokens(unit, saved["train"], saved["val"], int(saved["vocab_size"]),
                          int(saved["val_chars"]), float(saved["val_unknown"]))  # fmt: skip
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass
    tokens = _cut(unit, largest_bpe)
    tmp = aside(path)
    with tmp.open("wb") as f:
        np.savez(f, train=tokens.train, val=tokens.val, vocab_size=tokens.vocab_size,
                 val_chars=tokens.val_chars, val_unknown=tokens.val_unknown)  # fmt: skip
    tmp.replace(path)
    return tokens


def _cut(unit: str, largest_bpe: int) -> Tokens:
    train_text, val_text = lm_text()
    kind, size = unit_kind_size(unit)
    if kind == "byte":
        train, val = (np.frombuffer(t.encode("utf-8"), np.uint8) for t in (train_text, val_text))
        return Tokens(unit, train.astype(np.int32), val.astype(np.int32), 256, len(val_text), 0.0)
    if kind == "bpe":
        tok = lm_bpe(size, largest_bpe)
        train, val = ([i for e in tok.encode_batch(lines(t)) for i in e.ids]
                      for t in (train_text, val_text))  # fmt: skip
        vocab = tok.get_vocab_size()
        return Tokens(unit, np.array(train, np.int32), np.array(val, np.int32), vocab,
                      len(val_text), 0.0)  # fmt: skip
    counts = collections.Counter(pieces(train_text))
    ids = {
        w: i + 1 for i, w in enumerate(sorted(counts, key=lambda w: (-counts[w], w))[: size - 1])
    }
    train, val = (np.array([ids.get(w, 0) for w in pieces(t)], np.int32)  # 0: <unk>
                  for t in (train_text, val_text))  # fmt: skip
    return Tokens(unit, train, val, size, len(val_text), float(np.mean(val == 0)))


def lines(text: str) -> list[str]:
    """`text` as lines that keep their newline (encoded apart, joined back losslessly)."""
    return text.splitlines(keepends=True)


def lm_bpe(size: int, largest: int = 0):
    """The byte-level BPE of `size` on the LM's training text: the first merges of one run at
    `largest` (or at `size`, if larger)."""
    return truncated(*_lm_bpe_run(max(size, largest)), size)


@functools.cache
def _lm_bpe_run(largest: int) -> tuple[list, dict]:
    """(merges, vocab) of one byte-level BPE run on the LM's training text, at `largest`."""
    return hf.merges_and_vocab(hf.train_bpe(lines(lm_text()[0]), largest))


def pieces(text: str) -> list[str]:
    """The words of the word unit: the pieces of BPE's own (GPT-2) pre-tokenizer."""
    from tokenizers import pre_tokenizers

    split = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str
    return [piece for line in lines(text) for piece, _ in split(line)]


def units(cfg: Config) -> dict[str, Tokens]:
    """Every unit's tokens; the BPE sizes are prefixes of one run at the largest asked for."""
    largest = max([size for unit in cfg.unit_list for kind, size in [unit_kind_size(unit)]
                   if kind == "bpe"], default=0)  # fmt: skip
    return {unit: unit_tokens(unit, largest) for unit in cfg.unit_list}


def train_flops(cfg: Config, vocab_size: int) -> float:
    """Multiply-adds x 2 of the training steps: forward T*C*H + H*V per prediction, backward
    twice that (the embedding gather costs none)."""
    lm = lm_config(cfg)
    forward = lm.block_size * lm.n_embd * lm.n_hidden + lm.n_hidden * vocab_size
    return 2 * 3 * forward * lm.batch_size * lm.steps


def bits_per_char(tokens: Tokens, nats_per_token: float) -> float:
    return nats_per_token * tokens.tokens_per_char / float(np.log(2))


def report_lm(cfg: Config, run, tokens: dict, trained: dict, framework: str) -> dict:
    """The LM table and vocabulary_lm.png; `tokens`: unit -> Tokens (units()), `trained`:
    unit -> (History, parameter count) for the units that finished."""
    from week1 import report as rich_report

    rows, points = [], {}
    for unit, (history, params) in trained.items():
        unit_ids = tokens[unit]
        bits = bits_per_char(unit_ids, history.val_loss[-1])
        unknown = rich_report.pct(unit_ids.val_unknown) if unit.startswith("word") else "-"
        rows.append((unit, unit_ids.vocab_size, unit_ids.tokens_per_char, params,
                     train_flops(cfg, unit_ids.vocab_size) / 1e9, history.val_loss[-1], bits,
                     unknown))  # fmt: skip
        points.setdefault(unit_kind_size(unit)[0], []).append((unit_ids.vocab_size, bits))
    rich_report.table(
        f"the char LM per unit ({framework}): {cfg.lm_steps} steps of 64 x {cfg.lm_block_size} "
        "tokens each",
        ["unit", "vocab", "tok/char", "params", "GFLOP", "val nats/tok", "val bits/char",
         "<unk>"],
        rows,
    )  # fmt: skip
    if points:
        rich_report.plot_lines(
            run.path("vocabulary_lm.png"),
            {kind: tuple(zip(*sorted(p), strict=True)) for kind, p in points.items()},
            title=f"char LM, {cfg.lm_steps} steps per unit ({framework}): loss per character",
            xlabel="vocabulary size (log)",
            ylabel="validation bits / character",
            styles={"byte": "s", "bpe": "-o", "word": "^"},
            logx=True,
        )
    return {f"{unit} val bits/char": r[6] for unit, r in zip(trained, rows, strict=True)}


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


# `week1 compare vocabulary`: the LM on each unit, JAX vs torch from the same weights.
COMPARE_QUICK = {"lm_steps": 300, "lm_units": "byte,bpe1024,word1024"}
COMPARE_TEST = {"lm_steps": 12, "lm_units": "byte,bpe300,word300"}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case per unit: its validation loss per token; F32 curves (TRAJECTORY)."""
    return [Case(unit, "val loss", TRAJECTORY) for unit in cfg.unit_list]


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
