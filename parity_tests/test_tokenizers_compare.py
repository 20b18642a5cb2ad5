"""Tokenizer comparison: the JAX and torch pipelines give the numpy reference's ids, for every
tokenizer; the metrics say what each tokenizer can and cannot do. A CI-sized corpus."""

import functools
import io

import numpy as np
import pytest

from labs import tokenizers_compare as spec
from week1.data import code, multilingual, shakespeare
from week1.tokenization import hf, unigram, wordpiece
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
    columns = ("bytes/token", "tokens/word", "unk rate", "round trip", "lossless bytes/token")
    corpus, toks = small()
    rows = {
        (name, kind): dict(zip(columns, values, strict=True))
        for name, kind, *values in spec.evaluate(toks, corpus)
    }
    assert set(rows) == {(n, k) for n in spec.TOKENIZERS for k in spec.KINDS}
    for kind in spec.KINDS:
        assert rows["BPE", kind]["unk rate"] == 0 and rows["BPE", kind]["round trip"] == 1
        assert rows["BPE", kind]["bytes/token"] > 1  # it compresses: merges were learned
        assert rows["BPE", kind]["lossless bytes/token"] == rows["BPE", kind]["bytes/token"]
    assert rows["WordPiece", "code"]["round trip"] < 1  # indentation is gone after decode
    overlap = {row[0]: row[1:] for row in spec.overlap(toks)}
    assert all(overlap[n][i] == 1 for i, n in enumerate(spec.TOKENIZERS))


def test_fertility_plot(tmp_path):
    corpus, toks = small()
    fertility = spec.fertility_by_language(toks, corpus)
    assert set(fertility) == set(spec.TOKENIZERS) and set(fertility["BPE"]) == set(LANGUAGES)
    assert spec.plot_fertility(tmp_path / "f.png", fertility).stat().st_size > 10_000


# -- WordPiece and Unigram from scratch (week1/tokenization/) against the libraries --------------


def held_out_texts():
    corpus, _ = small()
    return [t for kind in spec.KINDS for t in corpus.held_out[kind]]


def _ids_and_lengths(rows):
    """Ragged id lists as (concatenated ids, row lengths): EXACT compares arrays."""
    return np.array([i for row in rows for i in row]), np.array([len(row) for row in rows])


@functools.cache
def wordpieces():
    """Our WordPiece trained on the small corpus, and HF's WordPieceTrainer on the same."""
    corpus, _ = small()
    ours = wordpiece.train(corpus.train, 800, ("<pad>", "<unk>"), "<unk>")
    theirs = hf.train_wordpiece(corpus.train, 800, ("<pad>", "<unk>"), "<unk>")
    return ours, theirs


@pytest.mark.parametrize("trained_by", ["ours", "hf"])
def test_wordpiece_encoding_equals_hf(trained_by):
    """Greedy longest-match-first with '##': our encoder gives HF `models.WordPiece`'s ids over
    the same vocabulary (ours, or the one HF's trainer learned), on English, code and five
    languages (unknown words, punctuation, words over 100 characters included)."""
    ours, theirs = wordpieces()
    vocab = ours.vocab if trained_by == "ours" else theirs.get_vocab()
    reference = hf.wordpiece(vocab, "<unk>")
    encoder = wordpiece.WordPiece(vocab, "<unk>")
    texts = [*held_out_texts(), "x" * 101 + " ok", "don't!  [UNK]?", ""]
    got = _ids_and_lengths([encoder.encode(t) for t in texts])
    want = _ids_and_lengths([e.ids for e in reference.encode_batch(texts)])
    for name, a, b in zip(("ids", "lengths"), got, want, strict=True):
        assert_close(f"wordpiece encode ({trained_by} vocab)", name, a, b, EXACT)


def sentencepiece_unigram(texts, vocab_size):
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=0.9995,  # leaves rare characters out: unknowns in the lattice
        normalization_rule_name="identity",
        max_sentence_length=1 << 16,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def normal_pieces(sp) -> dict[str, float]:
    """piece -> score of a SentencePieceProcessor's normal pieces (not <unk>, <s>, </s>)."""
    return {
        sp.id_to_piece(i): sp.get_score(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))
    }


