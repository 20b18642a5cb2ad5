"""vocabulary parity: the embedding grown for added tokens is the same in JAX, torch and numpy
(old rows exactly, new rows the mean of the old in F32); a smaller BPE is exactly the first
merges of a larger HF run; the sweep and the word baseline on a CI-sized corpus."""

import dataclasses

import numpy as np
import pytest
import torch
from flax import nnx

from labs import vocabulary as spec
from week1.tokenization import hf
from week1.tolerances import EXACT, F32, assert_close
from week1_jax import vocabulary as jax_lab
from week1_torch import vocabulary as torch_lab

CFG = spec.Config(
    sizes="300,600,1200",
    chars_per_kind=40_000,
    n_embd=16,
    added_size=600,
    new_tokens="THESEUS,<|u|>",
)


def test_a_smaller_bpe_is_the_prefix_of_a_larger_run():
    corpus, merges, vocab = spec.largest_bpe(CFG)
    direct = hf.merges_and_vocab(hf.train_bpe(corpus.train, 600))
    prefix = hf.merges_and_vocab(spec.truncated(merges, vocab, 600))
    assert prefix[0] == direct[0] and prefix[1] == direct[1]


def test_resized_embedding_is_the_same_in_jax_torch_and_numpy():
    start = spec.start_embedding(50, 8)
    reference = spec.resize_reference(start, 3)
    emb = nnx.Embed(50, 8, rngs=nnx.Rngs(0))
    emb.embedding[...] = start
    grown = {
        "jax": np.asarray(jax_lab.resize_embedding(emb, 3).embedding[...]),
        "torch": torch_lab.resize_embedding(
            torch.nn.Embedding.from_pretrained(torch.from_numpy(start)), 3
        )
        .weight.detach()
        .numpy(),
    }
    for framework, weight in grown.items():
        assert weight.shape == (53, 8)
        assert_close("vocabulary resize", f"{framework} old rows", weight[:50], start, EXACT)
        assert_close("vocabulary resize", f"{framework} new rows", weight, reference, F32)
    assert_close("vocabulary resize", "jax vs torch", grown["jax"], grown["torch"], F32)


def test_added_tokens_get_the_next_ids_and_stay_whole():
    tok, n_old, ids, n_new, (before, after) = spec.added_tokens(CFG)
    assert n_old == CFG.added_size and n_new == len(CFG.added)  # neither was a token yet
    assert ids == list(range(n_old, n_old + n_new)) and tok.get_vocab_size() == n_old + n_new
    _, merges, vocab = spec.largest_bpe(CFG)
    fresh = spec.truncated(merges, vocab, CFG.added_size)  # the same BPE without them
    for token, i in zip(CFG.added, ids, strict=True):
        text = f"and {token} said"
        assert tok.encode(text).ids.count(i) == 1
        assert len(tok.encode(text).ids) < len(fresh.encode(text).ids)
    assert after <= before


def test_sweep_compresses_more_as_the_vocabulary_grows():
    rows = spec.sweep(CFG)
    assert [r[0] for r in rows] == CFG.size_list
    for k in range(1, 4):  # tokens/char per kind
        assert all(a[k] > b[k] for a, b in zip(rows, rows[1:], strict=False))
    assert all(r[4] == r[0] * CFG.n_embd and r[5] == 2 * r[6] for r in rows)


def test_word_baseline():
    assert spec.coverage_size({"a": 5, "b": 3, "c": 1, "d": 1}, 0.8) == 2
    assert spec.coverage_size({"a": 5, "b": 3, "c": 1, "d": 1}, 0.81) == 3
    sizes, rows = spec.word_baseline(CFG)
    by_text = {r[0]: r[1:] for r in rows}
    assert {f"all {k}" for k in spec.KINDS} <= set(by_text) and len(by_text) > 20
    assert all(0 <= full <= top <= 1 for full, top in by_text.values())
    chinese, english = by_text["chatterbot chinese"], by_text["chatterbot english"]
    assert chinese[0] > english[0]  # no spaces: its 'words' are phrases


@pytest.mark.parametrize("lab", [jax_lab, torch_lab], ids=["jax", "torch"])
def test_run(lab, capsys):
    summary = lab.run(CFG, None)
    assert summary["old rows unchanged"] and summary["new rows - mean of old, max |diff|"] < 1e-5
    assert "word-level baseline" in capsys.readouterr().out


def test_a_string_already_in_the_vocabulary_adds_no_row():
    _, merges, vocab = spec.largest_bpe(CFG)
    known = next(t for t, i in vocab.items() if i == CFG.added_size - 1)  # the last merge
    tok, n_old, ids, n_new, _ = spec.added_tokens(
        dataclasses.replace(CFG, new_tokens=f"{known},<|u|>")
    )
    assert n_new == 1 and ids == [CFG.added_size - 1, n_old]
