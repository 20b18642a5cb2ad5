"""What the multi-device parity tests (data_parallel, fsdp) share: the CPU-simulation marker,
the single-device config they compare against, a `week1 run ... --framework torch` helper and
a two-"node" launcher on 127.0.0.1. The single-device fixtures built from LOOP_CFG are in
conftest.py."""

import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest
import torch

from labs import data_parallel
from week1.parallel import config_args, free_port, loop_config

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


def week1_run_torch(lab: str, cfg, runs_dir, *options: str) -> pathlib.Path:
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
        *options,
        *config_args(cfg),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    stub = re.search(r"NotImplementedError: (week1 exercise \S+: \S+)", result.stderr)
    if result.returncode != 0 and stub:  # `week1 check`: a learner's stub, raised in a rank
        raise NotImplementedError(stub.group(1))
    assert result.returncode == 0, result.stderr[-3000:]
    return next(pathlib.Path(runs_dir).iterdir())


def week1_run_two_nodes(lab: str, framework: str, cfg, runs_dir) -> list[pathlib.Path]:
    """`week1 run <lab>` twice at once on 127.0.0.1, as two machines would run it, one process
    each: torch with --nnodes=2 --node_rank=0/1 (torchrun's c10d rendezvous at node 0), JAX with
    --coordinator --num_processes=2 --process_id=0/1 (jax.distributed, gloo on the CPU, one CPU
    device per process). Returns the two run folders (node 0's first)."""
    port = free_port()
    if framework == "torch":
        nodes = dataclasses.replace(cfg, devices=1, nnodes=2, master_addr="127.0.0.1",
                                    master_port=port)  # fmt: skip
        per_node = [dataclasses.replace(nodes, node_rank=r) for r in range(2)]
        env = dict(os.environ)
    else:
        nodes = dataclasses.replace(cfg, coordinator=f"127.0.0.1:{port}", num_processes=2)
        per_node = [dataclasses.replace(nodes, process_id=i) for i in range(2)]
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
               "JAX_PLATFORMS": "cpu"}  # fmt: skip
    folders = [pathlib.Path(runs_dir) / f"node{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "week1",
                "run",
                lab,
                "--framework",
                framework,
                f"--runs-dir={folder}",
                *config_args(node_cfg),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for folder, node_cfg in zip(folders, per_node, strict=True)
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            proc.kill()
    return [next(folder.iterdir()) for folder in folders]
