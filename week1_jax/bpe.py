"""BPE lab in JAX: pair counting and merging as jnp operations, one jitted kernel per merge.

Read beside week1_torch/bpe.py and labs/tokenization/train.py (the spec). The state
is the torch version's, as one NamedTuple of arrays over positions of the flat word
array (labs.bpe.flat_words) and over pair slots. jit wants static shapes, so a merge
works on a bucket of B occurrences (B = the next power of two), with the unused lanes
pointed at the spare sentinel position TRASH = N-1, where their reads see "no pair"
and their writes change nothing. JAX computes in int32 by default: the best pair is
max(count), then min(key) among the ties (two reductions instead of a packed score).
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp

from labs import bpe as spec
from week1.timing import time_calls
from week1.tokenization import hf
from week1.tokenization.bytelevel import word_table
from week1.tokenization.model import BPE
from week1.tokenization.train import add_token

# No counterpart in the other framework (the jitted kernels; torch keeps them as methods of Pairs).
FRAMEWORK_ONLY = ("keys_at", "add_pairs", "count_pairs", "recount", "best", "merge")

NONE = jnp.iinfo(jnp.int32).max  # key of "no pair": larger than every real key
SLOTS = 1 << 16  # pair slots; when they run out, all pairs are recounted


class Pairs(NamedTuple):
    sym: jax.Array  # (N,) symbol at each position, -1 at sentinels
    weight: jax.Array  # (N,) count of the word the position is in
    nxt: jax.Array  # (N,) next live position
    prv: jax.Array  # (N,) previous live position
    pslot: jax.Array  # (N,) slot of the pair starting here, 0: none
    count: jax.Array  # (C,) per slot: how often the pair occurs
    key: jax.Array  # (C,) per slot: a * V + b (NONE for unused slots)
    start: jax.Array  # (C,) per slot: where its positions begin in `order`
    size: jax.Array  # (C,) per slot: how many positions were written
    order: jax.Array  # (5N,) positions grouped by slot, written once per slot
    n_slots: jax.Array  # () slots in use (slot 0 is "no pair")
    n_order: jax.Array  # () entries of `order` in use


def keys_at(p: Pairs, pos, V):
    """Pair key starting at each position, or NONE where no pair starts."""
    a, b = p.sym[pos], p.sym[p.nxt[pos]]
    return jnp.where((a >= 0) & (b >= 0), a * V + b, NONE)


def add_pairs(p: Pairs, pos, V) -> Pairs:
    """Give the pairs starting at `pos` (distinct, or TRASH) fresh slots and count them."""
    keys = keys_at(p, pos, V)
    ukeys, inv, sizes = jnp.unique(
        keys, return_inverse=True, return_counts=True, size=len(pos), fill_value=NONE
    )
    real = ukeys < NONE
    slots = p.n_slots + jnp.arange(len(pos))
    n_real = jnp.sum(keys < NONE)
    lane_slot = jnp.where(keys < NONE, slots[inv.reshape(-1)], 0)
    return p._replace(
        key=p.key.at[slots].set(ukeys, mode="drop"),
        count=p.count.at[slots]
        .set(0, mode="drop")
        .at[lane_slot]
        .add(jnp.where(keys < NONE, p.weight[pos], 0)),
        start=p.start.at[slots].set(p.n_order + jnp.cumsum(sizes) - sizes, mode="drop"),
        size=p.size.at[slots].set(jnp.where(real, sizes, 0), mode="drop"),
        order=jax.lax.dynamic_update_slice(
            p.order, pos[jnp.argsort(inv.reshape(-1), stable=True)], (p.n_order,)
        ),
        pslot=p.pslot.at[pos].set(lane_slot).at[-1].set(0),
        n_slots=p.n_slots + jnp.sum(real),
        n_order=p.n_order + n_real,
    )


@functools.partial(jax.jit, static_argnames="C")
def count_pairs(sym, weight, nxt, prv, V, C: int) -> tuple[Pairs, jax.Array]:
    """Count every pair from scratch (at the start, and when the slot table is full); and best()."""
    N = len(sym)
    zeros = jnp.zeros(C, jnp.int32)
    p = Pairs(
        sym,
        weight,
        nxt,
        prv,
        jnp.zeros(N, jnp.int32),
        zeros,
        jnp.full(C, NONE),
        zeros,
        zeros,
        jnp.zeros(5 * N, jnp.int32),
        jnp.int32(1),
        jnp.int32(0),
    )
    p = add_pairs(p, jnp.arange(N), V)
    return p, best(p)


def recount(sym, weight, nxt, prv, V, C: int) -> tuple[Pairs, jax.Array, int]:
    """count_pairs with C slots, doubled until the live pairs fill at most half of them."""
    p, top = count_pairs(sym, weight, nxt, prv, V, C)
    while 2 * int(top[5]) > C:
        C *= 2
        p, top = count_pairs(sym, weight, nxt, prv, V, C)
    return p, top, C


def best(p: Pairs):
    """Slot of the most frequent pair (ties: smallest key), and its count, key, start, size.

    Three plain reductions (max, min, sum): on a CPU, XLA's argmin/argmax are several
    times slower than these, and this runs once per merge over all slots. A key has at
    most one slot that counts, so the sum picks out exactly one slot index."""
    top = jnp.max(p.count[1:])
    key = jnp.min(jnp.where(p.count == top, p.key, NONE))
    slot = jnp.sum(jnp.where((p.count == top) & (p.key == key), jnp.arange(len(p.key)), 0))
    return jnp.stack(
        [slot, p.count[slot], p.key[slot], p.start[slot], p.size[slot], p.n_slots, p.n_order]
    )


@functools.partial(jax.jit, static_argnames="B", donate_argnums=0)
def merge(p: Pairs, slot, a, b, start, size, new, V, B: int) -> tuple[Pairs, jax.Array]:
    """Replace every (a, b) by `new` (at most B stored positions): the torch version, lane-masked.

    Returns best() of the new state too: one dispatch and one device->host copy per merge."""
    TRASH = len(p.sym) - 1
    occ = jax.lax.dynamic_slice(p.order, (start,), (B,))
    valid = (jnp.arange(B) < size) & (p.pslot[occ] == slot)
    occ = jnp.sort(jnp.where(valid, occ, TRASH))  # real positions first, ascending
    valid = occ < TRASH
    # In a run a a a a (a == b), merge positions 0, 2, ... of the run (left to right).
    k = jnp.arange(B)
    linked = jnp.concatenate([jnp.array([False]), valid[1:] & (p.nxt[occ[:-1]] == occ[1:])])
    run_start = jax.lax.cummax(jnp.where(linked, 0, k))
    occ = jnp.sort(jnp.where(valid & ((a != b) | ((k - run_start) % 2 == 0)), occ, TRASH))
    right, left = p.nxt[occ], p.prv[occ]
    # [x a b a b y]: the second x is the first b; count each position once.
    shared = jnp.concatenate([jnp.array([False]), left[1:] == right[:-1]])
    left = jnp.where(shared | (occ == TRASH), TRASH, left)
    # Pairs starting at x, a, b in [x a b y] vanish ...
    gone = jnp.concatenate([left, occ, right])
    gone_slots = p.pslot[gone]
    count = p.count.at[gone_slots].add(-p.weight[gone])
    after = p.nxt[right]
    # The values written into pslot and prv are made to depend on what was read from them
    # (min(slot, 0) is 0; left >= 0 always): XLA then knows the reads come first and
    # updates in place, instead of copying both arrays on every merge.
    p = p._replace(
        count=count,
        pslot=p.pslot.at[gone].set(jnp.minimum(gone_slots, 0)),
        sym=p.sym.at[occ].set(jnp.where(occ < TRASH, new, -1)).at[right].set(-1),
        nxt=p.nxt.at[occ].set(jnp.where(occ < TRASH, after, TRASH)),
        prv=p.prv.at[after].set(jnp.where((occ < TRASH) & (left >= 0), occ, TRASH)),
    )
    # ... and pairs starting at x and at the new token appear.
    p = add_pairs(p, jnp.concatenate([left, occ]), V)
    return p, best(p)


def train(texts, vocab_size: int, min_frequency: int = 0, special_tokens=()) -> BPE:
    """Byte-level BPE with jnp pair counts; the same merges as week1.tokenization.train."""
    specials, vocab, words, counts = word_table(texts, vocab_size, min_frequency, special_tokens)
    if vocab_size * vocab_size > int(NONE):
        raise ValueError(
            f"vocab_size={vocab_size}: the JAX trainer's int32 pair keys allow at most 46340"
        )
    id_to_token = list(vocab)
    sym, weight = spec.flat_words(words, counts)
    # Pad to a power of two with sentinels, and keep V a traced value: corpora and
    # vocabulary sizes then share compiled kernels.
    N = max(1 << 17, 1 << (len(sym) - 1).bit_length())
    sym = jnp.full(N, -1, jnp.int32).at[: len(sym)].set(sym)
    weight = jnp.zeros(N, jnp.int32).at[: len(weight)].set(weight)
    idx = jnp.arange(N)
    nxt, prv = jnp.minimum(idx + 1, N - 1), jnp.maximum(idx - 1, 0).at[-1].set(N - 1)
    V = jnp.int32(vocab_size)
    p, top, C = recount(sym, weight, nxt, prv, V, SLOTS)
    merges = []
    while len(vocab) < vocab_size:
        slot, count, key, start, size, n_slots, n_order = (int(x) for x in top)
        if count < max(1, min_frequency):
            break
        a, b = divmod(key, vocab_size)
        known = len(vocab)
        new = add_token(vocab, id_to_token, a, b)
        merges.append((a, b))
        B = 64
        while size > B:  # buckets 64, 256, 1024, ...: few shapes, so few compilations
            B *= 4
        if len(vocab) == known or n_slots + 2 * B > C or n_order + 2 * B > 4 * N:
            # `new` was a token already (or the tables are full): merge, then recount all.
            # (Slots written past the tables' end are dropped: the recount rebuilds them all.)
            p, _ = merge(p, slot, a, b, start, size, new, V=V, B=B)
            p, top, C = recount(p.sym, p.weight, p.nxt, p.prv, V, C)
        else:
            p, top = merge(p, slot, a, b, start, size, new, V=V, B=B)
    return BPE.from_training(vocab, merges, specials)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run bpe --framework jax`: train on Shakespeare, save, compare with HF."""
    texts = spec.corpus_texts(cfg)
    start = time.perf_counter()
    bpe = train(texts, cfg.vocab_size, cfg.min_frequency, cfg.specials)
    return spec.summarize(bpe, time.perf_counter() - start, texts, cfg, run.path("tokenizer.json"))


def bench(cfg: spec.Config) -> dict:
    """`week1 bench bpe` (JAX half): HF tokenizers first (the ratios are to it), then our JAX
    trainer."""
    texts = spec.corpus_texts(cfg)
    args = (cfg.vocab_size, cfg.min_frequency, cfg.specials)
    ref = hf.train_bpe(texts, *args)
    sample = spec.encode_sample(texts)
    return {
        "HF tokenizers (Rust)": time_calls(
            lambda: hf.train_bpe(texts, *args), lambda _: None, warmup=0, iters=1
        ),
        "jax": time_calls(lambda: train(texts, *args), lambda _: None, warmup=0, iters=1),
        "encode 1 MB: HF (encode_batch)": time_calls(
            lambda: ref.encode_batch(sample), lambda _: None, warmup=0, iters=3
        ),
    }
