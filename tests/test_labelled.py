"""Labelled corpora: stratified seeded splits, a train-only vocabulary, the Arrow cache reused
(a second prepare tokenises nothing), and padded batches that depend only on (seed, step)."""

import json

import numpy as np
import pytest

from week1.data import labelled


@pytest.fixture(scope="module")
def polarity():
    return labelled.prepare("polarity")


def test_splits_are_disjoint_stratified_and_sized(polarity):
    splits = polarity.splits
    texts = {name: set(ds["text"]) for name, ds in splits.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    assert not texts["validation"] & texts["test"]
    n = sum(len(ds) for ds in splits.values())
    assert abs(len(splits["test"]) - 0.1 * n) <= 1 and abs(len(splits["validation"]) - 0.1 * n) <= 1
    shares = {
        name: np.bincount(np.asarray(ds["label"]), minlength=2) / len(ds)
        for name, ds in splits.items()
    }
    for name in ("validation", "test"):  # stratified: the same class shares in every split
        assert np.abs(shares[name] - shares["train"]).max() < 0.01
    assert polarity.label_names == ("rotten", "fresh")
    assert splits["train"].features["label"].names == ["rotten", "fresh"]


def test_vocabulary_is_built_on_train_only(polarity):
    vocab = polarity.vocab
    assert vocab.words[labelled.PAD] == "<pad>" and vocab.words[labelled.UNK] == "<unk>"
    train_words = {w for text in polarity.splits["train"]["text"] for w in labelled.tokenize(text)}
    assert set(vocab.words[2:]) <= train_words
    test_only = {
        w for text in polarity.splits["test"]["text"] for w in labelled.tokenize(text)
    } - train_words
    assert test_only and not test_only & set(vocab.words)
    word = sorted(test_only)[0]
    assert vocab.encode([word]) == [labelled.UNK]
    row = polarity.splits["test"][0]
    assert row["ids"].tolist() == vocab.encode(labelled.tokenize(row["text"]))
    assert row["length"] == len(row["ids"])


def test_second_prepare_reuses_the_arrow_cache(tmp_path, monkeypatch):
    calls = []
    real = labelled.tokenize
    monkeypatch.setattr(labelled, "tokenize", lambda text: calls.append(1) or real(text))
    first = labelled.prepare("topics", seed=1, root=tmp_path)
    assert calls, "the first prepare tokenises"
    files = sorted(first.cache.glob("*.arrow"))
    assert [f.name for f in files] == ["test.arrow", "train.arrow", "validation.arrow"]
    stamps = [f.stat().st_mtime_ns for f in files]
    calls.clear()
    again = labelled.prepare("topics", seed=1, root=tmp_path)
    assert not calls, "a second prepare with the same settings must not tokenise"
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert again.splits["train"].cache_files[0]["filename"] == str(first.cache / "train.arrow")
    assert np.array_equal(np.asarray(again.splits["test"]["label"]), first.splits["test"]["label"])

    # another seed, another split (the default cache holds seed 0)
    seed0 = labelled.prepare("topics")
    assert seed0.cache != first.cache
    assert list(seed0.splits["test"]["text"][:20]) != list(first.splits["test"]["text"][:20])

    meta_path = first.cache / "vocab.json"  # a changed source (other checksum) rebuilds
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "source_sha256": "0" * 64}))
    calls.clear()
    labelled.prepare("topics", seed=1, root=tmp_path)
    assert calls and json.loads(meta_path.read_text())["source_sha256"] != "0" * 64


def test_train_batches_depend_only_on_seed_and_step(polarity):
    train = polarity.splits["train"]
    a = labelled.train_batch(train, 32, seed=0, step=7, max_length=64)
    b = labelled.train_batch(train, 32, seed=0, step=7, max_length=64)
    c = labelled.train_batch(train, 32, seed=1, step=7, max_length=64)
    d = labelled.train_batch(train, 32, seed=0, step=8, max_length=64)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert not np.array_equal(a.labels, c.labels) or not np.array_equal(a.ids[:, :4], c.ids[:, :4])
    assert not np.array_equal(a.ids[:, :4], d.ids[:, :4])
    # each epoch visits every row once, across the batch boundaries
    rows = np.concatenate([labelled.train_rows(10, 4, seed=3, step=s) for s in (1, 2, 3, 4, 5)])
    assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:20]) == list(range(10))
    assert not np.array_equal(rows[:10], rows[10:20])


def test_padding_truncation_and_shapes(polarity):
    train = polarity.splits["train"]
    batch = labelled.padded_batch(train, np.arange(40), max_length=20, bucket=16)
    B, T = batch.ids.shape
    assert (B, T) == (40, 20)  # the longest row is cut to 20; 20 is not a multiple of 16
    assert batch.ids.dtype == np.int32 and batch.lengths.dtype == np.int32
    assert batch.labels.dtype == np.int32
    lengths = np.asarray(train["length"][:40])
    assert np.array_equal(batch.lengths, np.minimum(lengths, 20))
    positions = np.arange(T)[None, :]  # (1, T)
    assert np.all(batch.ids[positions >= batch.lengths[:, None]] == labelled.PAD)
    assert np.all(batch.ids[positions < batch.lengths[:, None]] != labelled.PAD)
    for i in range(B):
        assert batch.ids[i, : batch.lengths[i]].tolist() == train[i]["ids"][:20].tolist()
    short = labelled.padded_batch(train, [int(np.argmin(lengths))], max_length=64, bucket=16)
    assert short.ids.shape[1] == 16


def test_eval_batches_cover_the_split_in_order(polarity):
    test = polarity.splits["test"]
    batches = list(labelled.eval_batches(test, 500, max_length=64))
    assert [len(b.labels) for b in batches] == [500, 500, len(test) - 1000]
    labels = np.concatenate([b.labels for b in batches])
    assert np.array_equal(labels, np.asarray(test["label"]))
