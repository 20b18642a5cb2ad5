"""BPE lab in torch: pair counting and merging as tensor operations (CPU or GPU).

Read beside week1_jax/bpe.py and labs/tokenization/train.py (the spec). State, all
tensors over positions of the flat word array (labs.bpe.flat_words):
  sym[p]          symbol id at p (-1: sentinel between words)
  nxt[p], prv[p]  the next / previous live position (merged-away symbols are unlinked)
  pslot[p]        slot of the pair (sym[p], sym[nxt[p]]) starting at p (0: no pair)
and over pair slots s: key = a * V + b, score = count << shift | (V*V - 1 - key), so the
best pair (highest count, then smallest (a, b)) is argmax(score), one op per merge.
"""

from __future__ import annotations

import time

import torch

from labs import bpe as spec
from week1.timing import Timing, time_calls
from week1.tokenization import hf
from week1.tokenization import train as reference
from week1.tokenization.bytelevel import word_table
from week1.tokenization.model import BPE
from week1.tokenization.train import add_token
from week1_torch.lib import devices

NO_PAIR = -(1 << 62)  # score of slot 0, the slot of "no pair here"
SPARE_SLOTS = 1 << 16  # room for new pairs; when it runs out, all pairs are recounted


class Pairs:
    """The pair slots and the per-position links of the flat word array.

    A pair gains occurrences only in the merge that creates its newer token, so the
    positions of each slot are written once, grouped: order[start[s] : start[s] + size[s]].
    Positions whose pair has since changed are filtered out when the slot is merged.
    """

    def __init__(self, sym, weight, V: int, device):
        self.sym = torch.as_tensor(sym, device=device)
        self.weight = torch.as_tensor(weight, device=device)
        N = len(self.sym)
        idx = torch.arange(N, device=device)
        self.nxt = torch.clamp(idx + 1, max=N - 1)
        self.prv = torch.clamp(idx - 1, min=0)
        self.V, self.shift = V, (V * V).bit_length()
        self.count_pairs()

    def keys_at(self, pos):
        """Pair key starting at each position, or -1 where no pair starts (a sentinel on either
        side)."""
        a, b = self.sym[pos], self.sym[self.nxt[pos]]
        return torch.where((a >= 0) & (b >= 0), a * self.V + b, -1)

    def count_pairs(self):
        """Count every pair from scratch: at the start, and when the slot table is full."""
        device = self.sym.device
        pos = torch.arange(len(self.sym), device=device)
        n_keys = len(torch.unique(self.keys_at(pos)))
        # One row per field, one column per slot: score, key, start and size in `order`.
        self.table = torch.zeros((4, 2 * n_keys + SPARE_SLOTS), dtype=torch.int64, device=device)
        self.score, self.key, self.start, self.size = self.table
        self.score[0] = NO_PAIR
        self.order = torch.zeros(4 * len(self.sym), dtype=torch.int64, device=device)
        self.pslot = torch.zeros_like(self.sym)
        self.n_slots, self.n_order = 1, 0
        self.add_pairs(pos)

    def add_pairs(self, pos):
        """Give the pairs starting at `pos` (distinct positions) slots; count them. New keys
        only."""
        keys = self.keys_at(pos)
        pos = pos[keys >= 0]
        ukeys, inv, sizes = torch.unique(keys[keys >= 0], return_inverse=True, return_counts=True)
        slots = torch.arange(self.n_slots, self.n_slots + len(ukeys), device=pos.device)
        self.table[:, slots] = torch.stack(
            [
                self.V * self.V - 1 - ukeys,
                ukeys,
                self.n_order + torch.cumsum(sizes, 0) - sizes,
                sizes,
            ]
        )
        self.order[self.n_order : self.n_order + len(pos)] = pos[torch.argsort(inv, stable=True)]
        self.n_slots += len(ukeys)
        self.n_order += len(pos)
        self.pslot[pos] = slots[inv]
        self.score.index_add_(0, slots[inv], self.weight[pos] << self.shift)

    def best(self) -> tuple[int, int, int, int, int, int]:
        """(slot, count, a, b, start, size) of the most frequent pair, ties to the smallest (a,
        b)."""
        slot = int(torch.argmax(self.score))
        score, key, start, size = self.table[:, slot].tolist()
        return slot, score >> self.shift, key // self.V, key % self.V, start, size

    def merge(
        self, slot: int, a: int, b: int, start: int, size: int, new: int, rebuild: bool
    ) -> None:
        """Replace every (a, b) by `new`: unlink b, move the counts of the neighbour pairs."""
        occ = self.order[start : start + size]
        occ = occ[self.pslot[occ] == slot].sort().values  # left positions of (a, b)
        if a == b:  # in a run a a a a, merge positions 0, 2, ... of the run (left to right)
            linked = torch.zeros_like(occ, dtype=torch.bool)
            linked[1:] = self.nxt[occ[:-1]] == occ[1:]
            k = torch.arange(len(occ), device=occ.device)
            run_start = torch.where(linked, 0, k).cummax(0).values
            occ = occ[(k - run_start) % 2 == 0]
        right, left = self.nxt[occ], self.prv[occ]  # positions of b, and of x in [x a b y]
        # [x a b a b y]: the second x is the first b; count each position once.
        shared = torch.zeros_like(occ, dtype=torch.bool)
        shared[1:] = left[1:] == right[:-1]
        left = left[~shared]
        # Pairs starting at x, a, b vanish ...
        gone = torch.cat([left, occ, right])
        self.score.index_add_(0, self.pslot[gone], -(self.weight[gone] << self.shift))
        self.pslot[gone] = 0
        after = self.nxt[right]
        self.sym[occ] = new
        self.nxt[occ] = after
        self.prv[after] = occ
        self.sym[right] = -1  # b is gone: a sentinel now
        # ... and pairs starting at x and at the new token appear.
        born = torch.cat([left, occ])
        if (
            rebuild
            or self.n_slots + len(born) > self.table.shape[1]
            or self.n_order + len(born) > len(self.order)
        ):
            self.count_pairs()  # `new` was a token already (or the table is full): recount all
        else:
            self.add_pairs(born)
        self.score[0] = NO_PAIR


