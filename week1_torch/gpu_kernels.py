"""GPU kernels lab in Triton, PyTorch's kernel language: vector add, fused softmax, tiled matmul,
fused cross-entropy.

Read beside week1_jax/gpu_kernels.py (the same kernels in Pallas). A Triton kernel is a Python
function that `triton.jit` compiles for the GPU; each program of the grid runs it once, with
`tl.program_id` saying which. Pointers are plain arguments (a tensor passes its address), so a
kernel does its own address arithmetic: `ptr + row * row_stride + cols`.

Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set here before the
first kernel is decorated), on CPU tensors: slow, and exact enough to check every kernel.
Triton is an extra (`pip install -e '.[kernels]'`); without it this lab alone refuses to run.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import torch
import torch.nn.functional as F

from labs import gpu_kernels as spec
from week1.config import UsageError
from week1_torch.lib import devices

# No counterpart in JAX: a Triton kernel is decorated (here: when first used), a Pallas kernel is
# a plain function that pallas_call traces.
FRAMEWORK_ONLY = ("compiled", "triton")

STORAGE = {"fp32": torch.float32, "bf16": torch.bfloat16}
triton = tl = None  # imported by compiled(), in the interpreter where there is no GPU


def interpreted() -> bool:
    """No GPU: the kernels run in Triton's interpreter, on the CPU."""
    return devices.default_device().type != "cuda"


@functools.cache
def compiled(kernel):
    """`kernel` jitted by Triton for the GPU, or for its interpreter where there is none.

    Triton picks the interpreter when a function is decorated, its own library (`tl.max`,
    `tl.sum`) included, which is decorated when triton is imported: so TRITON_INTERPRET is set
    before the import, and a Triton that something else imported first in compiled mode
    (torch.compile does, even on a CPU) is imported afresh (its compiled extension, triton._C,
    stays loaded)."""
    global triton, tl
    if triton is None:
        if interpreted() and os.environ.get("TRITON_INTERPRET") != "1":
            os.environ["TRITON_INTERPRET"] = "1"
            for name in [m for m in sys.modules if m.split(".")[0] == "triton"]:
                if not name.startswith("triton._C"):
                    del sys.modules[name]
        try:
            triton, tl = (
                importlib.import_module("triton"),
                importlib.import_module("triton.language"),
            )
        except ImportError:
            raise UsageError(
                "gpu_kernels --framework torch needs Triton: pip install -e '.[kernels]' "
                "(scripts/setup.sh installs it)"
            ) from None
    return triton.jit(kernel)


def vector_add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """out[i] = x[i] + y[i] for the BLOCK elements of this program; the last block is masked."""
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n  # the ragged edge: the last program's block runs past n
    x = tl.load(x_ptr + offsets, mask=mask).to(tl.float32)
    y = tl.load(y_ptr + offsets, mask=mask).to(tl.float32)
    tl.store(out_ptr + offsets, (x + y).to(out_ptr.dtype.element_ty), mask=mask)


