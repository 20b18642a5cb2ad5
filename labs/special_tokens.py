"""Lab: special tokens, templates, padding, truncation, attention masks and the masked loss.

What it teaches
---------------
A model never sees raw text, it sees a padded batch of ids plus masks; this lab builds
one by hand and checks every piece against HF `tokenizers`.
- Special tokens are whole vocabulary entries (ids 0-6 here): `<s>` and `</s>` mark the
  start and end of a sequence (BOS/EOS, for language models), `<cls>` and `<sep>` frame
  one or two sequences (for classifiers: "<cls> A <sep> B <sep>", with token type ids
  0 for A and 1 for B), `<pad>` fills short rows, `<mask>` hides tokens for masked LM,
  `<unk>` stands for what the vocabulary cannot spell (byte-level BPE never needs it;
  see tokenizers_compare for WordPiece's unknown rate). They are cut out of the text
  before pre-tokenization, so BPE never splits or merges them.
- Truncation happens before the template, so the template's tokens always fit: a
  single text keeps its first `max_length - 2` tokens, a pair loses tokens from the
  longer side first ("longest_first").
- Padding: rows are filled with `<pad>` to the longest row; `attention_mask` is 1 on
  real tokens, 0 on padding; `labels` copy the ids but hold -100 (ignore_index) at
  padding, so the loss skips them.
- The masked loss is sum(token losses at real positions) / (number of real positions).
  Averaging over all positions instead would count padding as data: the run prints
  both so you can see the gap, and the parity test shows padding gets zero gradient.

How to read the results
-----------------------
`loss` (masked, per real token) is the same in JAX and torch to float32 rounding;
`loss_counting_padding` is what a loss that forgot the mask reports; `padding_share`
is the fraction of the batch that is padding, the compute a smarter batcher (sorting
by length) would save. The printed batch shows ids, mask and labels row by row.

Run it:  week1 run special_tokens --framework jax   (or torch)

History: docs/history.md#devlin-2019
"""

from __future__ import annotations

import dataclasses

import numpy as np

from week1.config import require
from week1.data import shakespeare
from week1.exercises import Exercise, Part
from week1.tokenization import train as bpe_train
from week1.tokenization.model import BPE

PAD, UNK, BOS, EOS, MASK, CLS, SEP = "<pad>", "<unk>", "<s>", "</s>", "<mask>", "<cls>", "<sep>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, MASK, CLS, SEP)  # ids 0..6, in this order
IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class Config:
    vocab_size: int = 1000
    corpus_chars: int = 200_000  # Shakespeare characters to train the tokenizer on
    max_length: int = 24
    batch_size: int = 6
    n_embd: int = 16  # the toy model that produces logits for the loss
    seed: int = 0

    def check(self) -> None:
        require(
            self.vocab_size >= 256 + len(SPECIAL_TOKENS),
            f"vocab_size={self.vocab_size}: must be >= {256 + len(SPECIAL_TOKENS)}",
        )
        require(
            self.max_length >= 4,
            f"max_length={self.max_length}: must be >= 4 (the pair template adds 3)",
        )
        for name in ("corpus_chars", "batch_size", "n_embd"):
            require(getattr(self, name) > 0, f"{name}={getattr(self, name)}: must be > 0")


def tokenizer(cfg: Config) -> BPE:
    """Byte-level BPE (the bpe lab's reference trainer) with the seven special tokens."""
    text = shakespeare.load_text()[: cfg.corpus_chars]
    return bpe_train.train(
        text.splitlines(keepends=True), cfg.vocab_size, special_tokens=SPECIAL_TOKENS
    )


def encode_single(tok: BPE, text: str, max_length: int) -> tuple[list[int], list[int]]:
    """'<s> text </s>', truncated so it fits in max_length; returns (ids, type ids)."""
    ids = [tok.vocab[BOS], *tok.encode(text)[: max_length - 2], tok.vocab[EOS]]
    return ids, [0] * len(ids)


def truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """longest_first, as HF: the shorter side is kept whole if the longer can take the rest of
    the budget; otherwise both get half (the longer side, or b on a tie, gets the odd token)."""
    if len(a) + len(b) <= budget:
        return a, b
    short, long = sorted((len(a), len(b)))
    long = short if short > budget else max(short, budget - short)
    if short + long > budget:
        short, long = budget // 2, budget // 2 + budget % 2
    n_a, n_b = (long, short) if len(a) > len(b) else (short, long)
    return a[:n_a], b[:n_b]