def train(texts, vocab_size: int, min_frequency: int = 0, special_tokens=(), device="cpu") -> BPE:
    """Byte-level BPE with tensor pair counts; the same merges as week1.tokenization.train."""
    specials, vocab, words, counts = word_table(texts, vocab_size, min_frequency, special_tokens)
    id_to_token = list(vocab)
    pairs = Pairs(*spec.flat_words(words, counts), vocab_size, device)
    merges = []
    while len(vocab) < vocab_size:
        slot, count, a, b, start, size = pairs.best()
        if count < max(1, min_frequency):
            break
        known = len(vocab)
        new = add_token(vocab, id_to_token, a, b)
        merges.append((a, b))
        pairs.merge(slot, a, b, start, size, new, rebuild=len(vocab) == known)
    return BPE.from_training(vocab, merges, specials)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run bpe --framework torch`: train on Shakespeare (on a GPU if there is one), save,
    compare with HF."""
    texts = spec.corpus_texts(cfg)
    start = time.perf_counter()
    bpe = train(
        texts, cfg.vocab_size, cfg.min_frequency, cfg.specials, device=devices.default_device()
    )
    return spec.summarize(bpe, time.perf_counter() - start, texts, cfg, run.path("tokenizer.json"))


def bench(cfg: spec.Config) -> dict:
    """`week1 bench bpe` (torch half): our torch trainer, the pure-Python one, the naive loop."""
    texts = spec.corpus_texts(cfg)
    args = (cfg.vocab_size, cfg.min_frequency, cfg.specials)
    out = {
        f"torch ({devices.default_device()})": time_calls(
            lambda: train(texts, *args, device=devices.default_device()),
            lambda _: None,
            warmup=0,
            iters=1,
        ),
        "pure-Python reference": time_calls(
            lambda: reference.train(texts, *args), lambda _: None, warmup=0, iters=1
        ),
    }
    # The naive loop would take too long: time its first merges, scale to the whole run.
    start = time.perf_counter()
    naive = reference.train_naive(texts, *args, max_merges=cfg.naive_merges)
    per_merge = (time.perf_counter() - start) / len(naive.merges)
    n_merges = len(hf.merges_and_vocab(hf.train_bpe(texts, *args))[0])
    out["naive recount loop (extrapolated)"] = Timing(per_merge * n_merges, per_merge * n_merges, 1)
    bpe, sample = reference.train(texts, *args), spec.encode_sample(texts)
    # A fresh BPE per call, so its word cache starts cold (as HF's does below).
    out["encode 1 MB: ours (Python)"] = time_calls(
        lambda: [
            fresh.encode(line)
            for fresh in [BPE(bpe.vocab, bpe.merges, bpe.special_tokens)]
            for line in sample
        ],
        lambda _: None,
        warmup=0,
        iters=3,
    )
    return out
