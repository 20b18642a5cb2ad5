"""week1.data.vectors against gensim: the kv loader, the word2vec file formats, and the
similarity/analogy scores (gensim's evaluate_word_pairs / evaluate_word_analogies on the same
vectors are the reference)."""

import numpy as np
import pytest
from scipy import stats

from week1.data import vectors

gensim_models = pytest.importorskip("gensim.models")


@pytest.fixture(scope="module")
def pretrained():
    return vectors.load_pretrained()


def as_gensim(wv: vectors.WordVectors):
    kv = gensim_models.KeyedVectors(wv.vector_size)
    kv.add_vectors(wv.words, wv.vectors)
    return kv


def test_kv_loader_reads_what_gensim_reads(pretrained):
    path = vectors.package_dir("wefe") / "datasets" / "data" / "test_model.kv"
    kv = gensim_models.KeyedVectors.load(str(path))
    assert pretrained.words == [str(w) for w in kv.index_to_key]
    np.testing.assert_array_equal(pretrained.vectors, kv.vectors)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_word2vec_format_round_trip_through_gensim(pretrained, tmp_path, binary):
    words, rows = pretrained.words[:300], pretrained.vectors[:300]
    path = vectors.save_word2vec_format(tmp_path / "v", words, rows, binary=binary)
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert [str(w) for w in kv.index_to_key] == words
    np.testing.assert_array_equal(kv.vectors, rows)
    ours = vectors.load_word2vec_format(path)  # format detected
    assert ours.words == words
    np.testing.assert_array_equal(ours.vectors, rows)
    as_gensim(ours).save_word2vec_format(str(tmp_path / "g"), binary=binary)
    np.testing.assert_array_equal(vectors.load_word2vec_format(tmp_path / "g").vectors, rows)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 200).astype(float), rng.normal(size=200)
    assert vectors.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)


@pytest.mark.parametrize("name", sorted(vectors.PAIR_SETS))
def test_word_pairs_equal_gensim(pretrained, name):
    path = vectors.eval_path(vectors.PAIR_SETS[name])
    ours = vectors.evaluate_word_pairs(pretrained, path)
    pearson, spearman, oov = as_gensim(pretrained).evaluate_word_pairs(str(path))
    assert ours.spearman == pytest.approx(spearman[0], abs=1e-9)
    assert ours.pearson == pytest.approx(pearson[0], abs=1e-6)
    assert ours.oov_ratio == pytest.approx(oov)


def test_analogies_equal_gensim(pretrained):
    # The first 1,500 words (case variants among them) keep gensim's per-question loop short.
    small = vectors.WordVectors(pretrained.words[:1500], pretrained.vectors[:1500])
    path = vectors.eval_path(vectors.ANALOGIES)
    ours = vectors.evaluate_word_analogies(small, path)
    score, sections = as_gensim(small).evaluate_word_analogies(str(path))
    assert ours.total > 300 and 0 < ours.correct < ours.total
    assert ours.accuracy == score
    for section in sections[:-1]:
        correct, total = (
            len(section["correct"]),
            len(section["correct"]) + len(section["incorrect"]),
        )
        assert ours.sections.get(section["section"], (0, 0)) == (correct, total)


def test_most_similar_equals_gensim(pretrained):
    ours = pretrained.most_similar(["king", "woman"], ["man"], topn=5)
    theirs = as_gensim(pretrained).most_similar(
        positive=["king", "woman"], negative=["man"], topn=5
    )
    assert [w for w, _ in ours] == [str(w) for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-6)


def test_eval_files_come_from_the_cache_without_gensim(tmp_path, monkeypatch):
    monkeypatch.setenv("WEEK1_DATA", str(tmp_path))
    assert len(vectors.prepare_eval()) == 3
    find = vectors.package_dir
    monkeypatch.setattr(vectors, "package_dir", lambda name: find("no_such_package"))
    path = vectors.eval_path(vectors.ANALOGIES)
    assert path == tmp_path / vectors.ANALOGIES and path.stat().st_size > 0


def _global_call_pickle(module: str, name: str, arg: str) -> bytes:
    """A protocol-4 pickle that calls module.name(arg) when loaded (STACK_GLOBAL + REDUCE)."""
    import pickle

    def unicode(text: str) -> bytes:
        raw = text.encode()
        return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw

    return (
        pickle.PROTO + b"\x04" + unicode(module) + unicode(name) + pickle.STACK_GLOBAL
        + unicode(arg) + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP
    )  # fmt: skip


@pytest.mark.parametrize(
    "module, name",
    [("numpy.lib._datasource", "os.system"), ("numpy", "load"), ("posix", "system")],
)
def test_a_vectors_pickle_cannot_run_code(tmp_path, module, name):
    """The bypass found in issue 21: a dotted name inside an allowed module reaches os.system."""
    import pickle

    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.kv"
    path.write_bytes(_global_call_pickle(module, name, f"touch {marker}"))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        vectors.load_kv(path)
    assert not marker.exists()


def test_gensim_4_saved_vectors_load(pretrained, tmp_path):
    small = vectors.WordVectors(pretrained.words[:50], pretrained.vectors[:50])
    as_gensim(small).save(str(tmp_path / "small.kv"))
    loaded = vectors.load_kv(tmp_path / "small.kv")
    assert loaded.words == small.words
    np.testing.assert_array_equal(loaded.vectors, small.vectors)
