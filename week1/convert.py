"""Literal weight maps between torch state_dict names and Flax parameter paths (numpy only).

Each table row is (torch name, flax path, how to turn the torch array into the
Flax one). Linear: torch stores (out, in), Flax (in, out): a transpose. Conv1d:
torch (out, in, k), Flax (k, in, out).
"""

from __future__ import annotations

import numpy as np

SAME = "same"
TRANSPOSE = "transpose"  # (out, in) <-> (in, out)
CONV1D = "conv1d"  # (out, in, k) <-> (k, in, out)

CHAR_MLP = (
    # torch            flax                 transform
    ("wte.weight", "wte.embedding", SAME),
    ("fc1.weight", "fc1.kernel", TRANSPOSE),
    ("fc1.bias", "fc1.bias", SAME),
    ("ln.weight", "ln.scale", SAME),
    ("ln.bias", "ln.bias", SAME),
    ("head.weight", "head.kernel", TRANSPOSE),
    ("head.bias", "head.bias", SAME),
)

# Kim (2014)'s CNN (KimCNN in week1_{jax,torch}/lib/models.py): one convolution per filter
# width. Conv1d weights: torch (out, in, k) for NCL inputs, Flax nnx.Conv (k, in, out) for NLC
# inputs; CONV1D is the transpose (2, 1, 0) both ways.
KIM_WIDTHS = (3, 4, 5)  # filter widths, in words: convs.0, convs.1, convs.2
KIM_CNN = (
    # torch             flax                transform
    ("wte.weight", "wte.embedding", SAME),  # (V, E) both
    ("convs.0.weight", "convs.0.kernel", CONV1D),  # (M, E, 3) <-> (3, E, M)
    ("convs.0.bias", "convs.0.bias", SAME),
    ("convs.1.weight", "convs.1.kernel", CONV1D),  # (M, E, 4) <-> (4, E, M)
    ("convs.1.bias", "convs.1.bias", SAME),
    ("convs.2.weight", "convs.2.kernel", CONV1D),  # (M, E, 5) <-> (5, E, M)
    ("convs.2.bias", "convs.2.bias", SAME),
    ("head.weight", "head.kernel", TRANSPOSE),  # (C, 3M) <-> (3M, C)
    ("head.bias", "head.bias", SAME),
)

# One encoder layer of the checkpoint (transformers' BertModel names, {i} = 0..5) and the
# Flax path of the same tensor in week1_jax.lib.bert; Linear weights transpose, (out, in) -> (in,
# out). The torch encoder (week1_torch.lib.bert) uses the checkpoint's names as they are.
_MINILM_LAYER = (
    # torch (checkpoint)                                 flax                              transform
    ("attention.self.query.weight", "attention.self.query.kernel", TRANSPOSE),
    ("attention.self.query.bias", "attention.self.query.bias", SAME),
    ("attention.self.key.weight", "attention.self.key.kernel", TRANSPOSE),
    ("attention.self.key.bias", "attention.self.key.bias", SAME),
    ("attention.self.value.weight", "attention.self.value.kernel", TRANSPOSE),
    ("attention.self.value.bias", "attention.self.value.bias", SAME),
    ("attention.output.dense.weight", "attention.output.dense.kernel", TRANSPOSE),
    ("attention.output.dense.bias", "attention.output.dense.bias", SAME),
    ("attention.output.LayerNorm.weight", "attention.output.LayerNorm.scale", SAME),
    ("attention.output.LayerNorm.bias", "attention.output.LayerNorm.bias", SAME),
    ("intermediate.dense.weight", "intermediate.dense.kernel", TRANSPOSE),
    ("intermediate.dense.bias", "intermediate.dense.bias", SAME),
    ("output.dense.weight", "output.dense.kernel", TRANSPOSE),
    ("output.dense.bias", "output.dense.bias", SAME),
    ("output.LayerNorm.weight", "output.LayerNorm.scale", SAME),
    ("output.LayerNorm.bias", "output.LayerNorm.bias", SAME),
)
MINILM_LAYERS = 6  # all-MiniLM-L6-v2
MINILM = (
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.embedding", SAME),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.embedding", SAME),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.embedding", SAME),
    ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.scale", SAME),
    ("embeddings.LayerNorm.bias", "embeddings.LayerNorm.bias", SAME),
    *(
        (f"encoder.layer.{i}.{torch}", f"encoder.layer.{i}.{flax}", how)
        for i in range(MINILM_LAYERS)
        for torch, flax, how in _MINILM_LAYER
    ),
    ("pooler.dense.weight", "pooler.dense.kernel", TRANSPOSE),
    ("pooler.dense.bias", "pooler.dense.bias", SAME),
)

# Each transform is its own inverse (reversing the axes twice restores them): one table serves
# both directions.
_TRANSFORM = {SAME: lambda a: a, TRANSPOSE: lambda a: a.T, CONV1D: lambda a: a.transpose(2, 1, 0)}


def _check(names, table, column: int) -> None:
    want = {row[column] for row in table}
    if set(names) != want:
        raise ValueError(
            f"weights do not match the table: missing {sorted(want - set(names))}, "
            f"unexpected {sorted(set(names) - want)}"
        )


def torch_to_flax(weights: dict[str, np.ndarray], table) -> dict[str, np.ndarray]:
    _check(weights, table, 0)
    return {
        flax: np.ascontiguousarray(_TRANSFORM[how](np.asarray(weights[torch])))
        for torch, flax, how in table
    }


def flax_to_torch(weights: dict[str, np.ndarray], table) -> dict[str, np.ndarray]:
    _check(weights, table, 1)
    return {
        torch: np.ascontiguousarray(_TRANSFORM[how](np.asarray(weights[flax])))
        for torch, flax, how in table
    }
