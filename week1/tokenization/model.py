"""Step 3: the trained tokenizer. Merges + vocabulary; encode, decode, save and load.

Encoding a word replays training: start from its byte symbols and repeatedly apply
the merge learned earliest (lowest rank) among the word's adjacent pairs, left to
right, until no pair has a merge. Words repeat a lot, so results are cached.
Special tokens are cut out of the text first (longest match wins) and never split.

`save` writes HF's `tokenizer.json` format by hand: a BPE model plus the ByteLevel
pre-tokenizer and decoder, and the special tokens as added tokens.
"""

from __future__ import annotations

import collections
import itertools
import json
import numbers
import pathlib

import regex

from week1.tokenization.bytelevel import CHAR_TO_BYTE, from_symbols, pretokenize

_BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": False,
    "trim_offsets": True,
    "use_regex": True,
}


class BPE:
    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], special_tokens=()):
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        self.special_tokens = tuple(special_tokens)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        # (id_a, id_b) -> (rank, id of a+b)
        self.ranks = {
            (self.vocab[a], self.vocab[b]): (r, self.vocab[a + b])
            for r, (a, b) in enumerate(self.merges)
        }
        by_length = sorted(self.special_tokens, key=len, reverse=True)
        self._special_split = (
            regex.compile("(" + "|".join(map(regex.escape, by_length)) + ")") if by_length else None
        )
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_training(cls, vocab: dict[str, int], merges: list[tuple[int, int]], specials) -> BPE:
        """From a trainer's merges (pairs of ids). A pair merged twice keeps its later rank, as
        in HF."""
        last = {pair: r for r, pair in enumerate(merges)}
        id_to_token = {i: t for t, i in vocab.items()}
        ordered = sorted(last, key=last.get)
        return cls(vocab, [(id_to_token[a], id_to_token[b]) for a, b in ordered], specials)

    # -- encode / decode ---------------------------------------------------------------

    def encode_word(self, word: str) -> list[int]:
        """Ids of one byte-level word: apply the lowest-rank merge until none applies."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        ids = [self.vocab[c] for c in word]
        while len(ids) > 1:
            rank, pair = min(
                (self.ranks.get(p, (float("inf"),))[0], p) for p in itertools.pairwise(ids)
            )
            if rank == float("inf"):
                break
            new, out, i = self.ranks[pair][1], [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode: expected str, got {type(text).__name__}")
        pieces = self._special_split.split(text) if self._special_split else [text]
        ids = []
        for k, piece in enumerate(pieces):  # split() with a group alternates text, special, text...
            if k % 2:
                ids.append(self.vocab[piece])
            elif piece:
                for word in pretokenize(piece):
                    ids.extend(self.encode_word(word))
        return ids

    def decode(self, ids) -> str:
        """Text of `ids`; special tokens come back as their text; invalid UTF-8 becomes U+FFFD."""
        out, run = [], bytearray()
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral):
                raise TypeError(f"decode: id {i!r} is {type(i).__name__}, expected an int")
            token = self.id_to_token.get(int(i))
            if token is None:
                raise ValueError(
                    f"decode: id {i} is not in the vocabulary (size {len(self.vocab)})"
                )
            if token in self.special_tokens:
                out.append(run.decode("utf-8", errors="replace") + token)
                run = bytearray()
            else:
                run += from_symbols(token)
        return "".join(out) + run.decode("utf-8", errors="replace")

    # -- tokenizer.json ----------------------------------------------------------------

    def to_json(self) -> dict:
        added = [
            {
                "id": self.vocab[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t in self.special_tokens
        ]
        model = {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": self.vocab,
            "merges": [list(m) for m in self.merges],
        }
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": _BYTE_LEVEL,
            "post_processor": None,
            "decoder": _BYTE_LEVEL,
            "model": model,
        }

    def save(self, path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> BPE:
        """Read a byte-level BPE tokenizer.json (ours or HF's); anything else is a ValueError
        naming what is wrong."""
        try:
            spec = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable tokenizer.json ({err})") from None
        return cls.from_json(spec, str(path))

    @classmethod
    def from_json(cls, spec, where: str = "tokenizer.json") -> BPE:
        def need(ok, what):
            if not ok:
                raise ValueError(f"{where}: {what}")

        need(isinstance(spec, dict) and isinstance(spec.get("model"), dict), "no 'model' object")
        model = spec["model"]
        need(model.get("type") == "BPE", f"model type {model.get('type')!r}, expected 'BPE'")
        pre = spec.get("pre_tokenizer") or {}
        need(
            pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space"),
            f"pre_tokenizer {pre.get('type')!r}, expected ByteLevel without a prefix space",
        )
        vocab, merges = model.get("vocab"), model.get("merges")
        need(
            isinstance(vocab, dict)
            and all(type(i) is int and i >= 0 for i in vocab.values()),  # bool is not an id
            "vocab must map str -> int >= 0",
        )
        repeated = sorted(i for i, n in collections.Counter(vocab.values()).items() if n > 1)
        need(not repeated, f"vocab gives the same id to several tokens (ids {repeated[:5]})")
        need(set(CHAR_TO_BYTE) <= set(vocab), "vocab lacks some of the 256 byte symbols")
        need(isinstance(merges, list), "merges must be a list")
        pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
        for pair in pairs:
            need(
                len(pair) == 2
                and all(isinstance(t, str) and t in vocab for t in pair)
                and pair[0] + pair[1] in vocab,
                f"merge {pair!r} is not two vocabulary tokens whose join is in the vocabulary",
            )
        added = spec.get("added_tokens") or []
        need(
            isinstance(added, list)
            and all(isinstance(t, dict) and t.get("content") in vocab for t in added),
            "added_tokens must be objects whose content is in the vocabulary",
        )
        return cls(vocab, pairs, [t["content"] for t in added if t.get("special")])

    def __repr__(self) -> str:
        sizes = f"vocab={len(self.vocab)}, merges={len(self.merges)}"
        return f"BPE({sizes}, special_tokens={self.special_tokens})"
