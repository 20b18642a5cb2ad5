"""What the multi-device parity tests (data_parallel, fsdp) share: the CPU-simulation marker,
the single-device config they compare against, and a `week1 run ... --framework torch` helper.
The single-device fixtures built from LOOP_CFG are in conftest.py."""

import pathlib
import subprocess
import sys

import jax
import pytest
import torch

from labs import data_parallel
from week1.parallel import config_args, loop_config

# These cases are the CPU simulation: 8 XLA host devices, 2 gloo processes. On a GPU machine the
# gpu-marked cases (and scripts/gpu_check.sh) run the single-GPU versions instead.
CPU_SIMULATION = (
    len(jax.devices()) == 8 and jax.default_backend() == "cpu" and not torch.cuda.is_available()
)
cpu_simulation = pytest.mark.skipif(
    not CPU_SIMULATION, reason="needs the CPU simulation (8 host devices, no CUDA)"
)

CFG = data_parallel.Config(steps=20, batch_size=32, n_hidden=64, warmup_steps=5, lr=1e-2)
LOOP_CFG = loop_config(CFG)


def week1_run_torch(lab: str, cfg, runs_dir) -> pathlib.Path:
    """`week1 run <lab> --framework torch` with cfg's settings (it launches torchrun: 2 gloo
    processes
    on 127.0.0.1, starting from cfg.seed's init); returns the run folder."""
    command = [
        sys.executable,
        "-m",
        "week1",
        "run",
        lab,
        "--framework",
        "torch",
        f"--runs-dir={runs_dir}",
        *config_args(cfg),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return next(pathlib.Path(runs_dir).iterdir())
