"""GPU kernels lab in Pallas, JAX's kernel language: vector add, fused softmax, tiled matmul,
fused cross-entropy.

Read beside week1_torch/gpu_kernels.py (the same kernels in Triton). A Pallas kernel receives
*refs* to blocks instead of pointers: `pl.pallas_call` takes the grid and a `BlockSpec` per
operand (the block's shape and an index map from program ids to the block's index), and does
the address arithmetic that a Triton kernel writes by hand. The loads and stores at a ragged
edge are masked by hand, as in Triton (`jax.experimental.pallas.triton.load/store`).

On a GPU, pallas_call lowers through Triton (`plgpu.CompilerParams`: num_warps, num_stages);
without one it runs with `interpret=True`: the kernel's body becomes ordinary XLA on the CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from labs import gpu_kernels as spec
from week1_jax.lib import devices

# No counterpart in torch: Pallas takes where it runs as pallas_call's arguments (Triton reads
# TRITON_INTERPRET when a kernel is decorated), and its index maps need the grouped program ids
# outside the kernel too (Triton computes them inside the matmul kernel only).
FRAMEWORK_ONLY = ("backend", "grouped_program_ids")

STORAGE = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def interpreted() -> bool:
    """No GPU: the kernels run with pallas_call(interpret=True), on the CPU."""
    return devices.default_device().platform != "gpu"


def backend(num_warps: int = 4, num_stages: int = 3) -> dict:
    """pallas_call's arguments for where it runs: Pallas' Triton lowering on a GPU, the
    interpreter elsewhere."""
    if interpreted():
        return {"interpret": True}
    return {"compiler_params": plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)}


def vector_add_kernel(x_ref, y_ref, out_ref, *, n: int, block: int):
    """out[i] = x[i] + y[i] for the `block` elements of this program; the last block is masked."""
    offsets = pl.program_id(0) * block + jnp.arange(block)
    mask = offsets < n  # the ragged edge: the last program's block runs past n
    x = plgpu.load(x_ref, mask=mask, other=0.0).astype(jnp.float32)
    y = plgpu.load(y_ref, mask=mask, other=0.0).astype(jnp.float32)
    plgpu.store(out_ref, (x + y).astype(out_ref.dtype), mask=mask)


@functools.partial(jax.jit, static_argnames="block")
def vector_add(x: jax.Array, y: jax.Array, block: int = 1024) -> jax.Array:
    """x + y for 1-D arrays: cdiv(n, block) programs, each given its block of x, y and out."""
    (n,) = x.shape
    blocks = pl.BlockSpec((block,), lambda i: (i,))
    return pl.pallas_call(
        functools.partial(vector_add_kernel, n=n, block=block),
        out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
        grid=(pl.cdiv(n, block),),
        in_specs=[blocks, blocks],
        out_specs=blocks,
        **backend(),
    )(x, y)


def softmax_kernel(x_ref, out_ref, *, n_cols: int, block: int):
    """softmax(x[row]) = exp(x - max x) / sum exp(x - max x): one row per program, read once
    from HBM, kept in registers, written once. Padding columns load as -inf (exp gives 0)."""
    cols = jnp.arange(block)
    mask = cols < n_cols
    x = plgpu.load(x_ref, mask=mask, other=-jnp.inf).astype(jnp.float32)
    numerator = jnp.exp(x - jnp.max(x))
    out = numerator / jnp.sum(numerator)
    plgpu.store(out_ref, out.astype(out_ref.dtype), mask=mask)


@jax.jit
def softmax(x: jax.Array) -> jax.Array:
    """Softmax over the last axis of a 2-D array: one program per row, the whole row as one
    block (the next power of 2 of its width); more warps for wider rows."""
    rows, cols = x.shape
    block = pl.next_power_of_2(cols)
    num_warps = 16 if block >= 8192 else 8 if block >= 2048 else 4
    row = pl.BlockSpec((pl.squeezed, block), lambda i: (i, 0))  # (block,) refs
    return pl.pallas_call(
        functools.partial(softmax_kernel, n_cols=cols, block=block),
        out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
        grid=(rows,),
        in_specs=[row],
        out_specs=row,
        **backend(num_warps),
    )(x)


def grouped_program_ids(pid, grid_m: int, grid_n: int, group_m: int):
    """(pid_m, pid_n) of program `pid` when GROUP_M block-rows are walked column by column, so
    programs that run at the same time share tiles in L2 (Triton tutorial 03)."""
    width = group_m * grid_n  # programs per group of group_m block-rows
    first_m = (pid // width) * group_m
    group_size = jnp.minimum(grid_m - first_m, group_m)  # the last group may be shorter
    return first_m + (pid % width) % group_size, (pid % width) // group_size


def matmul_kernel(a_ref, b_ref, c_ref, *, m, n, k, block_m, block_n, block_k, group_m):
    """C[tile] = sum over K tiles of A[rows, k] @ B[k, cols], accumulated in fp32. a_ref holds
    the tile's block-row of A, b_ref its block-column of B (padded to whole K tiles)."""
    pid_m, pid_n = grouped_program_ids(
        pl.program_id(0), pl.cdiv(m, block_m), pl.cdiv(n, block_n), group_m
    )
    rows = pid_m * block_m + jnp.arange(block_m)
    cols = pid_n * block_n + jnp.arange(block_n)

    def step(i, acc):
        ks = i * block_k + jnp.arange(block_k)
        a_mask = (rows[:, None] < m) & (ks[None, :] < k)  # (block_m, block_k)
        b_mask = (ks[:, None] < k) & (cols[None, :] < n)  # (block_k, block_n)
        a = plgpu.load(a_ref.at[:, pl.ds(i * block_k, block_k)], mask=a_mask, other=0.0)
        b = plgpu.load(b_ref.at[pl.ds(i * block_k, block_k), :], mask=b_mask, other=0.0)
        # HIGHEST: fp32 tiles are multiplied in fp32 (no tf32 rounding); bf16 on tensor cores
        return acc + jnp.dot(a, b, precision="highest", preferred_element_type=jnp.float32)

    acc = jax.lax.fori_loop(
        0, pl.cdiv(k, block_k), step, jnp.zeros((block_m, block_n), jnp.float32)
    )
    mask = (rows[:, None] < m) & (cols[None, :] < n)
    plgpu.store(c_ref, acc.astype(c_ref.dtype), mask=mask)


