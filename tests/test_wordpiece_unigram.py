"""WordPiece and Unigram from scratch (week1/tokenization/): the incremental WordPiece trainer
against the textbook loop, greedy encoding's corner cases, Viterbi and the E-step against brute
force over every segmentation, digamma against scipy. (Against HF and sentencepiece:
parity_tests/test_tokenizers_compare.py.)"""

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy import special

from week1.data import shakespeare
from week1.tokenization import unigram, wordpiece
from week1.tokenization.bytelevel import count_words
from week1.tolerances import EXACT, F64, assert_close


def train_wordpiece_naive(texts, vocab_size, specials=("[PAD]", "[UNK]")):
    """The textbook loop: rescore every pair of the whole corpus before each merge."""
    counts = count_words(texts, wordpiece.pretokenize)
    words = {w: wordpiece.symbols(w) for w in counts}
    vocab = [*specials, *sorted({s for split in words.values() for s in split})]
    while len(vocab) < vocab_size:
        unit, pairs = Counter(), Counter()
        for w, split in words.items():
            unit.update({s: counts[w] * n for s, n in Counter(split).items()})
            for pair in itertools.pairwise(split):
                pairs[pair] += counts[w]
        if not pairs:
            break
        ids = {t: i for i, t in enumerate(dict.fromkeys(vocab))}

        def key(p, pairs=pairs, unit=unit, ids=ids):
            return (-pairs[p] / (unit[p[0]] * unit[p[1]]), -pairs[p], (ids[p[0]], ids[p[1]]))

        a, b = min(pairs, key=key)
        token = wordpiece.join(a, b)
        vocab.append(token)
        for w, split in words.items():
            out, k = [], 0
            while k < len(split):
                if k + 1 < len(split) and (split[k], split[k + 1]) == (a, b):
                    out.append(token)
                    k += 2
                else:
                    out.append(split[k])
                    k += 1
            words[w] = out
    return list(dict.fromkeys(vocab))


def test_wordpiece_incremental_trainer_equals_the_textbook_loop():
    texts = shakespeare.load_text()[:15_000].splitlines()
    fast = wordpiece.train(texts, 300)
    naive = train_wordpiece_naive(texts, 300)
    assert_close("wordpiece train", "vocab", np.array(list(fast.vocab)), np.array(naive), EXACT)


def test_wordpiece_first_merge_is_the_likelihood_choice():
    """'x' and '##q' occur only together: score 1, beats the frequent 'a ##b' (10 / 110)."""
    vocab = wordpiece.train(["ab " * 10 + "a" * 90 + " xq"], 8).vocab
    assert list(vocab)[-1] == "xq"


def test_wordpiece_greedy_longest_match_cannot_back_off():
    vocab = {t: i for i, t in enumerate(["[UNK]", "a", "ab", "##b", "##bc", "##d"])}
    tok = wordpiece.WordPiece(vocab)
    assert tok.tokens("abd a") == ["ab", "##d", "a"]
    assert tok.tokens("abc") == ["[UNK]"]  # 'ab' then no '##c'; a ##bc was there
    assert tok.tokens("a" + "b" * 100) == ["[UNK]"]  # over 100 characters
    assert wordpiece.pretokenize("Hey friend!     How are you?!?") == [
        *("Hey", "friend", "!", "How", "are", "you", "?", "!", "?")
    ]
    assert tok.decode(tok.encode("abd a")) == "abd a"


def all_segmentations(word, scores):
    """Every split of `word` into vocabulary pieces, with its log-probability."""
    if not word:
        yield [], 0.0
        return
    for j in range(1, len(word) + 1):
        if word[:j] in scores:
            for rest, score in all_segmentations(word[j:], scores):
                yield [word[:j], *rest], scores[word[:j]] + score


@pytest.fixture
def small_model():
    rng = np.random.default_rng(0)
    pieces = ["a", "b", "c", "ab", "bc", "abc", "ca", "cab", "bb", "abb"]
    scores = {p: float(s) for p, s in zip(pieces, rng.uniform(-6, -1, len(pieces)), strict=True)}
    words = ["".join(rng.choice(list("abc"), size=rng.integers(1, 9))) for _ in range(60)]
    return scores, words


def test_viterbi_is_the_best_of_all_segmentations(small_model):
    scores, words = small_model
    pieces = unigram.Pieces(scores)
    for word in words:
        best, best_score = max(all_segmentations(word, scores), key=lambda ps: ps[1])
        path = [p for p, _ in unigram.viterbi(word, pieces)]
        assert_close("viterbi", word, sum(scores[p] for p in path), best_score, F64)


def test_e_step_equals_the_expectation_over_all_segmentations(small_model):
    scores, words = small_model
    counts = Counter(words)
    expected, loglik = unigram.expected_counts(counts, unigram.Pieces(scores))
    brute, brute_loglik = Counter(), 0.0
    for word, n in counts.items():
        paths = list(all_segmentations(word, scores))
        z = math.log(sum(math.exp(s) for _, s in paths))
        brute_loglik += n * z
        for path, s in paths:
            for p in path:
                brute[p] += n * math.exp(s - z)
    assert_close("e-step", "loglik", loglik, brute_loglik, F64)
    names = sorted(brute)
    assert_close("e-step", "expected", [expected[p] for p in names], [brute[p] for p in names], F64)


def test_digamma_equals_scipy():
    x = np.array([0.5, 0.9, 1.0, 3.7, 7.0, 12.5, 1e3, 1e6])
    assert_close("digamma", "psi", [unigram.digamma(v) for v in x], special.digamma(x), F64)


def test_unigram_training_gives_the_asked_vocabulary():
    texts = [t for t in shakespeare.load_text()[:30_000].splitlines() if t.strip()]
    tok = unigram.train(texts, 300)
    assert len(tok.vocab) == 300 and list(tok.vocab)[:2] == ["<pad>", "<unk>"]
    chars = {c for t in texts for w in unigram.words(t) for c in w}
    assert chars <= set(tok.vocab)  # every character stays, so nothing seen is unknown
    assert any(len(p) > 3 for p in tok.vocab)  # and it learned pieces
    text = " ".join(texts[0].split())
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("zq\u4e2d") and tok.unk_id in tok.encode("\u4e2d")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: wordpiece.train(["abc"], 3), "vocab_size=3"),
        (lambda: wordpiece.train("abc", 100), "not one str"),
        (lambda: wordpiece.train(["a"], 100, ("[PAD]",), "[UNK]"), "unk_token '\\[UNK\\]'"),
        (lambda: wordpiece.train([" ", ""], 100), "empty corpus"),
        (lambda: unigram.train(["abc"], 3), "vocab_size=3"),
        (lambda: unigram.train(["ok", 3], 100), "texts\\[1\\] is int"),
        (lambda: unigram.train(["abc"], 100, seed_size=0), "seed_size=0"),
        (lambda: unigram.Unigram({"a": -1.0}).decode([7]), "id 7"),
    ],
)
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
