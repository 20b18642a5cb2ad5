"""Special tokens: our templates, truncation and padding == HF's; masked loss and grads JAX ==
torch."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, processors

from labs import special_tokens as spec
from week1.tolerances import EXACT, F32, assert_close, assert_tree_close
from week1_jax import special_tokens as jax_lab
from week1_torch import special_tokens as torch_lab

CFG = spec.Config(corpus_chars=100_000, max_length=16, batch_size=8)


@functools.cache
def tok():
    return spec.tokenizer(CFG)


def hf_tokenizer(tmp_path) -> Tokenizer:
    """Our tokenizer.json loaded by HF, with HF's own template, truncation and padding."""
    t = tok()
    hf = Tokenizer.from_file(str(t.save(tmp_path / "tokenizer.json")))
    ids = {s: t.vocab[s] for s in spec.SPECIAL_TOKENS}
    hf.post_processor = processors.TemplateProcessing(
        single=f"{spec.BOS} $A {spec.EOS}",
        pair=f"{spec.CLS} $A {spec.SEP} $B:1 {spec.SEP}:1",
        special_tokens=list(ids.items()),
    )
    hf.enable_truncation(CFG.max_length, strategy="longest_first")
    hf.enable_padding(pad_id=ids[spec.PAD], pad_token=spec.PAD)
    return hf


def hf_batch(encodings) -> dict:
    return {
        "ids": np.array([e.ids for e in encodings]),
        "attention_mask": np.array([e.attention_mask for e in encodings]),
        "type_ids": np.array([e.type_ids for e in encodings]),
    }


def test_special_tokens_get_the_first_ids_and_are_never_split():
    t = tok()
    assert [t.vocab[s] for s in spec.SPECIAL_TOKENS] == list(range(len(spec.SPECIAL_TOKENS)))
    ids = t.encode(f"to be{spec.MASK}or not{spec.SEP}{spec.SEP} to be")
    assert ids.count(t.vocab[spec.MASK]) == 1 and ids.count(t.vocab[spec.SEP]) == 2
    assert not any(s in a + b for a, b in t.merges for s in spec.SPECIAL_TOKENS)


def test_single_template_truncation_padding_equal_hf(tmp_path):
    texts = spec.demo_texts(CFG)
    ours = spec.pad_batch(
        [spec.encode_single(tok(), x, CFG.max_length) for x in texts], tok().vocab[spec.PAD]
    )
    ref = hf_batch(hf_tokenizer(tmp_path).encode_batch(texts))
    assert ours["ids"].shape[1] == CFG.max_length  # some rows were truncated
    for key in ref:
        assert_close("special_tokens single", key, ours[key], ref[key], EXACT)


@pytest.mark.parametrize("lengths", [(3, 40), (40, 3), (30, 31), (5, 6), (9, 9)])
def test_pair_template_longest_first_equals_hf(tmp_path, lengths):
    words = spec.demo_texts(spec.Config(batch_size=40))
    a, b = " ".join(words)[: lengths[0] * 4], " ".join(reversed(words))[: lengths[1] * 4]
    pairs = [(a, b), (b, a), (a[:7], b[:9])]
    ours = spec.pad_batch(
        [spec.encode_pair(tok(), x, y, CFG.max_length) for x, y in pairs], tok().vocab[spec.PAD]
    )
    ref = hf_batch(hf_tokenizer(tmp_path).encode_batch(pairs))
    for key in ref:
        assert_close(f"special_tokens pair {lengths}", key, ours[key], ref[key], EXACT)


def losses_and_grads(batch):
    params = spec.init_params(CFG, len(tok().vocab))
    jl, jg = jax_lab.loss_and_grads(
        {k: jnp.asarray(v) for k, v in params.items()}, jax_lab.as_arrays(batch)
    )
    tl, tg = torch_lab.loss_and_grads(
        {k: torch.from_numpy(v) for k, v in params.items()}, torch_lab.as_tensors(batch)
    )
    return (np.asarray(jl), {k: np.asarray(v) for k, v in jg.items()}), (
        tl.numpy(),
        {k: v.numpy() for k, v in tg.items()},
    )


def test_masked_loss_and_grads_jax_equal_torch():
    batch = spec.lm_batch(tok(), CFG)
    assert (batch["attention_mask"] == 0).any()  # the batch has padding
    (jl, jg), (tl, tg) = losses_and_grads(batch)
    assert_close("special_tokens masked loss", "loss", jl, tl, F32)
    assert_tree_close("special_tokens masked grads", jg, tg, F32)


def test_padding_contributes_nothing():
    """More padding changes nothing; the loss is the real-token-weighted mean of the rows'
    losses."""
    batch = spec.lm_batch(tok(), CFG)
    wider = {
        k: np.pad(
            v, ((0, 0), (0, 5)), constant_values=v[0, -1] if k != "labels" else spec.IGNORE_INDEX
        )
        for k, v in batch.items()
    }
    wider["ids"][:, -5:] = tok().vocab[spec.PAD]
    wider["attention_mask"][:, -5:] = 0
    (jl, jg), (tl, tg) = losses_and_grads(batch)
    (jl2, _), (tl2, _) = losses_and_grads(wider)
    assert_close("special_tokens more padding", "jax loss", jl2, jl, F32)
    assert_close("special_tokens more padding", "torch loss", tl2, tl, F32)
    rows, weights = [], []
    for r in range(len(batch["ids"])):
        n = int(batch["attention_mask"][r].sum())
        one = spec.pad_batch([(list(batch["ids"][r, :n]), [0] * n)], tok().vocab[spec.PAD])
        params = {
            k: torch.from_numpy(v) for k, v in spec.init_params(CFG, len(tok().vocab)).items()
        }
        rows.append(torch_lab.loss_and_grads(params, torch_lab.as_tensors(one))[0].numpy())
        weights.append(n - 1)  # n tokens give n - 1 next-token targets
    assert_close(
        "special_tokens row-weighted", "torch loss", tl, np.average(rows, weights=weights), F32
    )
    # The padding token's embedding is only ever read at padding positions: zero gradient.
    pad = tok().vocab[spec.PAD]
    assert not (batch["ids"][:, :-1][batch["attention_mask"][:, :-1] == 1] == pad).any()
    assert_close(
        "special_tokens pad embedding grad",
        "jax",
        jg["embed"][pad],
        np.zeros_like(jg["embed"][pad]),
        EXACT,
    )
    assert_close(
        "special_tokens pad embedding grad",
        "torch",
        tg["embed"][pad],
        np.zeros_like(tg["embed"][pad]),
        EXACT,
    )