def vector_add(x: torch.Tensor, y: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """x + y for 1-D tensors: cdiv(n, block) programs."""
    kernel = compiled(vector_add_kernel)
    out = torch.empty_like(x)
    n = x.numel()
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK"]),)
    kernel[grid](x, y, out, n, BLOCK=block)
    return out


def softmax_kernel(x_ptr, out_ptr, n_cols, row_stride, BLOCK: tl.constexpr):
    """softmax(x[row]) = exp(x - max x) / sum exp(x - max x): one row per program, read once
    from HBM, kept in registers, written once. Padding columns load as -inf (exp gives 0)."""
    row = tl.program_id(axis=0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * row_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)
    numerator = tl.exp(x - tl.max(x, axis=0))
    out = numerator / tl.sum(numerator, axis=0)
    tl.store(out_ptr + row * row_stride + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of a 2-D tensor: one program per row, the whole row as one
    block (the next power of 2 of its width); more warps for wider rows."""
    kernel = compiled(softmax_kernel)
    x = x.contiguous()
    rows, cols = x.shape
    out = torch.empty_like(x)
    block = triton.next_power_of_2(cols)
    num_warps = 16 if block >= 8192 else 8 if block >= 2048 else 4
    kernel[(rows,)](x, out, cols, x.stride(0), BLOCK=block, num_warps=num_warps)
    return out


def matmul_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bk,
    stride_bn,
    stride_cm,
    stride_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """C[tile] = sum over K tiles of A[rows, k] @ B[k, cols], accumulated in fp32.

    Program ids are grouped: GROUP_M block-rows are walked column by column, so programs that
    run at the same time share B tiles (and A tiles) in L2 (Triton tutorial 03)."""
    pid = tl.program_id(axis=0)
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * grid_n  # programs per group of GROUP_M block-rows
    first_m = (pid // width) * GROUP_M
    group_size = tl.minimum(grid_m - first_m, GROUP_M)  # the last group may be shorter
    pid_m = first_m + (pid % width) % group_size
    pid_n = (pid % width) // group_size
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak  # (BLOCK_M, BLOCK_K)
    b_ptrs = b_ptr + ks[:, None] * stride_bk + cols[None, :] * stride_bn  # (BLOCK_K, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = tl.load(a_ptrs, mask=(rows[:, None] < M) & (ks[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(ks[:, None] < k_left) & (cols[None, :] < N), other=0.0)
        if UPCAST:  # the interpreter cannot multiply bf16 tiles (see the handout)
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision="ieee")  # fp32: no tf32 rounding
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)


def matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    block_m: int = 32,
    block_n: int = 32,
    block_k: int = 32,
    group_m: int = 8,
    num_warps: int = 4,
    num_stages: int = 3,
) -> torch.Tensor:
    """a @ b in tiles: cdiv(M, block_m) * cdiv(N, block_n) programs on a 1-D grid."""
    kernel = compiled(matmul_kernel)
    (m, k), (_, n) = a.shape, b.shape
    c = torch.empty((m, n), device=a.device, dtype=a.dtype)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    kernel[grid](
        a, b, c, m, n, k, *a.stride(), *b.stride(), *c.stride(),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=group_m,
        UPCAST=interpreted() and a.dtype == torch.bfloat16,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    return c


def cross_entropy_kernel(logits_ptr, labels_ptr, loss_ptr, n_cols, row_stride, BLOCK: tl.constexpr):
    """loss[row] = logsumexp(x) - x[label], walking the row in BLOCK columns with an online
    logsumexp: a running max m and a sum s of exp(x - m), rescaled by exp(m_old - m_new) when
    the max grows. Nothing of size n_cols is ever written."""
    row = tl.program_id(axis=0)
    label = tl.load(labels_ptr + row)
    running_max = -float("inf")
    total = 0.0
    target = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(
            logits_ptr + row * row_stride + cols, mask=cols < n_cols, other=-float("inf")
        ).to(tl.float32)
        new_max = tl.maximum(running_max, tl.max(x, axis=0))
        total = total * tl.exp(running_max - new_max) + tl.sum(tl.exp(x - new_max), axis=0)
        running_max = new_max
        target += tl.sum(tl.where(cols == label, x, 0.0), axis=0)
    tl.store(loss_ptr + row, running_max + tl.log(total) - target)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Per-row cross-entropy (float32) of (rows, classes) logits and int labels."""
    kernel = compiled(cross_entropy_kernel)
    logits = logits.contiguous()
    rows, cols = logits.shape
    loss = torch.empty(rows, device=logits.device, dtype=torch.float32)
    block = min(block, triton.next_power_of_2(cols))
    kernel[(rows,)](logits, labels, loss, cols, logits.stride(0), BLOCK=block)
    return loss


def softmax_unfused(x: torch.Tensor) -> torch.Tensor:
    """The same maths as five separate kernels, each a round trip through HBM (Triton tutorial
    02's naive_softmax)."""
    x_max = x.max(dim=1)[0]
    z = x - x_max[:, None]
    numerator = torch.exp(z)
    denominator = numerator.sum(dim=1)
    return numerator / denominator[:, None]


def library(kernel: str):
    """The framework's own op that `kernel` computes (the loss in fp32 from any logits, as
    mixed-precision training computes it)."""
    return {
        "vector_add": torch.add,
        "softmax": lambda x: torch.softmax(x, dim=-1),
        "matmul": torch.matmul,
        "cross_entropy": lambda x, y: F.cross_entropy(x.float(), y.long(), reduction="none"),
    }[kernel]


def launch(kernel: str, cfg: spec.Config):
    """The lab's kernel `kernel` with the config's blocks."""
    return {
        "vector_add": lambda x, y: vector_add(x, y, cfg.block),
        "softmax": softmax,
        "matmul": lambda a, b: matmul(a, b, cfg.block_m, cfg.block_n, cfg.block_k, cfg.group_m),
        "cross_entropy": lambda x, y: cross_entropy(x, y, cfg.block),
    }[kernel]


def as_tensors(arrays, dtype: str) -> tuple:
    """numpy inputs on the default device, floats in `dtype`'s storage (labels stay int32)."""
    return tuple(
        devices.to_device(a, dtype=STORAGE[dtype] if a.dtype.kind == "f" else None)[0]
        for a in arrays
    )


def peak_memory(fn, *args) -> dict:
    """{"peak": bytes} allocated by fn(*args) beyond its inputs (the CUDA caching allocator's
    high-water mark); {} on a CPU."""
    if not torch.cuda.is_available():
        return {}
    devices.sync()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn(*args)
    devices.sync()
    return {"peak": torch.cuda.max_memory_allocated() - before}


def device_name() -> str:
    return f"cuda:{torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"


def kernels() -> spec.Kernels:
    """What the lab's checks and bench need from torch (labs/gpu_kernels.py)."""
    return spec.Kernels(
        framework="torch",
        device=device_name(),
        interpreted=interpreted(),
        launch=launch,
        library=library,
        matmul=matmul,
        softmax_unfused=softmax_unfused,
        as_arrays=as_tensors,
        to_numpy=lambda t: t.float().cpu(),
        peak_memory=peak_memory,
        sync=devices.sync,
    )


def bench(cfg: spec.Config) -> dict:
    """`week1 bench gpu_kernels --framework torch`: the kernels' timings (labs/gpu_kernels.py)."""
    return spec.bench(cfg, kernels())


def run(cfg: spec.Config, run) -> dict:
    """`week1 run gpu_kernels --framework torch`: the correctness table; on a GPU the bench's
    tables too."""
    return spec.run_checks(cfg, run, kernels())
