"""Lab: BPE vs WordPiece vs Unigram, on English, code and multilingual text.

What it teaches
---------------
The same vocabulary budget spent three ways. Byte-level BPE (GPT-2) merges frequent
byte pairs and can spell anything; WordPiece (BERT) grows "##"-continued pieces
inside whitespace/punctuation-split words and falls back to [UNK] for a word it
cannot spell; Unigram (T5, ALBERT, via SentencePiece) starts from a big
vocabulary and prunes the pieces that least hurt the corpus likelihood.
We train HF's BPE, WordPiece and Unigram, and sentencepiece's own Unigram (the
reference implementation of that algorithm), all at the same vocabulary size on one
mixed corpus (Shakespeare, the Python standard library's source, and the 28-language
chatterbot corpus), and evaluate each on held-out text of every kind.

Two more rows are written from scratch, in pure Python (week1/tokenization/wordpiece.py and
unigram.py, whose docstrings derive each step): "WordPiece (ours)" merges by the likelihood
score count(ab) / (count(a) count(b)) and encodes greedy longest-match-first with '##'
continuations; "Unigram (ours)" runs EM over a seed vocabulary, prunes by the likelihood each
piece's removal would cost, and segments by Viterbi. Compare them with the library rows: the
encoders match the libraries token for token (parity tests), the trainers do not and should
not (HF's WordPieceTrainer merges by raw pair frequency, BPE's rule; sentencepiece's seed comes
from a suffix array and sums in float32). Look at bytes/token per kind, and at how the
likelihood score spends a small budget on rare pairs that always occur together.

How to read the results
-----------------------
- bytes/token: compression; higher is better (fewer tokens for the same text,
  so more text per context window and less compute), but only beside round trip: a
  tokenizer that normalises text (SentencePiece drops a code line's leading
  indentation) scores higher partly by dropping bytes. "lossless bytes/token" counts
  only the texts that round-trip exactly ("-" when none does): compare that column.
- tokens/word (fertility): tokens per whitespace-separated word. English is lowest
  (about 1.5-1.8 at vocab 8000); code is higher (identifiers, operators, indentation); languages the
  corpus has little of, and scripts without spaces (Chinese, Japanese, Thai: one
  "word" per phrase), are far higher: the PNG shows this cost per language.
- unk rate: share of tokens that are the unknown token. Byte-level BPE has none;
  the others lose every character they never saw in training.
- round trip: share of held-out texts with decode(encode(x)) == x. Only byte-level
  BPE is lossless; WordPiece drops whitespace, SentencePiece normalises it.
- Character-level alphabets (WordPiece, Unigram) spend part of the budget on the
  distinct characters of the training text (printed, and `training alphabet` in the
  summary: 3,000+ at the defaults, nearly all from the multilingual text); byte-level
  BPE's alphabet is the 256 bytes (`byte-level alphabet`).
- `<tokenizer> padding share`: the share of pad ids in the framework pipeline's batches
  of all held-out texts (`batch_size` rows, each batch padded to its longest row, rows cut
  at `max_length`): compute spent on nothing, higher for a tokenizer whose lengths vary
  more within a batch.
- vocabulary overlap: Jaccard similarity of the vocabularies, with the word-start
  and continuation markers ('Ġ', '▁', '##') removed.

Run it:  week1 run tokenizers_compare --framework torch   (or jax: the batching step)

History: docs/history.md#schuster-2012, #sennrich-2016, #kudo-2018
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import pathlib

import numpy as np

from week1.config import UsageError, require
from week1.data import code, multilingual, shakespeare
from week1.exercises import Exercise, Part
from week1.timing import time_calls
from week1.tokenization import hf, unigram, wordpiece
from week1.tokenization.bytelevel import CHAR_TO_BYTE

KINDS = ("english", "code", "multilingual")
TOKENIZERS = (  # spm: sentencepiece's own trainer; ours: week1/tokenization/, pure Python
    "BPE",
    "WordPiece",
    "Unigram HF",
    "Unigram spm",
    "WordPiece (ours)",
    "Unigram (ours)",
)


@dataclasses.dataclass(frozen=True)
class Config:
    vocab_size: int = 8000
    chars_per_kind: int = (
        1_000_000  # training characters of English and of code (multilingual: all but held out)
    )
    held_out_every: int = 10  # every k-th text is held out for evaluation
    batch_size: int = 32
    max_length: int = 128
    seed: int = 0

    def check(self) -> None:
        require(self.vocab_size >= 300, f"vocab_size={self.vocab_size}: must be >= 300")
        require(
            self.chars_per_kind >= 10_000, f"chars_per_kind={self.chars_per_kind}: must be >= 10000"
        )
        require(self.held_out_every >= 2, f"held_out_every={self.held_out_every}: must be >= 2")
        for name in ("batch_size", "max_length"):
            require(getattr(self, name) > 0, f"{name}={getattr(self, name)}: must be > 0")


@dataclasses.dataclass(frozen=True)
class Corpus:
    train: list[str]  # all kinds mixed, one line or utterance per text
    held_out: dict[str, list[str]]  # kind -> texts
    languages: dict[str, list[str]]  # multilingual held-out texts by language


def split(texts: list[str], every: int) -> tuple[list[str], list[str]]:
    return [t for i, t in enumerate(texts) if i % every], texts[::every]


def load_corpus(cfg: Config) -> Corpus:
    english = [t for t in shakespeare.load_text()[: cfg.chars_per_kind].splitlines() if t.strip()]
    source = [t for t in "".join(code.load_texts(cfg.chars_per_kind)).splitlines() if t.strip()]
    train, held_out, languages = [], {}, {}
    for kind, texts in (("english", english), ("code", source)):
        fit, held_out[kind] = split(texts, cfg.held_out_every)
        train += fit
    held_out["multilingual"] = []
    for language, texts in multilingual.load_texts().items():
        fit, languages[language] = split(texts, cfg.held_out_every)
        train += fit
        held_out["multilingual"] += languages[language]
    return Corpus(train, held_out, languages)


@dataclasses.dataclass
class Trained:
    """One tokenizer behind a common face (HF Tokenizer or SentencePieceProcessor)."""

    name: str
    encode_batch: object  # list[str] -> list[list[int]]
    decode: object  # list[int] -> str
    vocab: set  # surface forms, markers removed
    unk_id: int | None
    pad_id: int


def _surface(token: str) -> str:
    """A token without word-start/continuation markers; byte-level symbols back to text."""
    if all(c in CHAR_TO_BYTE for c in token):
        token = bytes(CHAR_TO_BYTE[c] for c in token).decode("utf-8", errors="replace")
    return token.removeprefix("##").replace("▁", " ").strip()


def _from_hf(name, tok, unk: str | None) -> Trained:
    return Trained(
        name,
        lambda texts: [e.ids for e in tok.encode_batch(texts)],
        tok.decode,
        {_surface(t) for t in tok.get_vocab()},
        tok.token_to_id(unk) if unk else None,
        tok.token_to_id("<pad>"),
    )


def train_all(texts: list[str], vocab_size: int) -> dict[str, Trained]:
    """The four tokenizers, each at `vocab_size` with the same <pad> (and <unk> where needed)."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    n_chars = len(set().union(*map(set, texts)))
    if vocab_size < n_chars + 2:  # HF's UnigramTrainer needs every character in the vocabulary
        raise UsageError(
            f"vocab_size={vocab_size}: the Unigram tokenizers need at least {n_chars + 2} here "
            f"({n_chars} distinct characters in the training text, plus <pad> and <unk>)"
        )
    out = {"BPE": _from_hf("BPE", hf.train_bpe(texts, vocab_size, special_tokens=["<pad>"]), None)}
    wp = hf.train_wordpiece(texts, vocab_size, ["<pad>", "<unk>"], "<unk>")
    out["WordPiece"] = _from_hf("WordPiece", wp, "<unk>")
    uni = Tokenizer(models.Unigram())
    uni.pre_tokenizer, uni.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    uni.train_from_iterator(
        texts,
        trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=["<pad>", "<unk>"],
            unk_token="<unk>",
            show_progress=False,
        ),
    )
    out["Unigram HF"] = _from_hf("Unigram HF", uni, "<unk>")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        character_coverage=1.0,
        max_sentence_length=1 << 16,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    out["Unigram spm"] = Trained(
        "Unigram spm",
        lambda texts: sp.encode(texts),
        sp.decode,
        {_surface(sp.id_to_piece(i)) for i in range(sp.get_piece_size())},
        sp.unk_id(),
        sp.pad_id(),
    )
    try:
        ours = {
            "WordPiece (ours)": wordpiece.train(texts, vocab_size, ("<pad>", "<unk>"), "<unk>"),
            "Unigram (ours)": unigram.train(texts, vocab_size, ("<pad>", "<unk>"), "<unk>"),
        }
    except ValueError as err:  # a vocabulary smaller than the alphabet
        raise UsageError(str(err)) from None
    for name, tok in ours.items():
        out[name] = Trained(
            name,
            lambda texts, tok=tok: [tok.encode(t) for t in texts],
            tok.decode,
            {_surface(t) for t in tok.vocab},
            tok.vocab["<unk>"],
            tok.vocab["<pad>"],
        )
    return out


