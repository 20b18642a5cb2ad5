"""A BERT encoder (Devlin et al., 2019) written out in Flax nnx, sized by a `BertConfig`.

The module tree copies transformers' `BertModel` (`encoder.layer.0.attention.self.query`,
...), with Flax's leaf names (`kernel`, `scale`, `embedding`): the literal table in
labs/pretrained_embeddings.py maps a checkpoint onto it. Read beside
week1_torch/lib/bert.py, the same maths in torch.

Explicit where Flax's defaults differ from BERT's: LayerNorm eps comes from the
config (Flax's default is 1e-6, BERT's 1e-12) and its variance is computed in two
passes (`use_fast_variance=False`: E[x^2] - E[x]^2 cancels badly in float32); GELU
is the exact erf form (`jax.nn.gelu` defaults to the tanh approximation).
Dropout is left out: the labs use the encoder for inference and for parity.

    x_0    = LayerNorm(E_word[ids] + E_type[type_ids] + E_pos[0..T-1])
    a      = LayerNorm(x + W_o MultiHeadAttention(x, mask) + b_o)    for each of the L layers
    x_next = LayerNorm(a + W_2 GELU(W_1 a + b_1) + b_2)
    pooled = tanh(W_p x_L[:, 0] + b_p)                                 the [CLS] token

References: Devlin et al. (2019), "BERT", arXiv:1810.04805; Vaswani et al.
(2017), "Attention is all you need"; transformers' models/bert/modeling_bert.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from week1.data.minilm import BertConfig
from week1_jax.lib.models import dotted


def _layer_norm(config: BertConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        config.hidden_size, epsilon=config.layer_norm_eps, use_fast_variance=False, rngs=rngs
    )


class Embeddings(nnx.Module):
    """Word + token-type + absolute position embeddings, then LayerNorm (eps from the config)."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        C = config.hidden_size
        self.word_embeddings = nnx.Embed(config.vocab_size, C, rngs=rngs)
        self.position_embeddings = nnx.Embed(config.max_position_embeddings, C, rngs=rngs)
        self.token_type_embeddings = nnx.Embed(config.type_vocab_size, C, rngs=rngs)
        self.LayerNorm = _layer_norm(config, rngs)

    def __call__(self, ids, type_ids):  # ids, type_ids: (B, T) int
        T = ids.shape[1]
        positions = jnp.arange(T)  # (T,)
        # transformers' order of the sums: float addition is not associative.
        x = self.word_embeddings(ids) + self.token_type_embeddings(type_ids)  # (B, T, C)
        x = x + self.position_embeddings(positions)  # (B, T, C)
        return self.LayerNorm(x)


class SelfAttention(nnx.Module):
    r"""Multi-head scaled dot-product attention over the real tokens of each text.

    For each head h: softmax(Q_h K_h^T / \sqrt{d} + M) V_h, with M = -max_float on
    the padded keys (their weights underflow to exactly 0). Scores and softmax
    are in at least float32 whatever the compute dtype (what torch.autocast does).
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        C = config.hidden_size
        self.n_head, self.head_size = config.num_attention_heads, config.head_size
        self.query = nnx.Linear(C, C, rngs=rngs)
        self.key = nnx.Linear(C, C, rngs=rngs)
        self.value = nnx.Linear(C, C, rngs=rngs)

    def __call__(self, x, mask):  # x: (B, T, C); mask: (B, T), 1 on real tokens
        B, T, C = x.shape
        H, D = self.n_head, self.head_size
        q = self.query(x).reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, H, T, D)
        k = self.key(x).reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, H, T, D)
        v = self.value(x).reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, H, T, D)
        scores = (q @ k.transpose(0, 1, 3, 2)) * D**-0.5  # (B, H, T, T)
        keep = mask[:, None, None, :].astype(bool)  # (B, 1, 1, T): which keys each query may see
        scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))  # bf16 -> f32
        scores = jnp.where(keep, scores, jnp.finfo(scores.dtype).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)  # (B, H, T, T)
        out = probs @ v  # (B, H, T, D)
        return out.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)


class AddNorm(nnx.Module):
    """LayerNorm(residual + dense(h)): the end of the attention block and of the MLP block."""

    def __init__(self, in_features: int, config: BertConfig, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(in_features, config.hidden_size, rngs=rngs)
        self.LayerNorm = _layer_norm(config, rngs)

    def __call__(self, h, residual):  # h: (B, T, in_features); residual: (B, T, C)
        return self.LayerNorm(self.dense(h) + residual)


class Attention(nnx.Module):
    """Self-attention and its output projection with the residual (transformers' names)."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.self = SelfAttention(config, rngs=rngs)  # the attribute is named `self` in BERT
        self.output = AddNorm(config.hidden_size, config, rngs=rngs)

    def __call__(self, x, mask):  # (B, T, C) -> (B, T, C)
        return self.output(self.self(x, mask), x)


class Intermediate(nnx.Module):
    """The MLP's expansion, C -> 4C, with the exact (erf) GELU that BERT was trained with."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(config.hidden_size, config.intermediate_size, rngs=rngs)

    def __call__(self, x):  # (B, T, C) -> (B, T, 4C)
        return jax.nn.gelu(self.dense(x), approximate=False)


class EncoderLayer(nnx.Module):
    """Post-LN transformer layer: attention block, then MLP block, each with its residual."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.attention = Attention(config, rngs=rngs)
        self.intermediate = Intermediate(config, rngs=rngs)
        self.output = AddNorm(config.intermediate_size, config, rngs=rngs)

    def __call__(self, x, mask):  # (B, T, C) -> (B, T, C)
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class Encoder(nnx.Module):
    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.layer = nnx.List(
            [EncoderLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)]
        )

    def __call__(self, x, mask) -> tuple:
        """The input and every layer's output: L + 1 arrays (B, T, C)."""
        hidden = [x]
        for layer in self.layer:
            hidden.append(layer(hidden[-1], mask))
        return tuple(hidden)


