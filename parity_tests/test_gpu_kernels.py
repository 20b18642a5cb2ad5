"""GPU kernels: each Triton kernel against torch's op and each Pallas kernel against JAX's, in the
F32 and BF16 tiers, on widths that are not multiples of a block; the Triton and Pallas kernels
against each other; a run writes its correctness table. Interpreted on a CPU (small shapes: the
Triton interpreter runs one program after another), compiled on a GPU (the larger cases)."""

import importlib.util

import numpy as np
import pytest
import torch

from labs import gpu_kernels as spec
from week1.runs import Run
from week1.tolerances import assert_close
from week1_jax import gpu_kernels as jgk
from week1_torch import gpu_kernels as tgk

# Not imported here: the lab imports triton itself (in its interpreter where there is no GPU).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="the kernels extra (triton) is missing"
)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
WIDTHS = (1, 127, 1000, 4097)  # none a multiple of a block
ROWS = 3  # more than one row (a wrong row stride shows), fewer than a block (M is ragged)
CFG = spec.Config(rows=ROWS)


def outputs(kernel: str, shape: tuple, dtype: str, cfg: spec.Config = CFG) -> dict:
    """{name: float32 numpy}: each framework's kernel and its library op, on the same inputs."""
    arrays = spec.inputs(kernel, shape, cfg.seed)
    found = {}
    for name, lab, convert in (
        ("pallas", jgk, jgk.as_arrays),
        ("triton", tgk, tgk.as_tensors),
    ):
        args = convert(arrays, dtype)
        out, ref = lab.launch(kernel, cfg)(*args), lab.library(kernel)(*args)
        found[name], found[f"{name} library"] = (
            np.asarray(t.float().cpu() if isinstance(t, torch.Tensor) else t, np.float32)
            for t in (out, ref)
        )
    return found


def check(kernel: str, shape: tuple, dtype: str, cfg: spec.Config = CFG) -> None:
    found = outputs(kernel, shape, dtype, cfg)
    tier, case = spec.TIERS[dtype], f"gpu_kernels {kernel} {dtype}"
    assert_close(case, f"triton vs torch {shape}", found["triton"], found["triton library"], tier)
    assert_close(case, f"pallas vs jax {shape}", found["pallas"], found["pallas library"], tier)
    assert_close(case, f"triton vs pallas {shape}", found["triton"], found["pallas"], tier)


@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("kernel", ["vector_add", "softmax", "cross_entropy"])
def test_row_kernels_on_odd_widths(kernel, dtype):
    for width in WIDTHS:
        check(kernel, spec.shape(kernel, width, ROWS), dtype)


@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_matmul_accumulates_ragged_k_tiles(dtype):
    """M = 3 (one ragged block-row), K from 1 to 1000 (the last K tile ragged), N = 127."""
    for width in WIDTHS[:3]:
        check("matmul", spec.shape("matmul", width, ROWS), dtype)


def test_matmul_group_ordering_covers_every_tile():
    """16 x 16 tiles, 5 block-rows x 3 block-columns in groups of 2 (the last group short): a
    program id mapped twice, or a tile left out, shows as a wrong (or unwritten) block of C."""
    cfg = spec.Config(block_m=16, block_n=16, block_k=16, group_m=2)
    check("matmul", (77, 40, 45), "fp32", cfg)


def test_softmax_needs_its_max_subtraction():
    """The checked inputs sit near spec.OFFSET: exp overflows fp32 there without the shift (the
    kernels' max subtraction is what keeps them finite)."""
    (logits,) = spec.inputs("softmax", (2, 127), seed=0)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(logits)).all()
    assert np.isfinite(outputs("softmax", (2, 127), "fp32")["triton"]).all()


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_run_writes_the_correctness_table(framework, tmp_path):
    lab = {"jax": jgk, "torch": tgk}[framework]
    cfg = spec.Config(widths="127", rows=2, dtypes="bf16")
    with Run("gpu_kernels", framework, cfg, root=tmp_path, tensorboard=False) as run:
        summary = lab.run(cfg, run)
        run.close(summary=summary)
    assert summary["checks"] == len(spec.KERNELS)
    assert summary["within tier"] == summary["checks"] and "outside tier" not in summary
    assert summary["interpreted"] == lab.interpreted()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", spec.DTYPES)
def test_matmul_at_the_widest_k(dtype):
    check("matmul", spec.shape("matmul", WIDTHS[-1], ROWS), dtype)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", spec.DTYPES)
@pytest.mark.parametrize("kernel", spec.KERNELS)
def test_compiled_kernels_on_the_gpu(kernel, dtype):
    """Compiled by Triton (both frameworks), at sizes an interpreter would take minutes on, with
    the bench's largest matmul tile."""
    cfg = spec.Config(rows=257, block_m=128, block_n=128, block_k=64)
    for width in (1, 127, 4097):  # three compiles per kernel and framework, not four
        check(kernel, spec.shape(kernel, width, cfg.rows), dtype, cfg)