def assert_same_segmentation(check, sp, texts):
    """Our Viterbi over sp's own pieces and scores gives sp's pieces, unknown runs included."""
    model = unigram.Unigram(normal_pieces(sp), ("<unk>",), "<unk>")
    got, want = [], []
    for text in texts:
        ref = sp.encode(text, out_type=str)
        ref_unk = [sp.is_unknown(i) for i in sp.encode(text)]
        normalized = "".join(ref)  # what sp segmented (spaces already '▁')
        ours = model.segment(normalized)
        got.append([(p, i == model.unk_id) for p, i in ours])
        want.append(list(zip(ref, ref_unk, strict=True)))
    flat = [np.array([x for row in rows for x in row], dtype=object) for rows in (got, want)]
    assert_close(check, "pieces", flat[0][:, 0].astype(str), flat[1][:, 0].astype(str), EXACT)
    assert_close(check, "unknown", flat[0][:, 1].astype(bool), flat[1][:, 1].astype(bool), EXACT)
    assert_close(
        check, "lengths", *(np.array([len(r) for r in rows]) for rows in (got, want)), EXACT
    )


def test_viterbi_equals_sentencepiece_on_its_trained_pieces():
    """sentencepiece trained on the small corpus; its pieces and float32 scores read back into
    our Unigram; every held-out text segments identically (characters outside its 99.95%
    coverage come out as one unknown token per run, in both)."""
    corpus, _ = small()
    sp = sentencepiece_unigram(corpus.train, 800)
    texts = held_out_texts()
    assert any(sp.unk_id() in row for row in sp.encode(texts))  # the unknown path is exercised
    assert_same_segmentation("unigram viterbi (spm-trained pieces)", sp, texts)


def test_viterbi_ties_break_as_sentencepiece():
    """A model built by hand with scores that make many paths tie exactly: sentencepiece keeps
    the path whose last piece starts earliest, and so do we. 'd' is in no piece: unknown."""
    from sentencepiece import SentencePieceProcessor
    from sentencepiece import sentencepiece_model_pb2 as pb

    rng = np.random.default_rng(0)
    pieces = ["a", "b", "c", "ab", "bc", "ca", "abc", "bca", "cab", "aa", "aab", "abca"]
    model = pb.ModelProto()
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = False
    model.normalizer_spec.remove_extra_whitespaces = False
    model.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    unk = model.pieces.add()
    unk.piece, unk.type = "<unk>", pb.ModelProto.SentencePiece.UNKNOWN
    for piece in pieces:
        entry = model.pieces.add()
        entry.piece, entry.score = piece, float(rng.choice([-1.0, -2.0, -3.0]))
    sp = SentencePieceProcessor(model_proto=model.SerializeToString())
    texts = ["".join(rng.choice(list("abcd"), size=rng.integers(1, 14))) for _ in range(400)]
    assert_same_segmentation("unigram viterbi (ties)", sp, texts)


def test_trained_vocabularies_against_the_libraries():
    """Our trainers against HF's WordPieceTrainer and sentencepiece's unigram, same corpus and
    budget. Exact identity is not expected, and the table says how far apart they land:

    - WordPiece: HF's WordPieceTrainer is BpeTrainer with a '##' prefix, so it merges the most
      *frequent* pair; ours merges the highest count(ab) / (count(a) count(b)), which prefers
      rare pairs whose parts always co-occur. Different merges, different vocabularies.
    - Unigram: sentencepiece seeds from the suffix array's repeated substrings (ours: all
      substrings seen twice, same script rule only roughly), splits pieces by Unicode script
      with its own tables, sums expected counts in float32 over threads, and prunes with the
      same loss but from a different seed, so pieces near the cut-off differ.

    What must hold: our Unigram compresses held-out text about as well as sentencepiece's
    (within 10%, every kind) and shares more of its vocabulary with it than with HF's BPE."""
    corpus, toks = small()
    jaccard = {
        row[0]: dict(zip(spec.TOKENIZERS, row[1:], strict=True)) for row in spec.overlap(toks)
    }
    bytes_per_token = {(name, kind): bpt for name, kind, bpt, *_ in spec.evaluate(toks, corpus)}
    for kind in spec.KINDS:
        ours, ref = bytes_per_token["Unigram (ours)", kind], bytes_per_token["Unigram spm", kind]
        assert abs(ours / ref - 1) < 0.1, (kind, ours, ref)
    assert jaccard["Unigram (ours)"]["Unigram spm"] > jaccard["Unigram (ours)"]["BPE"]
    ours, theirs = wordpieces()
    assert len(ours.vocab) == len(theirs.get_vocab()) == 800
    assert set(ours.vocab) != set(theirs.get_vocab())  # the two rules learn different merges