@functools.partial(
    jax.jit, static_argnames=("block_m", "block_n", "block_k", "group_m", "num_warps", "num_stages")
)
def matmul(
    a: jax.Array,
    b: jax.Array,
    block_m: int = 32,
    block_n: int = 32,
    block_k: int = 32,
    group_m: int = 8,
    num_warps: int = 4,
    num_stages: int = 3,
) -> jax.Array:
    """a @ b in tiles: cdiv(M, block_m) * cdiv(N, block_n) programs on a 1-D grid; the index maps
    give each program its block-row of A and block-column of B."""
    (m, k), (_, n) = a.shape, b.shape
    grid_m, grid_n = pl.cdiv(m, block_m), pl.cdiv(n, block_n)
    k_padded = pl.cdiv(k, block_k) * block_k
    ids = lambda pid: grouped_program_ids(pid, grid_m, grid_n, group_m)
    kernel = functools.partial(
        matmul_kernel, m=m, n=n, k=k, block_m=block_m, block_n=block_n, block_k=block_k,
        group_m=group_m,
    )  # fmt: skip
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((m, n), a.dtype),
        grid=(grid_m * grid_n,),
        in_specs=[
            pl.BlockSpec((block_m, k_padded), lambda pid: (ids(pid)[0], 0)),
            pl.BlockSpec((k_padded, block_n), lambda pid: (0, ids(pid)[1])),
        ],
        out_specs=pl.BlockSpec((block_m, block_n), ids),
        **backend(num_warps, num_stages),
    )(a, b)


def cross_entropy_kernel(logits_ref, label_ref, loss_ref, *, n_cols: int, block: int):
    """loss[row] = logsumexp(x) - x[label], walking the row in `block` columns with an online
    logsumexp: a running max m and a sum s of exp(x - m), rescaled by exp(m_old - m_new) when
    the max grows. Nothing of size n_cols is ever written."""
    label = label_ref[...]

    def step(i, carry):
        running_max, total, target = carry
        cols = i * block + jnp.arange(block)
        x = plgpu.load(
            logits_ref.at[pl.ds(i * block, block)], mask=cols < n_cols, other=-jnp.inf
        ).astype(jnp.float32)
        new_max = jnp.maximum(running_max, jnp.max(x))
        total = total * jnp.exp(running_max - new_max) + jnp.sum(jnp.exp(x - new_max))
        target += jnp.sum(jnp.where(cols == label, x, 0.0))
        return new_max, total, target

    start = (jnp.float32(-jnp.inf), jnp.float32(0), jnp.float32(0))
    running_max, total, target = jax.lax.fori_loop(0, pl.cdiv(n_cols, block), step, start)
    loss_ref[...] = running_max + jnp.log(total) - target


