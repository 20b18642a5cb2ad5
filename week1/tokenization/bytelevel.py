"""Step 1: text -> words, the GPT-2 byte-level way (what `ByteLevel(add_prefix_space=False)` does).

BPE never merges across word boundaries, so training starts by splitting text into
"words" with GPT-2's regex (contractions, optional space + letters, optional space +
digits, optional space + punctuation, whitespace runs) and counting each distinct word.
Each word's UTF-8 bytes are then written as printable characters: byte b becomes
`BYTE_TO_CHAR[b]`, so ' ' is 'Ġ' and '\\n' is 'Ċ'. Every string maps to these 256
symbols, so there is no unknown token, and decode is the inverse table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import regex

# GPT-2's split (tokenizers' ByteLevel uses the same one). \p{L} letters, \p{N} digits;
# `\s+(?!\S)` leaves the last space of a run to the word that follows it.
PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable bytes stand for themselves, the other 68 are shifted past 255."""
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, shift = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
# The initial alphabet, in the order BpeTrainer gives it ids: by code point.
ALPHABET = sorted(BYTE_TO_CHAR.values())


def to_symbols(piece: str) -> str:
    """A piece of text as byte-level characters: 'Hi there' -> 'HiĠthere'. A string UTF-8
    cannot encode (a lone surrogate such as '\\ud800') is a ValueError naming the position."""
    try:
        data = piece.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"cannot encode {piece[err.start : err.end]!r} at {err.start}: not valid Unicode text "
            "(a lone surrogate has no UTF-8 bytes)"
        ) from None
    return "".join(BYTE_TO_CHAR[b] for b in data)


def from_symbols(symbols: str) -> bytes:
    return bytes(CHAR_TO_BYTE[c] for c in symbols)


def pretokenize(text: str) -> list[str]:
    """The words of `text`, each in byte-level form."""
    return [to_symbols(w) for w in PATTERN.findall(text)]


def count_words(texts: Iterable[str], split=PATTERN.findall) -> Counter:
    """word -> number of occurrences over all texts, each text split on its own by `split`
    (default: the byte-level pre-tokenizer's pattern, like HF). The WordPiece and Unigram
    trainers count with their own splits."""
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of str, not one str (wrap it: [text])")
    counts = Counter()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__} ({text!r:.40}), expected str")
        counts.update(split(text))
    if not counts:
        raise ValueError("empty corpus: texts held no words to train on")
    return counts


def check_train_args(vocab_size, min_frequency, special_tokens) -> tuple[str, ...]:
    """Validate train()'s arguments the same way in every implementation; returns the specials."""
    specials = tuple(special_tokens)
    for tok in specials:
        if not isinstance(tok, str) or not tok:
            raise ValueError(f"special token {tok!r}: must be a non-empty str")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens {specials!r}: contain duplicates")
    if not isinstance(vocab_size, int) or vocab_size < len(ALPHABET) + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size!r}: must be an int >= {len(ALPHABET) + len(specials)} "
            f"(256 byte symbols + {len(specials)} special tokens)"
        )
    if not isinstance(min_frequency, int) or min_frequency < 0:
        raise ValueError(f"min_frequency={min_frequency!r}: must be an int >= 0")
    return specials


def initial_vocab(specials: tuple[str, ...]) -> dict[str, int]:
    """Special tokens first, then the 256 byte symbols (BpeTrainer's order)."""
    vocab = {}
    for tok in (*specials, *ALPHABET):
        vocab.setdefault(tok, len(vocab))
    return vocab


def word_table(texts, vocab_size, min_frequency, special_tokens):
    """Everything a trainer starts from: (specials, vocab, words as id lists, their counts)."""
    specials = check_train_args(vocab_size, min_frequency, special_tokens)
    counts = Counter({to_symbols(w): n for w, n in count_words(texts).items()})
    vocab = initial_vocab(specials)
    words = [[vocab[c] for c in w] for w in counts]
    return specials, vocab, words, list(counts.values())