def metrics(tok: Trained, texts: list[str]) -> dict[str, float]:
    """bytes/token, tokens/word, unk rate, round trip (share of texts given back exactly), and
    lossless bytes/token: bytes/token over the texts that round-trip (None if none does)."""
    ids = tok.encode_batch(texts)
    n_tokens = sum(map(len, ids))
    unk = sum(row.count(tok.unk_id) for row in ids) if tok.unk_id is not None else 0
    exact = [tok.decode(row) == t for row, t in zip(ids, texts, strict=True)]
    kept = [(row, t) for row, t, ok in zip(ids, texts, exact, strict=True) if ok]
    kept_tokens = sum(len(row) for row, _ in kept)
    return {
        "bytes/token": sum(len(t.encode()) for t in texts) / n_tokens,
        "tokens/word": n_tokens / sum(len(t.split()) for t in texts),
        "unk rate": unk / n_tokens,
        "round trip": float(np.mean(exact)),
        "lossless bytes/token": (
            sum(len(t.encode()) for _, t in kept) / kept_tokens if kept_tokens else None
        ),
    }


@functools.cache
def trained(cfg: Config) -> tuple[Corpus, dict[str, Trained]]:
    """The corpus and the four tokenizers for `cfg` (cached: `week1 bench` asks twice)."""
    corpus = load_corpus(cfg)
    return corpus, train_all(corpus.train, cfg.vocab_size)


