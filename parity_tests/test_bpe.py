"""BPE parity: reference == JAX == torch == HF BpeTrainer, in merges, vocabulary and ids.

CI-sized corpora (slices of Shakespeare and of the stdlib's code); the full 5.3 MB
run at vocab 8000 is marked slow.
"""

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from week1.data import code, shakespeare
from week1.tokenization import hf
from week1.tokenization import train as reference
from week1.tolerances import EXACT, assert_close
from week1_jax import bpe as jax_bpe
from week1_torch import bpe as torch_bpe

TRAINERS = {"reference": reference.train, "jax": jax_bpe.train, "torch": torch_bpe.train}
SPECIALS = ("<|endoftext|>", "<pad>")


@functools.cache
def corpus(name: str) -> tuple[list[str], str]:
    """(training texts, held-out text) for a named corpus."""
    if name == "shakespeare":
        text = shakespeare.load_text()
        return text[:120_000].splitlines(keepends=True), text[-30_000:]
    if name == "shakespeare_full":
        text = shakespeare.load_text()
        return text.splitlines(keepends=True), text[-30_000:]
    if name == "shakespeare_specials":  # documents joined by a special token
        text = shakespeare.load_text()[:60_000]
        return [p + "<|endoftext|>" for p in text.split("\n\n")], "end<|endoftext|>start<pad><pad>x"
    if name == "code":
        return code.load_texts(100_000), "".join(code.load_texts(20_000, skip=200))
    raise KeyError(name)


CASES = {  # id: (corpus, vocab_size, min_frequency, special_tokens)
    "shakespeare-300": ("shakespeare", 300, 0, ()),
    "shakespeare-1000": ("shakespeare", 1000, 0, ()),
    "shakespeare-8000": ("shakespeare", 8000, 0, ()),
    "code-1000": ("code", 1000, 0, ()),
    "min_frequency-specials": ("shakespeare_specials", 1000, 5, SPECIALS),
}


@functools.cache
def trained(case: str, impl: str):
    name, vocab_size, min_frequency, specials = CASES.get(case) or SLOW_CASES[case]
    texts, _ = corpus(name)
    if impl == "hf":
        return hf.train_bpe(texts, vocab_size, min_frequency, specials)
    return TRAINERS[impl](texts, vocab_size, min_frequency, specials)


def check_against_hf(case: str, impl: str, tmp_path):
    ours, ref = trained(case, impl), trained(case, "hf")
    merges, vocab = hf.merges_and_vocab(ref)
    assert ours.merges == merges, next(
        (i, m, r) for i, (m, r) in enumerate(zip(ours.merges, merges, strict=False)) if m != r
    )
    assert ours.vocab == vocab
    _, held_out = corpus((CASES.get(case) or SLOW_CASES[case])[0])
    ids = ours.encode(held_out)
    assert_close(
        f"bpe {case}", f"{impl} ids", np.asarray(ids), np.asarray(ref.encode(held_out).ids), EXACT
    )
    # Our tokenizer.json is one HF loads, and encodes with identically.
    loaded = Tokenizer.from_file(str(ours.save(tmp_path / "tokenizer.json")))
    assert loaded.encode(held_out).ids == ids
    assert ours.decode(ids) == held_out


@pytest.mark.parametrize("impl", TRAINERS)
@pytest.mark.parametrize("case", CASES)
def test_same_as_hf(case, impl, tmp_path):
    check_against_hf(case, impl, tmp_path)


SLOW_CASES = {"shakespeare_full-8000": ("shakespeare_full", 8000, 0, ())}


@pytest.mark.slow
@pytest.mark.parametrize("impl", TRAINERS)
def test_full_corpus_same_as_hf(impl, tmp_path):
    check_against_hf("shakespeare_full-8000", impl, tmp_path)


def test_array_trainers_recount_when_their_tables_fill(monkeypatch):
    """Tiny slot tables force the full-recount path many times; the merges must not change."""
    monkeypatch.setattr(jax_bpe, "SLOTS", 1 << 12)
    monkeypatch.setattr(torch_bpe, "SPARE_SLOTS", 16)
    texts, _ = corpus("shakespeare")
    ref = trained("shakespeare-1000", "reference")
    for train in (jax_bpe.train, torch_bpe.train):
        ours = train(texts, 1000)
        assert ours.merges == ref.merges and ours.vocab == ref.vocab


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_trainer_on_gpu():
    texts, _ = corpus("shakespeare")
    ours = torch_bpe.train(texts, 1000, device="cuda")
    ref = trained("shakespeare-1000", "reference")
    assert ours.merges == ref.merges and ours.vocab == ref.vocab


def test_hf_tokenizer_json_loads_into_ours(tmp_path):
    ref = trained("shakespeare-1000", "hf")
    ref.save(str(tmp_path / "hf.json"))
    ours = reference.BPE.load(tmp_path / "hf.json")
    _, held_out = corpus("shakespeare")
    assert ours.encode(held_out) == ref.encode(held_out).ids


# Arbitrary unicode, weighted towards the hard parts: emoji (multi-byte, ZWJ sequences),
# NUL and control characters, combining marks, mixed scripts, runs of whitespace.
HARD = st.sampled_from(
    [
        "\x00",
        "\t",
        "\n",
        "\r\n",
        "  ",
        "   ",
        "\u3000",
        "\u00a0",
        "e\u0301",
        "\u0301",
        "👍🏽",
        "👨\u200d👩\u200d👧",
        "🇫🇷",
        "Ω",
        "ж",
        "中文",
        "한국어",
        "العربية",
        "हिन्दी",
        "'s",
        "'ll",
        "123",
        "٣",
        "²",
        "\ufeff",
        "\U0010ffff",
        "<|endoftext|>",
        "<pad>",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=8), HARD), max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_roundtrip_and_hf_ids_on_arbitrary_text(s):
    case = "min_frequency-specials"
    ref = trained(case, "hf")
    for impl in TRAINERS:
        tok = trained(case, impl)
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert ids == ref.encode(s).ids