class Pooler(nnx.Module):
    """tanh(dense(h[:, 0])): the [CLS] summary BERT's next-sentence head was trained on."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(config.hidden_size, config.hidden_size, rngs=rngs)

    def __call__(self, h):  # (B, T, C) -> (B, C)
        return jnp.tanh(self.dense(h[:, 0]))


class BertModel(nnx.Module):
    """Embeddings, the encoder stack and the pooler; returns (hidden states, pooled).

    `hidden` holds L + 1 arrays (B, T, C), the embeddings' output first, as
    transformers' `output_hidden_states=True` does; `hidden[-1]` is the last layer.
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = Embeddings(config, rngs=rngs)
        self.encoder = Encoder(config, rngs=rngs)
        self.pooler = Pooler(config, rngs=rngs)

    def __call__(self, ids, type_ids, mask):  # each (B, T) int
        hidden = self.encoder(self.embeddings(ids, type_ids), mask)
        return hidden, self.pooler(hidden[-1])


def from_weights(config: BertConfig, weights: dict) -> BertModel:
    """The encoder holding `weights` ({Flax path: array}, every parameter, shapes checked).

    The model is built abstractly first (nnx.eval_shape: shapes, no random init
    of 22M numbers, which takes seconds on a CPU), then each Variable gets its array.
    """
    abstract = nnx.eval_shape(lambda: BertModel(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    names = {dotted(path) for path, _ in nnx.to_flat_state(state)}
    if names != set(weights):
        raise ValueError(
            f"weights do not match the model: missing {sorted(names - set(weights))}, "
            f"unexpected {sorted(set(weights) - names)}"
        )

    def fill(path, var):
        value = weights[dotted(path)]
        if value.shape != var.shape:
            raise ValueError(f"{dotted(path)}: shape {value.shape} != {var.shape}")
        return var.replace(jnp.asarray(value, var.dtype))

    is_variable = lambda x: isinstance(x, nnx.Variable)
    return nnx.merge(graphdef, jax.tree.map_with_path(fill, state, is_leaf=is_variable))


def sentence_embeddings(hidden, mask):
    """The sentence-transformers recipe: mean of the real tokens' vectors, then L2 normalisation.

    mean = sum_t m_t h_t / max(sum_t m_t, 1e-9);  e = mean / max(||mean||_2, 1e-12)
    (the clamps are sentence-transformers' Pooling and torch's F.normalize).
    """
    m = mask[..., None].astype(hidden.dtype)  # (B, T, 1)
    mean = (hidden * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)  # (B, C)
    norm = jnp.linalg.norm(mean, axis=-1, keepdims=True)  # (B, 1)
    return mean / jnp.maximum(norm, 1e-12)  # (B, C)


@functools.cache
def pretrained(max_length: int = 128):
    """(all-MiniLM-L6-v2 with the packaged weights (week1/data/minilm.py, convert.MINILM's
    table); its tokenizer truncating at max_length)."""
    from week1 import convert
    from week1.data import minilm

    weights = minilm.load_weights()
    flax = convert.torch_to_flax({n: weights[n] for n, _, _ in convert.MINILM}, convert.MINILM)
    return from_weights(minilm.load_config(), flax), minilm.load_tokenizer(max_length)


@nnx.jit
def _hidden_and_sentences(model, ids, type_ids, mask):
    hidden, _ = model(ids, type_ids, mask)
    return hidden, sentence_embeddings(hidden[-1], mask)


def hidden_and_sentences(model, batch):
    """(L + 1 hidden states (B, T, C), sentence embeddings (B, C)) of a minilm.Batch, numpy."""
    arrays = (jnp.asarray(a, jnp.int32) for a in (batch.ids, batch.type_ids, batch.mask))
    hidden, sentences = _hidden_and_sentences(model, *arrays)
    return [np.asarray(h) for h in hidden], np.asarray(sentences)


def encode(texts: list[str], max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """(len(texts), C) float32 numpy sentence embeddings of the pretrained model, the texts
    batched in order of token length (little padding), returned in their own order."""
    from week1.data import minilm

    model, tokenizer = pretrained(max_length)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(texts), model.config.hidden_size), np.float32)
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        b = minilm.batch(tokenizer, [texts[i] for i in rows], max_length)
        out[rows] = hidden_and_sentences(model, b)[1]
    return out