def evaluate(toks: dict[str, Trained], corpus: Corpus) -> list[tuple]:
    """Rows (tokenizer, kind, bytes/token, tokens/word, unk rate, round trip, lossless
    bytes/token)."""
    return [
        (name, kind, *metrics(tok, corpus.held_out[kind]).values())
        for name, tok in toks.items()
        for kind in KINDS
    ]


def overlap(toks: dict[str, Trained]) -> list[tuple]:
    """Rows (tokenizer, Jaccard with each tokenizer) of the marker-free vocabularies."""
    return [
        (
            a,
            *(
                len(toks[a].vocab & toks[b].vocab) / len(toks[a].vocab | toks[b].vocab)
                for b in toks
            ),
        )
        for a in toks
    ]


def fertility_by_language(toks: dict[str, Trained], corpus: Corpus) -> dict[str, dict[str, float]]:
    return {
        name: {lang: metrics(tok, texts)["tokens/word"] for lang, texts in corpus.languages.items()}
        for name, tok in toks.items()
    }


def plot_fertility(path, fertility: dict[str, dict[str, float]]) -> pathlib.Path:
    """Grouped bars: tokens per word for each language (x) and tokenizer (colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = sorted(
        next(iter(fertility.values())), key=lambda lang: fertility[TOKENIZERS[0]][lang]
    )
    fig, ax = plt.subplots(figsize=(13, 5))
    width = 0.8 / len(fertility)
    for k, (name, values) in enumerate(fertility.items()):
        ax.bar(
            np.arange(len(languages)) + k * width,
            [values[lang] for lang in languages],
            width,
            label=name,
        )
    ax.set_xticks(np.arange(len(languages)) + 0.4 - width / 2, languages, rotation=60, ha="right")
    ax.set_yscale("log")
    ax.set_yticks([1, 2, 4, 8, 16, 32], ["1", "2", "4", "8", "16", "32"])
    ax.minorticks_off()
    ax.set_ylabel("tokens per whitespace word (log)")
    ax.set_title(
        "Fertility by language (held-out chatterbot text): English-heavy training costs other "
        "languages"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pad_batches(
    ids: list[list[int]], batch_size: int, max_length: int, pad_id: int
) -> list[np.ndarray]:
    """The numpy reference of the framework pipelines: truncate, right-pad per batch, (B, T)
    int32."""
    out = []
    for start in range(0, len(ids), batch_size):
        rows = [row[:max_length] for row in ids[start : start + batch_size]]
        batch = np.full((len(rows), max(map(len, rows), default=0)), pad_id, np.int32)
        for r, row in enumerate(rows):
            batch[r, : len(row)] = row
        out.append(batch)
    return out


def report(toks, corpus: Corpus, cfg: Config, png_path) -> dict:
    """Print the tables, write the PNG; the numbers `week1 run` prints."""
    from week1 import report as rich_report

    rows = evaluate(toks, corpus)
    rich_report.table(
        f"held-out text, vocab {cfg.vocab_size}",
        [
            "tokenizer",
            "kind",
            "bytes/token",
            "tokens/word",
            "unk rate",
            "round trip",
            "lossless bytes/token",
        ],
        [(*row[:-1], "-" if row[-1] is None else row[-1]) for row in rows],
    )
    alphabet = len(set("".join(corpus.train)))
    rich_report.console.print(
        f"training alphabet: {alphabet:,} distinct characters (byte-level BPE: {len(CHAR_TO_BYTE)})"
    )
    rich_report.table("vocabulary overlap (Jaccard)", ["tokenizer", *toks], overlap(toks))
    plot_fertility(png_path, fertility_by_language(toks, corpus))
    summary = {f"{name} {kind} tokens/word": fert for name, kind, _, fert, *_ in rows}
    for name, kind, _, _, _, round_trip, lossless in rows:
        summary[f"{name} {kind} round trip"] = round_trip
        summary[f"{name} {kind} lossless bytes/token"] = lossless
    alphabets = {"training alphabet": alphabet, "byte-level alphabet": len(CHAR_TO_BYTE)}
    return summary | alphabets | {"plot": str(png_path.name)}


def held_out_texts(corpus: Corpus) -> list[str]:
    """Every kind's held-out texts, in KINDS order: what the framework pipelines batch."""
    return [t for kind in KINDS for t in corpus.held_out[kind]]


