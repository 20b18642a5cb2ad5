"""vocabulary parity: the embedding grown for added tokens is the same in JAX, torch and numpy
(old rows exactly, new rows the mean of the old in F32); a smaller BPE is exactly the first
merges of a larger HF run; the sweep and the word baseline on a CI-sized corpus; the LM's
units cut the text losslessly (the JAX vs torch LM curves per unit: parity_tests/test_compare.py
through COMPARE_TEST)."""

import dataclasses

import numpy as np
import pytest
import torch
from flax import nnx
from tokenizers import decoders

from labs import vocabulary as spec
from week1.config import UsageError
from week1.runs import Run
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
    lm_units="byte,bpe300,word300",
    lm_steps=6,
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
def test_run(lab, capsys, tmp_path):
    with Run("vocabulary", lab.__name__.split(".")[0][len("week1_") :], CFG, root=tmp_path,
             tensorboard=False) as run:  # fmt: skip
        summary = lab.run(CFG, run)
    assert summary["old rows unchanged"] and summary["new rows - mean of old, max |diff|"] < 1e-5
    out = capsys.readouterr().out
    assert "word-level baseline" in out and "the char LM per unit" in out
    assert all(0 < summary[f"{unit} val bits/char"] < 9 for unit in CFG.unit_list)
    assert (run.dir / "vocabulary_lm.png").stat().st_size > 0


def test_lm_units_cut_the_text_losslessly():
    """Each unit's validation ids spell the validation text back: bytes decode, BPE ids decode
    through the tokenizer, the word unit's pieces (before ids) join back through the ByteLevel
    decoder; a word id is its piece's frequency rank, 0 (<unk>) past the vocabulary."""
    _, val_text = spec.lm_text()
    tokens = spec.units(CFG)
    assert bytes(tokens["byte"].val.astype(np.uint8)).decode("utf-8") == val_text
    assert spec.lm_bpe(300).decode(tokens["bpe300"].val.tolist()) == val_text
    word_pieces = spec.pieces(val_text)
    assert decoders.ByteLevel().decode(word_pieces) == val_text
    word = tokens["word300"]
    assert len(word.val) == len(word_pieces) and word.val.max() == 299
    assert word.val_unknown == pytest.approx(np.mean(word.val == 0)) and word.val_unknown > 0
    assert tokens["byte"].tokens_per_char > tokens["bpe300"].tokens_per_char
    assert tokens["bpe300"].tokens_per_char > tokens["word300"].tokens_per_char


def test_an_lm_bpe_unit_is_the_prefix_of_the_largest_run():
    """bpe300 cut from the run at 600 tokenizes as a run trained to 300 does."""
    _, val_text = spec.lm_text()
    sample = val_text[:20_000]
    assert spec.lm_bpe(300, 600).encode(sample).ids == spec.lm_bpe(300).encode(sample).ids


@pytest.mark.parametrize(
    "units, words",
    [("byte,foo", ["'foo'", "bpe<size>"]), ("bpe100", ["'bpe100'", "[256, 65536]"]),
     ("word0", ["'word0'"]), ("byte12", ["'byte12'"]), (",", ["at least one unit"])],
)  # fmt: skip
def test_bad_lm_units_are_refused(units, words):
    with pytest.raises(UsageError) as error:
        dataclasses.replace(CFG, lm_units=units).check()
    assert all(word in str(error.value) for word in words), str(error.value)


def test_a_string_already_in_the_vocabulary_adds_no_row():
    _, merges, vocab = spec.largest_bpe(CFG)
    known = next(t for t, i in vocab.items() if i == CFG.added_size - 1)  # the last merge
    tok, n_old, ids, n_new, _ = spec.added_tokens(
        dataclasses.replace(CFG, new_tokens=f"{known},<|u|>")
    )
    assert n_new == 1 and ids == [CFG.added_size - 1, n_old]


def test_cached_tokens_are_the_cut_tokens_and_a_corrupt_cache_is_cut_again(tmp_path, monkeypatch):
    unit = "byte"  # the quickest to cut; every unit is the same Tokens in the same file format
    monkeypatch.setattr(spec, "cache_dir", lambda: tmp_path)
    spec.unit_tokens.cache_clear()
    cut = spec.unit_tokens(unit)
    (path,) = tmp_path.glob(f"vocabulary_tokens_*_{unit}.npz")
    spec.unit_tokens.cache_clear()
    for _ in range(2):  # read back whole, then from a file cut short
        again = spec.unit_tokens(unit)
        spec.unit_tokens.cache_clear()
        assert dataclasses.astuple(again)[3:] == dataclasses.astuple(cut)[3:]
        assert np.array_equal(again.train, cut.train) and np.array_equal(again.val, cut.val)
        path.write_bytes(path.read_bytes()[:100])
    assert spec.unit_tokens(unit).vocab_size == cut.vocab_size and path.stat().st_size > 100
    spec.unit_tokens.cache_clear()