def encode_pair(tok: BPE, text_a: str, text_b: str, max_length: int) -> tuple[list[int], list[int]]:
    """'<cls> a <sep> b <sep>', token types 0 for '<cls> a <sep>' and 1 for 'b <sep>'."""
    a, b = truncate_pair(tok.encode(text_a), tok.encode(text_b), max_length - 3)
    cls, sep = tok.vocab[CLS], tok.vocab[SEP]
    return [cls, *a, sep, *b, sep], [0] * (len(a) + 2) + [1] * (len(b) + 1)


def pad_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad (ids, type ids) rows to the longest: ids, attention_mask, type_ids, labels (B,
    T) int32."""
    T = max(len(ids) for ids, _ in rows)
    out = {k: np.zeros((len(rows), T), np.int32) for k in ("ids", "attention_mask", "type_ids")}
    out["ids"][:] = pad_id
    for r, (ids, types) in enumerate(rows):
        out["ids"][r, : len(ids)] = ids
        out["attention_mask"][r, : len(ids)] = 1
        out["type_ids"][r, : len(ids)] = types
    out["labels"] = np.where(out["attention_mask"] == 1, out["ids"], IGNORE_INDEX).astype(np.int32)
    return out


def demo_texts(cfg: Config) -> list[str]:
    """Lines of different lengths from the held-out end of the corpus (some longer than
    max_length)."""
    lines = [line for line in shakespeare.load_text()[-20_000:].splitlines() if line.strip()]
    rng = np.random.default_rng(cfg.seed)
    return [lines[i] for i in rng.choice(len(lines), size=cfg.batch_size, replace=False)]


def lm_batch(tok: BPE, cfg: Config) -> dict[str, np.ndarray]:
    """The batch both frameworks train on: '<s> line </s>' rows, padded."""
    return pad_batch(
        [encode_single(tok, t, cfg.max_length) for t in demo_texts(cfg)], tok.vocab[PAD]
    )


def init_params(cfg: Config, vocab_size: int) -> dict[str, np.ndarray]:
    """The toy next-token model's weights (numpy, shared by both frameworks): embed -> linear."""
    rng = np.random.default_rng(cfg.seed)
    return {
        "embed": rng.normal(0, 1, (vocab_size, cfg.n_embd)).astype(np.float32),
        "w": rng.normal(0, cfg.n_embd**-0.5, (cfg.n_embd, vocab_size)).astype(np.float32),
        "b": np.zeros(vocab_size, np.float32),
    }


def show_batch(tok: BPE, batch: dict[str, np.ndarray]) -> str:
    """The batch as text: per row the tokens, then the mask and the labels."""
    lines = []
    for r in range(len(batch["ids"])):
        tokens = [tok.decode([i]) for i in batch["ids"][r]]
        lines.append(f"row {r}: " + "|".join(repr(t)[1:-1] for t in tokens))
        lines.append(f"  mask   {''.join(map(str, batch['attention_mask'][r]))}")
        lines.append(
            f"  labels {' '.join('_' if x == IGNORE_INDEX else str(x) for x in batch['labels'][r])}"
        )
    return "\n".join(lines)


def summarize(loss: float, loss_all: float, batch: dict[str, np.ndarray], tok: BPE) -> dict:
    mask = batch["attention_mask"]
    return {
        "loss": loss,
        "loss_counting_padding": loss_all,
        "real_tokens": int(mask.sum()),
        "padding_share": float(1 - mask.mean()),
        "batch": show_batch(tok, batch),
    }


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "masked_cross_entropy",
        hints=(
            (
                "Cross-entropy of every position, then only the real ones count: a mask labels != "
                "ignore_index."
            ),
            (
                "Return (sum over real positions of logsumexp(logits) - logit[label], number of "
                "real positions); replace ignored labels by 0 before gathering so the index stays "
                "valid."
            ),
        ),
        jax=Part(
            "week1_jax/lib/losses.py::masked_cross_entropy",
            (
                "test_special_tokens.py::test_masked_loss_and_grads_jax_equal_torch",
                "test_special_tokens.py::test_padding_contributes_nothing",
            ),
        ),
        torch=Part(
            "week1_torch/lib/losses.py::masked_cross_entropy",
            (
                "test_special_tokens.py::test_masked_loss_and_grads_jax_equal_torch",
                "test_special_tokens.py::test_padding_contributes_nothing",
            ),
        ),
    ),
)