@functools.partial(jax.jit, static_argnames="block")
def cross_entropy(logits: jax.Array, labels: jax.Array, block: int = 1024) -> jax.Array:
    """Per-row cross-entropy (float32) of (rows, classes) logits and int labels."""
    rows, cols = logits.shape
    block = min(block, pl.next_power_of_2(cols))
    padded = pl.cdiv(cols, block) * block
    one = pl.BlockSpec((pl.squeezed,), lambda i: (i,))  # a 0-d ref: this row's label / loss
    return pl.pallas_call(
        functools.partial(cross_entropy_kernel, n_cols=cols, block=block),
        out_shape=jax.ShapeDtypeStruct((rows,), jnp.float32),
        grid=(rows,),
        in_specs=[pl.BlockSpec((pl.squeezed, padded), lambda i: (i, 0)), one],
        out_specs=one,
        **backend(),
    )(logits, labels)


def softmax_unfused(x: jax.Array) -> jax.Array:
    """The same maths as five separate kernels, each a round trip through HBM: not jitted, each
    line is dispatched as its own XLA computation (under jit, XLA would fuse them)."""
    x_max = jnp.max(x, axis=1)
    z = x - x_max[:, None]
    numerator = jnp.exp(z)
    denominator = jnp.sum(numerator, axis=1)
    return numerator / denominator[:, None]


def library(kernel: str):
    """The framework's own op that `kernel` computes (the loss in fp32 from any logits, as
    mixed-precision training computes it)."""
    return {
        "vector_add": jax.jit(jnp.add),
        "softmax": jax.jit(lambda x: jax.nn.softmax(x, axis=-1)),
        "matmul": jax.jit(lambda a, b: jnp.matmul(a, b, precision="highest")),
        "cross_entropy": jax.jit(
            lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x.astype(jnp.float32), y)
        ),
    }[kernel]


def launch(kernel: str, cfg: spec.Config):
    """The lab's kernel `kernel` with the config's blocks."""
    return {
        "vector_add": lambda x, y: vector_add(x, y, cfg.block),
        "softmax": softmax,
        "matmul": lambda a, b: matmul(a, b, cfg.block_m, cfg.block_n, cfg.block_k, cfg.group_m),
        "cross_entropy": lambda x, y: cross_entropy(x, y, cfg.block),
    }[kernel]


def as_arrays(arrays, dtype: str) -> tuple:
    """numpy inputs on the default device, floats in `dtype`'s storage (labels stay int32)."""
    return tuple(
        devices.to_device(a, dtype=STORAGE[dtype] if a.dtype.kind == "f" else None)[0]
        for a in arrays
    )


def peak_memory(fn, *args) -> dict:
    """{"peak": bytes} that XLA allocates for fn(*args) beyond its inputs (temporaries and
    outputs, from the compiled program's memory analysis)."""
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    if analysis is None:
        return {}
    return {"peak": analysis.temp_size_in_bytes + analysis.output_size_in_bytes}


def device_name() -> str:
    device = devices.default_device()
    return f"{device.platform}:{device.device_kind}"


def kernels() -> spec.Kernels:
    """What the lab's checks and bench need from jax (labs/gpu_kernels.py)."""
    return spec.Kernels(
        framework="jax",
        device=device_name(),
        interpreted=interpreted(),
        launch=launch,
        library=library,
        matmul=matmul,
        softmax_unfused=softmax_unfused,
        as_arrays=as_arrays,
        to_numpy=lambda t: t.astype(jnp.float32),
        peak_memory=peak_memory,
        sync=devices.sync,
    )


def bench(cfg: spec.Config) -> dict:
    """`week1 bench gpu_kernels --framework jax`: the kernels' timings (labs/gpu_kernels.py)."""
    return spec.bench(cfg, kernels())


def run(cfg: spec.Config, run) -> dict:
    """`week1 run gpu_kernels --framework jax`: the correctness table; on a GPU the bench's
    tables too."""
    return spec.run_checks(cfg, run, kernels())
