"""Tokenizer comparison: the JAX and torch pipelines give the numpy reference's ids, for every
tokenizer; the metrics say what each tokenizer can and cannot do. A CI-sized corpus."""

import functools

import numpy as np
import pytest

from labs import tokenizers_compare as spec
from week1.data import code, multilingual, shakespeare
from week1.tolerances import EXACT, assert_close
from week1_jax import tokenizers_compare as jax_lab
from week1_torch import tokenizers_compare as torch_lab

LANGUAGES = ("english", "german", "spanish", "italian", "russian")


@functools.cache
def small():
    """English, code and five languages, ~150 kB: every kind, in seconds."""
    english = [t for t in shakespeare.load_text()[:60_000].splitlines() if t.strip()]
    source = [t for t in "".join(code.load_texts(60_000)).splitlines() if t.strip()]
    languages = {k: v for k, v in multilingual.load_texts().items() if k in LANGUAGES}
    train, held_out, by_language = [], {}, {}
    for kind, texts in (("english", english), ("code", source)):
        fit, held_out[kind] = spec.split(texts, 10)
        train += fit
    held_out["multilingual"] = []
    for language, texts in languages.items():
        fit, by_language[language] = spec.split(texts, 10)
        train += fit
        held_out["multilingual"] += by_language[language]
    corpus = spec.Corpus(train, held_out, by_language)
    return corpus, spec.train_all(corpus.train, 800)


@pytest.mark.parametrize("name", spec.TOKENIZERS)
def test_jax_and_torch_pipelines_give_the_same_ids(name):
    corpus, toks = small()
    tok = toks[name]
    texts = [t for kind in spec.KINDS for t in corpus.held_out[kind]][:200]
    reference = spec.pad_batches(tok.encode_batch(texts), 16, 24, tok.pad_id)
    for framework, lab in (("jax", jax_lab), ("torch", torch_lab)):
        batches = lab.pipeline(tok, texts, 16, 24)
        assert len(batches) == len(reference)
        for k, (ours, ref) in enumerate(zip(batches, reference, strict=True)):
            assert_close(
                f"tokenizers_compare {name}", f"{framework} batch {k}", np.asarray(ours), ref, EXACT
            )


def test_metrics_separate_the_tokenizers():
    """Byte-level BPE is lossless with no unknowns everywhere; WordPiece loses whitespace."""
    corpus, toks = small()
    rows = {
        (name, kind): dict(
            zip(("bytes/token", "tokens/word", "unk rate", "round trip"), values, strict=True)
        )
        for name, kind, *values in spec.evaluate(toks, corpus)
    }
    assert set(rows) == {(n, k) for n in spec.TOKENIZERS for k in spec.KINDS}
    for kind in spec.KINDS:
        assert rows["BPE", kind]["unk rate"] == 0 and rows["BPE", kind]["round trip"] == 1
        assert rows["BPE", kind]["bytes/token"] > 1  # it compresses: merges were learned
    assert rows["WordPiece", "code"]["round trip"] < 1  # indentation is gone after decode
    overlap = {row[0]: row[1:] for row in spec.overlap(toks)}
    assert all(overlap[n][i] == 1 for i, n in enumerate(spec.TOKENIZERS))


def test_fertility_plot(tmp_path):
    corpus, toks = small()
    fertility = spec.fertility_by_language(toks, corpus)
    assert set(fertility) == set(spec.TOKENIZERS) and set(fertility["BPE"]) == set(LANGUAGES)
    assert spec.plot_fertility(tmp_path / "f.png", fertility).stat().st_size > 10_000
