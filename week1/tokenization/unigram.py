"""Unigram language-model tokenization (Kudo 2018, SentencePiece's default) from scratch.

The model: a vocabulary of pieces, each with a log-probability (its score). A segmentation
x = (x1, ..., xn) of a word has probability p(x1) ... p(xn), and the tokenizer picks the most
likely one by Viterbi over the lattice of all pieces that fit. Training fits the
probabilities by EM, treating the segmentation as the hidden variable, and shrinks the
vocabulary by dropping the pieces whose loss hurts the corpus likelihood least.

Words, SentencePiece's way: whitespace becomes '▁' and starts the word that follows it
("Hi there" -> '▁Hi', '▁there'), so decode is `"".join(pieces).replace("▁", " ")` and the
word-start marker is part of the pieces. No other normalisation (sentencepiece applies NFKC).

Training, in the order of sentencepiece's unigram_model_trainer.cc:
1. Seed: every character, plus the `seed_size` substrings (2-16 characters, '▁' only at the
   start, one writing system: letters, or else digits/punctuation/symbols; seen at least
   twice) with the highest frequency * length; log-probabilities proportional to those.
   (Keeping the once-seen substrings fills the seed with pieces of rare words, which then
   crowd out the short common pieces ('ing', 'th'): compression on held-out text drops.)
2. EM, `sub_iterations` times:
   E: forward-backward over each word's lattice gives every piece's expected count,
      E[c(x)] = sum over words w of count(w) * sum over occurrences of x in w of
      exp(alpha(start) + log p(x) + beta(end) - log Z(w)).
   M: pieces with expected count < 0.5 are dropped; log p(x) = digamma(c(x)) - digamma(sum c),
      the Bayesian (Dirichlet-process) M-step sentencepiece uses: a sparse prior that
      discounts rare pieces more than log(c / sum c) would.
3. Stop when the vocabulary is at most 1.1 * vocab_size; else prune and go to 2. Pruning
   estimates, for each piece x, the loss of log-likelihood if x were removed and its
   occurrences re-segmented by x's own second-best segmentation (its alternative):
      loss(x) = F(x) * (log p(x) - sum over y in alt(x) of log p'(y)),
   with F(x) the share of words using x on their Viterbi path and p' the probabilities after
   x's count moves to its alternatives. A piece whose Viterbi segmentation is not itself is
   never used and goes; one with no alternative (a character) stays; of the rest the highest
   losses are kept, so the vocabulary shrinks to max(1.1 * vocab_size, 0.75 * its size).
4. Final: every character (missing ones scored just below the lowest), then the pieces with
   the highest scores up to vocab_size.

Viterbi (encode): best[j] = max over pieces x = w[i:j] of best[i] + log p(x). A position no
one-character piece covers gets an unknown node scored min score - 10, and a run of unknowns
comes out as one unknown token. Ties go to the earlier start (a strict > over starts visited
left to right), and the scores are summed in float32, as sentencepiece's EncodeOptimized does,
so that near-ties break the same way: our segmentation equals sentencepiece's token for token
for the same pieces and scores (parity_tests/test_tokenizers_compare.py).
"""

from __future__ import annotations

import functools
import math
import numbers
import unicodedata
from collections import Counter

import numpy as np

from week1.tokenization.bytelevel import count_words

SPACE = "▁"  # U+2581: sentencepiece's whitespace
MAX_PIECE_LENGTH = 16
UNK_PENALTY = 10.0


def words(text: str) -> list[str]:
    """'Hi  there' -> ['▁Hi', '▁there'] (runs of whitespace are one separator)."""
    return [SPACE + w for w in text.split()]


