"""WordPiece (BERT's tokenizer) from scratch: likelihood-scored merges, greedy longest-match encode.

Pre-tokenization (BERT's): split on whitespace, and cut every punctuation character out as a
word of its own ("don't!" -> "don", "'", "t", "!"). Merges never cross these words.

Training (Schuster & Nakajima 2012; the form HF's course and BERT describe). Every word starts
as its characters, the first bare and the rest marked as continuations: "hug" -> h ##u ##g.
Repeat until the vocabulary is full: merge the adjacent pair (a, b) with the highest score

    score(a, b) = count(ab) / (count(a) * count(b))

where count(x) is how often symbol x occurs in the corpus as currently segmented. This is the
gain in unigram log-likelihood of the corpus from merging, to first order: the pair is chosen
for being *more frequent together than its parts' frequencies predict*, not for being frequent
(BPE's rule). "##s" is everywhere, so pairs with it score low; a rare pair of rare symbols that
always occur together scores high. The merged token is a + b without b's "##".
Ties (equal score) go to the pair seen more often, then to the smaller pair of ids.

`train` keeps counts incrementally, as BPE's trainer does (train.py): a merge touches only the
words containing the pair. Unlike BPE's count, a pair's score can *rise* after a merge it takes
no part in (count(a) fell), so every live pair containing a or b is pushed again with its new
score; a stale heap entry is recognised (its score is not today's) and skipped.

Encoding (BERT's, and HF's `models.WordPiece`): in each word take the longest vocabulary entry
that starts at the current position ("##"-prefixed after the first), then go on after it.
If some position has no entry at all, or the word is longer than 100 characters, the *whole*
word becomes the unknown token. Greedy longest-match is not the segmentation training saw,
and it cannot back off: with vocab {a, ##bc, ab}, "abc" fails ('ab' then no '##c') though
a ##bc exists.

Note on HF: `tokenizers.trainers.WordPieceTrainer` is BpeTrainer with a "##" prefix; it merges
by raw pair frequency, not this score (see tokenizers/src/models/wordpiece/trainer.rs). HF's
*encoder* is the WordPiece algorithm, and ours matches it token for token
(parity_tests/test_tokenizers_compare.py).
"""

from __future__ import annotations

import heapq
import itertools
import numbers
from collections import Counter, defaultdict

import regex

from week1.tokenization.bytelevel import count_words

PREFIX = "##"
MAX_INPUT_CHARS_PER_WORD = 100  # HF's default: longer words are one unknown token

# BertPreTokenizer: whitespace is dropped; ASCII punctuation (which includes $+<=>^`|~) and
# Unicode punctuation (categories P*) are each a word of their own.
_WORDS = regex.compile(r"[\p{P}!-/:-@\[-`{-~]|[^\p{White_Space}\p{P}!-/:-@\[-`{-~]+")


def pretokenize(text: str) -> list[str]:
    """BERT's split: 'Hey friend!  ok' -> ['Hey', 'friend', '!', 'ok']."""
    return _WORDS.findall(text)


def symbols(word: str) -> list[str]:
    """'hug' -> ['h', '##u', '##g']: the start of training."""
    return [word[0], *(PREFIX + c for c in word[1:])]


def join(a: str, b: str) -> str:
    """The token a merge of (a, b) makes: 'h' + '##u' -> 'hu', '##u' + '##g' -> '##ug'."""
    return a + b.removeprefix(PREFIX)


