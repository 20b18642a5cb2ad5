"""Collectives read from a compiled program's HLO text (what
`jax.jit(f).lower(...).compile().as_text()` gives), for the labs that count what a step moves:
fsdp (bytes gathered against the sharded parameters) and model_parallel (bytes sent by the
ring formulas)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_OP = re.compile(  # "= <shape> <op>[-start|-done](": the shape an array or a tuple of them
    r"=\s*(?P<shape>\([^()]*\)|\S+)\s+(?P<op>"
    + "|".join(COLLECTIVES)
    + r")(?P<phase>-start|-done)?\("
)
_ARRAY = re.compile(r"(pred|[su](?:8|16|32|64)|bf16|f16|f32|f64)\[([\d,]*)\]")


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape: one array (`f32[192,256]{1,0}`) or a tuple of them, a fused
    collective's (`(f32[256]{0}, /*index=1*/bf16[83,24]{1,0})`)."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        bits = int(re.sub(r"\D", "", dtype) or 8)  # f32: 32; pred: a byte
        total += int(np.prod([int(d) for d in dims.split(",") if d], dtype=np.int64)) * bits // 8
    return total


def collectives(hlo: str) -> Iterator[tuple[str, str, int, str]]:
    """(op, phase, bytes of the shape it produces, its line) for each collective in `hlo`, where
    it is written (an op inside a loop body once). phase: "" for a synchronous op; "-start" and
    "-done" for the halves of an asynchronous one: -start's shape is a tuple that holds its
    operand too, -done's is the result alone."""
    for line in hlo.splitlines():
        if match := _OP.search(line):
            yield match["op"], match["phase"] or "", shape_bytes(match["shape"]), line


def collective_bytes(hlo: str) -> dict[str, int]:
    """Bytes out of each all-gather, all-reduce and reduce-scatter in `hlo`: an all-gather's
    result is the whole array, an all-reduce's too, a reduce-scatter's one shard."""
    totals = dict.fromkeys(("all-gather", "all-reduce", "reduce-scatter"), 0)
    for op, phase, nbytes, _ in collectives(hlo):
        if op in totals and phase != "-start":  # an asynchronous op's result: at its -done
            totals[op] += nbytes
    return totals