def digamma(x: float) -> float:
    """psi(x) = d/dx log Gamma(x): shift x up to 7, then the asymptotic series (as spm)."""
    result = 0.0
    while x < 7:
        result -= 1 / x
        x += 1
    x -= 0.5
    xx2 = 1 / (x * x)
    xx4 = xx2 * xx2
    return (
        result
        + math.log(x)
        + xx2 / 24
        - 7 / 960 * xx4
        + 31 / 8064 * xx4 * xx2
        - 127 / 30720 * xx4 * xx4
    )


class Pieces:
    """A vocabulary with scores, indexed for lattices: the set of all prefixes of its pieces
    lets the scan at a position stop as soon as no piece can continue."""

    def __init__(self, scores: dict[str, float]):
        self.scores = scores
        self.low = min(scores.values())
        self.prefixes = {p[:k] for p in scores for k in range(1, len(p) + 1)}

    def edges(self, word: str) -> list[tuple[int, int, str | None]]:
        """The lattice of `word`: (start, end, piece) for every piece that fits, by start, and
        (i, i + 1, None), an unknown node, where no one-character piece starts at i."""
        out = []
        for i in range(len(word)):
            if word[i] not in self.scores:
                out.append((i, i + 1, None))
            for j in range(i + 1, len(word) + 1):
                piece = word[i:j]
                if piece not in self.prefixes:
                    break
                if piece in self.scores:
                    out.append((i, j, piece))
        return out


def viterbi(word: str, pieces: Pieces, acc=float, skip_whole=False) -> list[tuple[str, bool]]:
    """The best segmentation of `word`: a list of (piece, is_unknown).

    `acc` is the number type of the sums: float, or np.float32 to break ties as sentencepiece.
    `skip_whole` leaves out the piece equal to the whole word (its second-best segmentation).
    """
    n, scores = len(word), pieces.scores
    unk = acc(pieces.low) - acc(UNK_PENALTY)
    best = [acc(0.0)] + [None] * n  # best[j]: score of the best path over word[:j]
    back = [None] * (n + 1)  # back[j]: start of that path's last piece
    for i, j, piece in pieces.edges(word):
        if best[i] is None or (skip_whole and (i, j) == (0, n)):
            continue
        score = best[i] + (unk if piece is None else acc(scores[piece]))
        if best[j] is None or score > best[j]:  # strict: the earlier start keeps a tie
            best[j], back[j] = score, i
    # An unknown node comes after the pieces at its start (sentencepiece's order); edges()
    # lists it first, which changes nothing: a one-character piece and an unknown node never
    # start at the same place.
    out, j = [], n
    while j > 0:
        i = back[j]
        is_unk = j == i + 1 and word[i] not in scores
        if is_unk and out and out[-1][1]:  # a run of unknowns is one unknown token
            out[-1] = (word[i:j] + out[-1][0], True)
        else:
            out.append((word[i:j], is_unk))
        j = i
    return out[::-1]


def _logsumexp(xs: list[float]) -> float:
    if len(xs) == 1:  # most lattice nodes: one edge in (or out)
        return xs[0]
    m = max(xs)
    return m + math.log(sum([math.exp(x - m) for x in xs]))


def expected_counts(counts: Counter, pieces: Pieces) -> tuple[Counter, float]:
    """E-step: expected piece counts by forward-backward, and the corpus log-likelihood."""
    expected, loglik = Counter(), 0.0
    unk = pieces.low - UNK_PENALTY
    for word, freq in counts.items():
        n = len(word)
        edges = [
            (i, j, p, unk if p is None else pieces.scores[p]) for i, j, p in pieces.edges(word)
        ]
        into, out_of = [[] for _ in range(n + 1)], [[] for _ in range(n + 1)]
        for i, j, _, s in edges:
            into[j].append((i, s))
            out_of[i].append((j, s))
        alpha = [0.0] * (n + 1)  # log of the summed probability of all paths over word[:j]
        for j in range(1, n + 1):
            alpha[j] = _logsumexp([alpha[i] + s for i, s in into[j]])
        beta = [0.0] * (n + 1)  # ... over word[i:]
        for i in range(n - 1, -1, -1):
            beta[i] = _logsumexp([s + beta[j] for j, s in out_of[i]])
        z = alpha[n]
        loglik += freq * z
        for i, j, piece, s in edges:
            if piece is not None:
                expected[piece] += freq * math.exp(alpha[i] + s + beta[j] - z)
    return expected, loglik