class WordPiece:
    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]", special_tokens=()):
        if unk_token not in vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary")
        self.vocab = dict(vocab)
        self.unk_token = unk_token
        self.special_tokens = tuple(special_tokens)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self._cache: dict[str, list[int]] = {}

    def encode_word(self, word: str) -> list[int]:
        """Greedy longest-match-first; the whole word is [UNK] if any position has no match."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        ids, start = [], 0
        if len(word) > MAX_INPUT_CHARS_PER_WORD:
            start, ids = len(word), [self.vocab[self.unk_token]]
        while start < len(word):
            for end in range(len(word), start, -1):  # longest first
                piece = word[start:end] if start == 0 else PREFIX + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:  # nothing matched at `start`: the word cannot be spelled
                ids, start = [self.vocab[self.unk_token]], len(word)
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode: expected str, got {type(text).__name__}")
        return [i for word in pretokenize(text) for i in self.encode_word(word)]

    def tokens(self, text: str) -> list[str]:
        return [self.id_to_token[i] for i in self.encode(text)]

    def decode(self, ids) -> str:
        """Tokens joined by spaces, continuations glued on (the whitespace itself is lost)."""
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise TypeError(f"decode: id {i!r} is {type(i).__name__}, expected an int")
            if int(i) not in self.id_to_token:
                raise ValueError(
                    f"decode: id {i} is not in the vocabulary (size {len(self.vocab)})"
                )
            out.append(self.id_to_token[int(i)])
        return " ".join(out).replace(" " + PREFIX, "")

    def __repr__(self) -> str:
        return f"WordPiece(vocab={len(self.vocab)}, unk_token={self.unk_token!r})"


def train(texts, vocab_size: int, special_tokens=("[PAD]", "[UNK]"), unk_token="[UNK]"):
    """A WordPiece vocabulary of `vocab_size` tokens: specials, the alphabet, then merges."""
    specials = tuple(special_tokens)
    if unk_token not in specials:
        raise ValueError(f"unk_token {unk_token!r} must be one of special_tokens {specials!r}")
    counts = count_words(texts, pretokenize)
    alphabet = sorted({s for w in counts for s in symbols(w)})
    if not isinstance(vocab_size, int) or vocab_size < len(specials) + len(alphabet):
        raise ValueError(
            f"vocab_size={vocab_size!r}: must be an int >= {len(specials) + len(alphabet)} "
            f"({len(specials)} special tokens + {len(alphabet)} characters, bare and ##)"
        )
    vocab = {t: i for i, t in enumerate((*specials, *alphabet))}
    id_to_token = list(vocab)
    words = [[vocab[s] for s in symbols(w)] for w in counts]
    freq = list(counts.values())

    unit, pair_count = Counter(), Counter()
    where, pairs_of = defaultdict(set), defaultdict(set)  # pair -> words; symbol -> pairs
    for i, word in enumerate(words):
        for s in word:
            unit[s] += freq[i]
        for pair in itertools.pairwise(word):
            pair_count[pair] += freq[i]
            where[pair].add(i)
            pairs_of[pair[0]].add(pair)
            pairs_of[pair[1]].add(pair)

    def entry(pair):  # heapq is a min-heap: negate score and count
        score = pair_count[pair] / (unit[pair[0]] * unit[pair[1]])
        return (-score, -pair_count[pair], pair)

    heap = [entry(p) for p in pair_count]
    heapq.heapify(heap)
    while heap and len(vocab) < vocab_size:
        top = heapq.heappop(heap)
        pair = top[2]
        if pair_count[pair] <= 0 or top != entry(pair):  # dead or stale: skip
            continue
        a, b = pair
        token = join(id_to_token[a], id_to_token[b])
        if token not in vocab:
            vocab[token] = len(id_to_token)
            id_to_token.append(token)
        new = vocab[token]
        touched = set()
        for i in list(where[pair]):
            word, out, k = words[i], [], 0
            while k < len(word):
                if k + 1 < len(word) and word[k] == a and word[k + 1] == b:
                    out.append(new)
                    k += 2
                else:
                    out.append(word[k])
                    k += 1
            merged = (len(word) - len(out)) * freq[i]
            unit[a] -= merged
            unit[b] -= merged
            unit[new] += merged
            after = Counter(itertools.pairwise(out))
            change = after.copy()
            change.subtract(itertools.pairwise(word))
            for p, n in change.items():
                pair_count[p] += n * freq[i]
                if p not in after:
                    where[p].discard(i)
                elif n > 0:
                    where[p].add(i)
                    pairs_of[p[0]].add(p)
                    pairs_of[p[1]].add(p)
                    touched.add(p)
            words[i] = out
        # Scores that may have risen: pairs with a or b (their counts fell), and new pairs.
        for s in {a, b}:
            pairs_of[s] = {p for p in pairs_of[s] if pair_count[p] > 0}
            touched |= pairs_of[s]
        for p in touched:
            if pair_count[p] > 0:
                heapq.heappush(heap, entry(p))
    return WordPiece(vocab, unk_token, specials)
