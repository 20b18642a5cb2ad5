"""Embedding trade-offs lab, torch side: the word2vec dimension sweep (lib/embeddings.fit), a
Matryoshka projection head on frozen MiniLM, int8 and binary quantisation, the char LM untied and
tied (lib/charlm.py).

Read beside week1_jax/embedding_tradeoffs.py: the same functions in the same order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labs import embedding_tradeoffs as spec
from week1 import loop
from week1_torch.lib import bert, charlm, devices, embeddings, optim, schedules
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights, set_weights


def shrink(z, m: int):
    """sentence-transformers' Matryoshka shrink: the first m dimensions, L2-normalised."""
    return F.normalize(z[..., :m], p=2.0, dim=-1)


def matryoshka_loss(a, b, prefixes, scale: float):
    r"""MatryoshkaLoss(MultipleNegativesRankingLoss), weights 1::

        L = sum_m CE(scale * cos(a_i[:m], b_j[:m]) over j, target j = i)

    a, b (B, C): two views of the same B texts; in-batch negatives."""
    target = torch.arange(a.shape[0], device=a.device)
    total = 0.0
    for m in prefixes:
        logits = scale * shrink(a, m) @ shrink(b, m).T  # (B, B)
        total = total + F.cross_entropy(logits, target)
    return total


class Head(nn.Module):
    """z = W e + b on a frozen 384-d sentence vector, W = I and b = 0 at the start (so that the
    untrained head is naive truncation)."""

    def __init__(self, dim: int = 384):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(dim))
            self.proj.bias.zero_()

    def forward(self, e):
        return self.proj(e)


def build_model(cfg: spec.Config, weights=None) -> Head:
    model = Head()
    if weights is not None:
        set_weights(model, weights)
    return devices.place(model)


def make_optimizer(model, cfg: spec.Config):
    optimizer = optim.AdamW(optim.param_groups(model, cfg.weight_decay))
    return optimizer, schedules.lambda_lr(optimizer, schedules.from_config(cfg))


def as_tensors(*arrays: np.ndarray):
    """float32 numpy arrays as tensors on the default device."""
    return devices.to_device(*arrays, dtype=torch.float32)


def head_loss(model: Head, e, mask_a, mask_b, cfg: spec.Config):
    """The Matryoshka loss of two dropout views of the same frozen vectors e (B, 384)."""
    return matryoshka_loss(model(e * mask_a), model(e * mask_b), cfg.prefix_list, cfg.scale)


@torch.no_grad()
def evaluate(model: Head, queries, documents, cfg: spec.Config) -> dict:
    """{"val_loss": the Matryoshka loss of held-out (query, document) pairs, no dropout}."""
    loss = matryoshka_loss(model(queries), model(documents), cfg.prefix_list, cfg.scale)
    return {"val_loss": float(loss)}


def train(cfg: spec.Config, data: dict, *, weights: dict | None = None, ctx=loop.BARE):
    """Train the head on data["train"] (N, 384) MiniLM vectors; held-out loss on
    data["queries"] / data["documents"]. Returns (model, History)."""
    model = build_model(cfg, weights)
    optimizer, scheduler = make_optimizer(model, cfg)
    queries, documents = as_tensors(data["queries"], data["documents"])
    history = trainer.train(
        model,
        optimizer,
        trainer.make_step(model, optimizer, lambda m, *b: head_loss(m, *b, cfg)),
        lambda step: as_tensors(*spec.head_batch(data["train"], cfg, step)),
        loop.Cadence.of(cfg),
        ctx,
        scheduler=scheduler,
        evaluate=lambda: evaluate(model, queries, documents, cfg),
        label="torch matryoshka",
    )
    return model, history


def int8_scales(documents):
    """Per-dimension scales s_d = max_i |x_id| / 127 (C,)."""
    return documents.abs().amax(dim=0).clamp(min=1e-12) / 127.0


def quantise_int8(x, scales):
    """round(x / s) clipped to [-127, 127], int8."""
    return torch.clamp(torch.round(x / scales), -127, 127).to(torch.int8)


def binarise(x):
    """The sign bits of x (N, C), packed 8 to a byte, most significant first: (N, C / 8) uint8."""
    bits = (x > 0).to(torch.uint8).view(x.shape[0], -1, 8)  # (N, C/8, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=x.device)
    return (bits * weights).sum(dim=-1).to(torch.uint8)


_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int32)


def hamming(a, b):
    """Hamming distances between packed bit rows: a (Q, B), b (N, B) uint8 -> (Q, N) int32."""
    xor = torch.bitwise_xor(a[:, None, :], b[None, :, :])  # (Q, N, B)
    return _POPCOUNT.to(a.device)[xor.long()].sum(dim=-1)


def search(queries: np.ndarray, documents: np.ndarray, cfg: spec.Config) -> dict:
    """The quantised searches' top 10 per query: {"int8", "binary", "binary + rescore"}."""
    q, d = as_tensors(spec.unit(queries), spec.unit(documents))
    scales = int8_scales(d)
    d8 = quantise_int8(d, scales).float() * scales  # (N, C): what the int8 index scores
    int8 = torch.topk(q @ d8.T, 10, dim=1).indices
    distance = hamming(binarise(q), binarise(d))  # (Q, N)
    # the stable order of (distance, index): ties go to the lower document index
    order = torch.argsort(distance, dim=1, stable=True)
    binary = order[:, :10]
    candidates = order[:, : 10 * cfg.rescore]  # (Q, R)
    rescored = torch.einsum("qc,qrc->qr", q, d[candidates])  # float query . float documents
    best = torch.argsort(-rescored, dim=1, stable=True)[:, :10]
    rescore = torch.gather(candidates, 1, best)
    return {
        name: t.cpu().numpy()
        for name, t in (("int8", int8), ("binary", binary), ("binary + rescore", rescore))
    }


@torch.no_grad()
def project(model: Head, x: np.ndarray) -> np.ndarray:
    """The trained head on numpy vectors: x (N, 384) -> z (N, 384)."""
    return model(as_tensors(x)[0]).cpu().numpy()


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run embedding_tradeoffs --framework torch [--compile]`: the parts cfg.parts names
    (labs/embedding_tradeoffs.py)."""
    parts = spec.Parts(
        fit=embeddings.fit,
        encode=bert.encode,
        train=train,
        project=project,
        search=search,
        train_lm=charlm.train,
    )
    return spec.run_parts(cfg, run, parts, compile)


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under torch's names."""
    return get_weights(build_model(cfg))


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare embedding_tradeoffs`: the Matryoshka head from `weights` (torch names) on the
    same batches and masks; returns its Curves."""
    data = spec.minilm_vectors(cfg, bert.encode)
    _, history = train(cfg, data, weights=weights, ctx=ctx)
    return spec.compare_curves(history)
