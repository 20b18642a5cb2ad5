"""Step 4: the references from HF `tokenizers`, set up exactly as our trainers are."""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def byte_level(model) -> Tokenizer:
    """A tokenizer around `model` with the ByteLevel pre-tokenizer and decoder (no prefix space)."""
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(texts, vocab_size: int, min_frequency: int = 0, special_tokens=()) -> Tokenizer:
    """HF's BpeTrainer with the full 256-symbol byte alphabet."""
    tok = byte_level(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def merges_and_vocab(tok: Tokenizer) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The merges (in rank order) and vocabulary of a trained HF BPE tokenizer."""
    model = json.loads(tok.to_str())["model"]
    return [tuple(m) for m in model["merges"]], model["vocab"]


def wordpiece(vocab: dict[str, int], unk_token: str) -> Tokenizer:
    """HF's WordPiece encoder over a given vocabulary, with BERT's pre-tokenizer and decoder."""
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk_token))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()
    return tok


def train_wordpiece(texts, vocab_size: int, special_tokens, unk_token: str) -> Tokenizer:
    """HF's WordPieceTrainer: BpeTrainer with a '##' prefix (it merges by pair frequency)."""
    tok = wordpiece({}, unk_token)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    return tok
