"""The benchmark lab's framework-free side: the sweep plan, the crossover fit, the derived
figures (MFU against datasheet and measured peaks), the winners, and docs/results.md's
generator, on synthetic measurements (the real ones: tests/test_gpu_check.py's dry run)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from labs import benchmark as spec
from week1.config import UsageError, override
from week1.timing import Timing, datasheet_peak, flops_agree, mfu


def test_datasheet_peaks_are_dense_and_named_by_model():
    assert datasheet_peak("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert datasheet_peak("NVIDIA H200", "bf16") == pytest.approx(989.4e12)
    assert datasheet_peak("NVIDIA H100 PCIe", "bf16") == pytest.approx(756e12)
    assert datasheet_peak("cpu", "bf16") is None
    assert mfu(989.4e12 / 2, 1.0, datasheet_peak("gpu:NVIDIA H200 x1", "bf16")) == 0.5
    assert flops_agree(100.0, 109.0) and not flops_agree(100.0, 111.0)
    assert flops_agree(100.0, None) is None


def test_the_crossover_fit_recovers_floor_and_rate():
    a, r = 2e-3, 5e10  # 2 ms of overhead, 50 GFLOP/s
    W = np.logspace(6, 11, 6)
    W_star, t_star = spec.crossover(list(W), list(a + W / r))
    assert W_star == pytest.approx(a * r) and t_star == pytest.approx(2 * a)
    assert spec.crossover([1e6, 1e7], [1.0, 1.0]) is None  # fewer than 3 points
    assert spec.crossover([1e6, 1e7, 1e8], [1.0, 0.5, 0.25]) is None  # no positive rate


def test_the_quick_cpu_plan_keeps_compile_and_bf16_to_the_mlp_ends():
    todo = spec.plan(spec.Config(quick=True), on_gpu=False)
    mlp = spec.SWEEPS["mlp"]["quick-cpu"]
    ends = {spec.Point("mlp", *mlp[0]), spec.Point("mlp", *mlp[-1])}
    assert {p for p, _, compiled in todo if compiled} == ends
    assert {p for p, precision, _ in todo if precision == "bf16"} == ends
    assert all(precision == "fp32" for p, precision, _ in todo if p.workload == "word2vec")
    gpu = spec.plan(spec.Config(quick=True), on_gpu=True)
    largest = spec.Point("mlp", *spec.SWEEPS["mlp"]["quick-gpu"][-1])
    assert [(p, precision) for p, precision, compiled in gpu if compiled] == [(largest, "bf16")]
    full = spec.plan(spec.Config(), on_gpu=True)
    assert all(compiled for _, _, compiled in full)
    assert spec.compile_mode(spec.Config(), on_gpu=True) == "max-autotune"
    assert spec.compile_mode(spec.Config(quick=True), on_gpu=True) is None


@pytest.mark.parametrize(
    "setting, message",
    [
        ("--workloads=mlp,gpt", "'gpt' is not one of"),
        ("--precisions=fp8", "'fp8'"),
        ("--compile_mode=fast", "compile_mode='fast'"),
        ("--peaks=/nonexistent", "peaks="),
        ("--iters=0", "iters=0"),
    ],
)
def test_bad_settings_are_one_line_usage_errors(setting, message):
    with pytest.raises(UsageError, match=message):
        override(spec.Config(), [setting])


def document() -> dict:
    """Two frameworks' parts as the workers write them: JAX faster at the small MLP, torch at
    the large one; a DP part and loop habits."""
    parts = {
        "jax": {"device": "gpu:NVIDIA H200 x1", "rows": [], "dp": [], "habits": []},
        "torch": {"device": "cuda:NVIDIA H200", "rows": [], "dp": [], "habits": []},
    }
    for i, (width, batch) in enumerate(spec.SWEEPS["mlp"]["full"][:4]):
        point = spec.Point("mlp", width, batch)
        for variant, seconds in (
            ("jax jit", 1e-3 * 2**i),
            ("torch eager", (2, 3, 3.5, 4)[i] * 1e-3),
        ):
            part = parts[variant.split()[0]]
            part["rows"].append(
                spec.row(
                    point,
                    variant,
                    "bf16",
                    Timing(5.0, seconds, 10, {}),
                    counted_flops=point.flops,
                    memory_bytes=2**20,
                    memory_how="test",
                )
            )
    parts["jax"]["dp"] = [
        dict(framework="jax", devices=n, how="jit", median_s=1e-3 * (1 + n / 8)) for n in (1, 2, 4)
    ]
    parts["torch"]["habits"] = [
        dict(framework="torch", habit="float(loss) every step", ms_per_step=2.0)
    ]
    return spec.assemble(spec.Config(), parts, {"bf16": 800e12})


def test_derived_figures_and_winners():
    d = document()
    jax_rows = [r for r in d["rows"] if r["framework"] == "jax"]
    r = jax_rows[0]
    assert r["mfu_datasheet"] == pytest.approx(r["flops"] / r["median_s"] / 989.4e12)
    assert r["mfu_measured"] == pytest.approx(r["flops"] / r["median_s"] / 800e12)
    assert r["vs_jax"] == 1.0 and r["flops_agree"] is True
    torch_rows = [r for r in d["rows"] if r["framework"] == "torch"]
    assert torch_rows[0]["vs_jax"] == pytest.approx(2.0)
    assert [x["efficiency"] for x in d["dp"]] == pytest.approx([1.0, 1.125 / 1.25, 1.125 / 1.5])
    sizes = [spec.Point("mlp", *s).label for s in spec.SWEEPS["mlp"]["full"][:4]]
    assert spec.winners(d) == [
        f"mlp bf16: jax jit at {sizes[0]}..{sizes[1]}, torch eager at {sizes[2]}..{sizes[3]}"
    ]


def test_results_md_is_generated_from_results_json_files(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document()))
    out = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "-m", "week1", "results", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("# Benchmark results") and "## " in text and "| cpu |" in text
    assert "jax jit at" in text and "MFU (datasheet)" in text and "| jax | 4 | jit |" in text
    assert "| ms | latency ms |" in text  # device time and latency, week1.timing's two numbers