def m_step(expected: Counter) -> dict[str, float]:
    """Bayesian M-step: drop pieces expected < 0.5 times, log p = digamma(c) - digamma(sum)."""
    kept = {piece: c for piece, c in expected.items() if c >= 0.5}
    log_total = digamma(sum(kept.values()))
    return {piece: digamma(c) - log_total for piece, c in kept.items()}


def char_counts(counts: Counter) -> Counter:
    chars = Counter()
    for word, freq in counts.items():
        for c in word:
            chars[c] += freq
    return chars


@functools.cache
def script(c: str) -> str:
    """A character's writing system, roughly as sentencepiece's split_by_unicode_script sees it:
    letters by the first word of their Unicode name (LATIN, CYRILLIC, CJK, with the Japanese
    kana counted as CJK), marks as the letter before them (''), all else one class, Common."""
    category = unicodedata.category(c)
    if category.startswith("M"):
        return ""
    if not category.startswith("L"):
        return "Common"
    name = unicodedata.name(c, "?").split()[0]
    return "CJK" if name in ("HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA") else name


def one_script(piece: str) -> bool:
    """No piece mixes writing systems: 'the' and '--' are pieces, 'thee,' is not."""
    kinds = {script(c) for c in piece.removeprefix(SPACE)} - {""}
    return len(kinds) <= 1


def seed(counts: Counter, seed_size: int) -> dict[str, float]:
    """Characters plus the most frequent * longest substrings, as log-probabilities."""
    subs = Counter()
    for word, freq in counts.items():
        for i in range(len(word)):
            for j in range(i + 2, min(len(word), i + MAX_PIECE_LENGTH) + 1):
                if not one_script(word[i:j]):
                    break  # longer ones mix scripts too
                subs[word[i:j]] += freq
    subs = Counter({p: n for p, n in subs.items() if n >= 2})
    top = sorted(subs.items(), key=lambda kv: (-kv[1] * len(kv[0]), kv[0]))[:seed_size]
    weights = dict(char_counts(counts)) | {piece: freq * len(piece) for piece, freq in top}
    log_total = math.log(sum(weights.values()))
    return {piece: math.log(w) - log_total for piece, w in weights.items()}


def prune(counts: Counter, scores: dict[str, float], target: int) -> dict[str, float]:
    """Keep max(target, 0.75 * size) pieces: those whose removal loses the most likelihood."""
    freq, total_words = Counter(), counts.total()  # freq: uses on the words' Viterbi paths
    indexed = Pieces(scores)
    for word, n in counts.items():
        for piece, is_unk in viterbi(word, indexed):
            if not is_unk:
                freq[piece] += n
    total = freq.total()
    kept, losses = {}, []
    for piece, score in scores.items():
        if not freq[piece]:
            continue  # on no Viterbi path (nor is it its own best segmentation): remove
        if len(piece) == 1:
            kept[piece] = score  # a character has no alternative: keep
            continue
        alt = [p for p, _ in viterbi(piece, indexed, skip_whole=True)]
        share = freq[piece] / total_words
        logp = math.log(freq[piece]) - math.log(total)
        total_alt = total + freq[piece] * (len(alt) - 1)
        logp_alt = sum(math.log(freq[y] + freq[piece]) - math.log(total_alt) for y in alt)
        losses.append((share * (logp - logp_alt), piece))
    size = max(target, int(0.75 * len(scores)))
    for _, piece in sorted(losses, key=lambda lp: (-lp[0], lp[1]))[: max(0, size - len(kept))]:
        kept[piece] = scores[piece]
    return kept