def run_pipelines(cfg: Config, run, pipeline) -> dict:
    """`week1 run tokenizers_compare`: train, evaluate, plot; then the held-out texts batched by
    the framework's `pipeline(tok, texts, batch_size, max_length)` -> padded (B, T) batches,
    and the share of padding in them per tokenizer."""
    corpus, toks = trained(cfg)
    texts = held_out_texts(corpus)
    padding = {}
    for name, tok in toks.items():
        batches = pipeline(tok, texts, cfg.batch_size, cfg.max_length)
        pads = sum(int((b == tok.pad_id).sum()) for b in batches)
        padding[f"{name} padding share"] = pads / sum(math.prod(b.shape) for b in batches)
    return report(toks, corpus, cfg, run.path("fertility.png")) | padding


def bench(cfg: Config, framework: str, pipeline, sync) -> dict:
    """`week1 bench tokenizers_compare` (one framework's half): held-out text -> padded
    batches through `pipeline`, per tokenizer."""
    corpus, toks = trained(cfg)
    texts = held_out_texts(corpus)
    return {
        f"{framework} {name}": time_calls(
            lambda tok=tok: pipeline(tok, texts, cfg.batch_size, cfg.max_length),
            sync,
            warmup=1,
            iters=5,
        )
        for name, tok in toks.items()
    }


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "pad_batches",
        hints=(
            (
                "Encode, truncate each row to max_length, then right-pad every batch of batch_size "
                "rows to its own longest row with the tokenizer's pad id (int32)."
            ),
            (
                "jax (_pad_rows, one gather): column c of row r is flat[starts[r] + c] where c < "
                "lengths[r], else pad_id. torch (pipeline): pad_sequence per batch."
            ),
        ),
        jax=Part(
            "week1_jax/tokenizers_compare.py::_pad_rows",
            (
                "test_tokenizers_compare.py::test_jax_and_torch_pipelines_give_the_same_ids[BPE]",
                "test_tokenizers_compare.py::test_jax_and_torch_pipelines_give_the_same_ids[WordPiece]",
            ),
        ),
        torch=Part(
            "week1_torch/tokenizers_compare.py::pipeline",
            (
                "test_tokenizers_compare.py::test_jax_and_torch_pipelines_give_the_same_ids[BPE]",
                "test_tokenizers_compare.py::test_jax_and_torch_pipelines_give_the_same_ids[WordPiece]",
            ),
        ),
    ),
)
