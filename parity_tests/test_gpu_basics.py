"""GPU basics: the benchmarked matmul computes the same numbers in both frameworks, per dtype;
tf32 is really in effect where it is measured (GPU); a run writes its table and plots."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from labs import gpu_basics as spec
from week1.runs import Run
from week1.tolerances import BF16, F32, assert_close
from week1_jax import gpu_basics as jgb
from week1_torch import gpu_basics as tgb
from week1_torch.lib import devices as tdevices

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TIERS = {"fp32": F32, "tf32": BF16, "bf16": BF16, "fp16": BF16}


def same_operands(n: int):
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (n, n)).astype(np.float32), rng.uniform(-1, 1, (n, n)).astype(
        np.float32
    )


def both(dtype: str, a: np.ndarray, b: np.ndarray):
    """The lab's matmul on the same inputs in each framework, as float32 numpy."""
    jax_out = jgb.matmul(dtype)(
        jnp.asarray(a, jgb.STORAGE[dtype]), jnp.asarray(b, jgb.STORAGE[dtype])
    )
    ta, tb = (torch.from_numpy(m).to(tdevices.default_device(), tgb.STORAGE[dtype]) for m in (a, b))
    torch_out = tgb.matmul(dtype)(ta, tb)
    return np.asarray(jax_out.astype(jnp.float32)), torch_out.float().cpu().numpy()


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_matmul_jax_equal_torch(dtype):
    jax_out, torch_out = both(dtype, *same_operands(64))
    assert_close("gpu_basics matmul jax vs torch", dtype, jax_out, torch_out, TIERS[dtype])


@pytest.mark.gpu
@gpu
def test_tf32_is_in_effect_on_the_gpu():
    """tf32 keeps 10 mantissa bits: its error against float64 is far above fp32's, in both
    frameworks."""
    a, b = same_operands(1024)
    reference = a.astype(np.float64) @ b.astype(np.float64)
    fp32, tf32 = both("fp32", a, b), both("tf32", a, b)  # (jax, torch) each
    errors = [
        (np.abs(t - reference).max(), np.abs(f - reference).max())
        for t, f in zip(tf32, fp32, strict=True)
    ]
    assert all(tf32_error > 10 * fp32_error for tf32_error, fp32_error in errors), errors


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_run_writes_table_plots_and_skips_what_is_missing(framework, tmp_path):
    lab = {"jax": jgb, "torch": tgb}[framework]
    cfg = spec.Config(sizes="32,64", warmup=1, iters=2, bandwidth_mib=4)
    with Run("gpu_basics", framework, cfg, root=tmp_path, tensorboard=False) as run:
        summary = lab.run(cfg, run)
        run.close(summary=summary)
    assert (run.final / "roofline.png").stat().st_size > 0 and (
        run.final / "tflops_vs_size.png"
    ).stat().st_size > 0
    measured = {"fp32", "bf16", "fp16"} | ({"tf32"} if lab.unavailable("tf32") is None else set())
    assert {k.split()[0] for k in summary if k.endswith("peak TFLOP/s")} == measured
    assert ("tf32 skipped" in summary) == (lab.unavailable("tf32") is not None)
    assert summary["bandwidth GB/s"] > 0