class Unigram:
    def __init__(self, pieces: dict[str, float], special_tokens=("<pad>", "<unk>"), unk="<unk>"):
        """`pieces`: piece -> log-probability (score); ids: specials first, then pieces."""
        if unk not in special_tokens:
            raise ValueError(f"unk {unk!r} must be one of special_tokens {tuple(special_tokens)}")
        self.scores = {p: float(np.float32(s)) for p, s in pieces.items()}  # stored as float32
        self.pieces = Pieces(self.scores)
        self.special_tokens = tuple(special_tokens)
        self.vocab = {t: i for i, t in enumerate((*self.special_tokens, *self.scores))}
        self.unk_id = self.vocab[unk]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._cache: dict[str, list[int]] = {}

    def segment(self, text: str) -> list[tuple[str, int]]:
        """(piece, id) of already-normalised text ('▁' for spaces), sentencepiece's Viterbi."""
        return [
            (piece, self.unk_id if is_unk else self.vocab[piece])
            for piece, is_unk in viterbi(text, self.pieces, acc=np.float32)
        ]

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode: expected str, got {type(text).__name__}")
        out = []
        for word in words(text):
            if word not in self._cache:
                self._cache[word] = [i for _, i in self.segment(word)]
            out += self._cache[word]
        return out

    def decode(self, ids) -> str:
        """Pieces joined, '▁' back to spaces (an unknown piece reads as its token text)."""
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise TypeError(f"decode: id {i!r} is {type(i).__name__}, expected an int")
            if int(i) not in self.id_to_token:
                raise ValueError(
                    f"decode: id {i} is not in the vocabulary (size {len(self.vocab)})"
                )
            out.append(self.id_to_token[int(i)])
        return "".join(out).replace(SPACE, " ").removeprefix(" ")

    def __repr__(self) -> str:
        return f"Unigram(vocab={len(self.vocab)}, special_tokens={self.special_tokens})"


def train(
    texts,
    vocab_size: int,
    special_tokens=("<pad>", "<unk>"),
    unk="<unk>",
    seed_size: int = 100_000,
    sub_iterations: int = 2,
    log=None,
) -> Unigram:
    """A Unigram tokenizer of `vocab_size` entries (specials included); `log(str)` if given."""
    counts = count_words(texts, words)
    n_chars = len({c for w in counts for c in w})
    size = vocab_size - len(special_tokens)
    if not isinstance(vocab_size, int) or size < n_chars:
        raise ValueError(
            f"vocab_size={vocab_size!r}: must be an int >= {n_chars + len(special_tokens)} "
            f"({n_chars} distinct characters + {len(special_tokens)} special tokens)"
        )
    if not isinstance(seed_size, int) or seed_size < 1:
        raise ValueError(f"seed_size={seed_size!r}: must be an int >= 1")
    scores = seed(counts, seed_size)
    target = int(1.1 * size)
    while True:
        for _ in range(sub_iterations):
            expected, loglik = expected_counts(counts, Pieces(scores))
            scores = m_step(expected)
            if log:
                log(f"EM: {len(scores)} pieces, log-likelihood/word {loglik / counts.total():.3f}")
        if len(scores) <= target:
            break
        scores = prune(counts, scores, target)
    # Final: every character (the missing ones just below the lowest score), then the best.
    low, final = min(scores.values()), {}
    for k, (c, _) in enumerate(sorted(char_counts(counts).items(), key=lambda cn: (-cn[1], cn[0]))):
        final[c] = scores.get(c, low + 1e-4 * k)
    for piece, s in sorted(scores.items(), key=lambda ps: (-ps[1], ps[0])):
        if len(final) >= size:
            break
        final.setdefault(piece, s)
    ordered = dict(sorted(final.items(), key=lambda ps: (-ps[1], ps[0])))
    return Unigram(ordered, special_tokens, unk)
