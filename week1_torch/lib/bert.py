"""A BERT encoder (Devlin et al., 2019) written out in torch, sized by a `BertConfig`.

The module tree copies transformers' `BertModel`, so `state_dict()` names are
the checkpoint's own (`encoder.layer.0.attention.self.query.weight`, ...): a
BERT safetensors file loads with `load_state_dict`, and PEFT's adapter names
(`...attention.self.query.lora_A`) point at the same layers. Read beside
week1_jax/lib/bert.py, the same maths in Flax nnx.

Dropout is left out: the labs use the encoder for inference and for parity,
where it is off. Model code names no device; `devices.place` moves it.

    x_0    = LayerNorm(E_word[ids] + E_type[type_ids] + E_pos[0..T-1])
    a      = LayerNorm(x + W_o MultiHeadAttention(x, mask) + b_o)    for each of the L layers
    x_next = LayerNorm(a + W_2 GELU(W_1 a + b_1) + b_2)
    pooled = tanh(W_p x_L[:, 0] + b_p)                                 the [CLS] token

References: Devlin et al. (2019), "BERT", arXiv:1810.04805; Vaswani et al.
(2017), "Attention is all you need"; transformers' models/bert/modeling_bert.py.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from week1.data.minilm import BertConfig


class Embeddings(nn.Module):
    """Word + token-type + absolute position embeddings, then LayerNorm (eps from the config)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, C)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, C)
        self.LayerNorm = nn.LayerNorm(C, eps=config.layer_norm_eps)

    def forward(self, ids, type_ids):  # ids, type_ids: (B, T) int
        T = ids.shape[1]
        positions = torch.arange(T, device=ids.device)  # (T,)
        # transformers' order of the sums: float addition is not associative.
        x = self.word_embeddings(ids) + self.token_type_embeddings(type_ids)  # (B, T, C)
        x = x + self.position_embeddings(positions)  # (B, T, C)
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    r"""Multi-head scaled dot-product attention over the real tokens of each text.

    For each head h: softmax(Q_h K_h^T / \sqrt{d} + M) V_h, with M = -max_float on
    the padded keys (their weights underflow to exactly 0). Scores and softmax
    are in at least float32 whatever the compute dtype (what torch.autocast does).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.n_head, self.head_size = config.num_attention_heads, config.head_size
        self.query = nn.Linear(C, C)
        self.key = nn.Linear(C, C)
        self.value = nn.Linear(C, C)

    def forward(self, x, mask):  # x: (B, T, C); mask: (B, T), 1 on real tokens
        B, T, C = x.shape
        H, D = self.n_head, self.head_size
        q = self.query(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = self.key(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = self.value(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        scores = (q @ k.transpose(-2, -1)) * D**-0.5  # (B, H, T, T)
        keep = mask[:, None, None, :].bool()  # (B, 1, 1, T): which keys each query may see
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # bf16 -> f32
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1).to(v.dtype)  # (B, H, T, T)
        out = probs @ v  # (B, H, T, D)
        return out.transpose(1, 2).reshape(B, T, C)  # (B, T, C)


class AddNorm(nn.Module):
    """LayerNorm(residual + dense(h)): the end of the attention block and of the MLP block."""

    def __init__(self, in_features: int, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h, residual):  # h: (B, T, in_features); residual: (B, T, C)
        return self.LayerNorm(self.dense(h) + residual)


class Attention(nn.Module):
    """Self-attention and its output projection with the residual (transformers' names)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = SelfAttention(config)  # the attribute is named `self` in the checkpoint
        self.output = AddNorm(config.hidden_size, config)

    def forward(self, x, mask):  # (B, T, C) -> (B, T, C)
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    """The MLP's expansion, C -> 4C, with the exact (erf) GELU that BERT was trained with."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x):  # (B, T, C) -> (B, T, 4C)
        return F.gelu(self.dense(x), approximate="none")


class EncoderLayer(nn.Module):
    """Post-LN transformer layer: attention block, then MLP block, each with its residual."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = AddNorm(config.intermediate_size, config)

    def forward(self, x, mask):  # (B, T, C) -> (B, T, C)
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x, mask) -> tuple:
        """The input and every layer's output: L + 1 tensors (B, T, C)."""
        hidden = [x]
        for layer in self.layer:
            hidden.append(layer(hidden[-1], mask))
        return tuple(hidden)


class Pooler(nn.Module):
    """tanh(dense(h[:, 0])): the [CLS] summary BERT's next-sentence head was trained on."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, h):  # (B, T, C) -> (B, C)
        return torch.tanh(self.dense(h[:, 0]))


class BertModel(nn.Module):
    """Embeddings, the encoder stack and the pooler; returns (hidden states, pooled).

    `hidden` holds L + 1 tensors (B, T, C), the embeddings' output first, as
    transformers' `output_hidden_states=True` does; `hidden[-1]` is the last layer.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)

    def forward(self, ids, type_ids, mask):  # each (B, T) int
        hidden = self.encoder(self.embeddings(ids, type_ids), mask)
        return hidden, self.pooler(hidden[-1])


def sentence_embeddings(hidden, mask):
    """The sentence-transformers recipe: mean of the real tokens' vectors, then L2 normalisation.

    mean = sum_t m_t h_t / max(sum_t m_t, 1e-9);  e = mean / max(||mean||_2, 1e-12)
    (the clamps are sentence-transformers' Pooling and F.normalize's).
    """
    m = mask[..., None].to(hidden.dtype)  # (B, T, 1)
    mean = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)  # (B, C)
    return F.normalize(mean, p=2.0, dim=-1, eps=1e-12)  # (B, C)


def pretrained(max_length: int = 128):
    """(all-MiniLM-L6-v2 with the packaged weights (week1/data/minilm.py, convert.MINILM's
    names), in eval mode on the default device; its tokenizer truncating at max_length).
    Loaded once per (max_length, device)."""
    from week1_torch.lib import devices

    return _pretrained(max_length, devices.default_device())


@functools.cache
def _pretrained(max_length: int, device: torch.device):
    from week1 import convert
    from week1.data import minilm
    from week1_torch.lib import devices
    from week1_torch.lib.models import set_weights

    model = BertModel(minilm.load_config())
    weights = minilm.load_weights()
    set_weights(model, {name: weights[name] for name, _, _ in convert.MINILM})
    return devices.place(model, device).eval(), minilm.load_tokenizer(max_length)


@torch.no_grad()
def hidden_and_sentences(model, batch):
    """(L + 1 hidden states (B, T, C), sentence embeddings (B, C)) of a minilm.Batch, numpy."""
    from week1_torch.lib import devices

    ids, type_ids, mask = devices.to_device(batch.ids, batch.type_ids, batch.mask, dtype=torch.long)
    hidden, _ = model(ids, type_ids, mask)
    sentences = sentence_embeddings(hidden[-1], mask)
    return [h.float().cpu().numpy() for h in hidden], sentences.float().cpu().numpy()


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
