"""Data: the corpus prepares to a cache, batches are deterministic per (seed, step)."""

import json

import numpy as np
import pytest

from week1 import charlm
from week1.data import shakespeare
from week1.data.batches import window_batch


@pytest.fixture(scope="module")
def corpus():
    return shakespeare.prepare()


def test_corpus_round_trips_and_has_no_markdown(corpus):
    text = corpus.decode(corpus.ids[:20000])
    assert corpus.encode(text).tolist() == corpus.ids[:20000].tolist()
    assert "**" not in text and "\n#" not in text
    assert len(corpus.ids) > 4_000_000  # 38 plays, ~5 MB


def test_same_seed_same_batches_other_seed_others(corpus):
    a = window_batch(corpus.ids, 8, 16, seed=0, step=5)
    b = window_batch(corpus.ids, 8, 16, seed=0, step=5)
    c = window_batch(corpus.ids, 8, 16, seed=1, step=5)
    d = window_batch(corpus.ids, 8, 16, seed=0, step=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])


def test_batch_shapes_and_targets_follow_the_window():
    ids = np.arange(200, dtype=np.uint8)  # every id unique: a window is its start + 0..7
    x, y = window_batch(ids, 8, 4, seed=0, step=0)
    assert x.shape == (4, 8) and y.shape == (4,) and x.dtype == np.int32
    assert np.array_equal(x, x[:, :1] + np.arange(8))
    assert np.array_equal(y, x[:, -1] + 1)


def test_too_short_corpus_is_refused():
    with pytest.raises(ValueError, match="block_size=8"):
        window_batch(np.arange(5, dtype=np.uint8), 8, 4, seed=0, step=0)


def test_stale_cache_is_rebuilt(tmp_path):
    first = shakespeare.prepare(tmp_path)
    meta = tmp_path / "shakespeare_chars.json"
    stale = json.loads(meta.read_text())
    stale["sha256"] = "0" * 64  # as if the source had changed
    meta.write_text(json.dumps(stale))
    np.save(tmp_path / "shakespeare_chars.npy", first.ids[:10])  # and the cached array is wrong
    again = shakespeare.prepare(tmp_path)
    assert np.array_equal(again.ids, first.ids)
    assert json.loads(meta.read_text())["sha256"] != "0" * 64


def test_split_and_baseline():
    cfg = charlm.Config()
    data = charlm.load_data(cfg)
    assert len(data.train) + len(data.val) == len(data.corpus.ids)
    # The unigram baseline is an entropy in nats: between 0 and log(vocab).
    assert 0 < charlm.unigram_baseline(data) < np.log(data.vocab_size)
