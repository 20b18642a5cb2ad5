"""The multi-device labs' framework-free spec (labs/data_parallel.py, labs/fsdp.py) and their CLI
paths."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from labs import data_parallel as spec
from week1 import loop
from week1.config import UsageError, override
from week1.parallel import check_batch_split, check_device_count, config_args

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_batch_must_split_evenly():
    check_batch_split(64, 8)
    with pytest.raises(
        UsageError, match=r"^batch_size=60 does not split over 8 devices: use a multiple of 8$"
    ):
        check_batch_split(60, 8)


def test_config_rejects_bad_settings():
    with pytest.raises(UsageError, match=r"batch_size=30 does not split over 4 devices"):
        override(spec.Config(), ["--devices=4", "--batch_size=30"])
    with pytest.raises(UsageError, match=r"method='ddp': allowed pmap, jit, shard_map, all"):
        override(spec.Config(), ["--method=ddp"])
    with pytest.raises(UsageError, match=r"devices=9: only 8 available"):
        check_device_count(9, 8)


def test_config_args_round_trip():
    cfg = spec.Config(steps=30, lr=0.0125, method="jit", devices=4)
    assert override(spec.Config(), config_args(cfg)) == cfg


def test_allreduce_bytes():
    # ring all-reduce: 2 (N-1)/N of the gradient bytes per device; nothing to send on one device
    assert spec.allreduce_bytes(1000, 1) == 0
    assert spec.allreduce_bytes(1000, 2) == 4000
    assert spec.allreduce_bytes(1000, 8) == pytest.approx(2 * 7 / 8 * 4000)


def _week1(*args, cwd, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "week1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_cli_bad_batch_is_one_line(tmp_path):
    result = _week1(
        "run",
        "data_parallel",
        "--framework",
        "torch",
        "--devices=2",
        "--batch_size=63",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "week1: error: batch_size=63 does not split over 2 devices: use a multiple of 2"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_model_parallel_run_refuses_processes_only_compare_starts(tmp_path):
    result = _week1(
        "run", "model_parallel", "--framework", "jax", "--num_processes=2", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "week1: error: num_processes=2: `week1 run model_parallel` runs in one process "
        "(`week1 compare` starts its own on a CPU)"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_fsdp_mesh_and_checkpoint_checks():
    from labs import fsdp

    with pytest.raises(UsageError, match=r"^data_axis=3 does not divide 8 devices"):
        override(fsdp.Config(), ["--devices=8", "--data_axis=3"])
    fsdp.check_checkpoint_shapes({"fc1.bias": (64,)}, {"fc1.bias": (64,)})
    with pytest.raises(
        UsageError,
        match=r"^checkpoint does not fit the model: fc1.bias is \(64,\) there, "
        r"the model wants \(32,\)$",
    ):
        fsdp.check_checkpoint_shapes({"fc1.bias": (64,)}, {"fc1.bias": (32,)})
    with pytest.raises(UsageError, match=r"it has no 'head.bias'"):
        fsdp.check_checkpoint_shapes({"fc1.bias": (64,)}, {"fc1.bias": (64,), "head.bias": (83,)})


def test_fsdp_moves_one_and_a_half_times_dp_bytes():
    from labs import fsdp

    traffic = fsdp.step_bytes(1000, 8)
    assert traffic["data_parallel"] == spec.allreduce_bytes(1000, 8)
    assert traffic["fsdp"] == pytest.approx(1.5 * traffic["data_parallel"])


def test_collective_bytes_reads_fused_and_asynchronous_collectives():
    from week1 import hlo as hlo_text

    hlo = "\n".join(
        [  # lines as XLA writes them: a fused tuple (its /*index=*/ comments), an async pair
            "  %ag = f32[192,256]{1,0} all-gather(%p), channel_id=1, dimensions={0}",
            "  %ar = (f32[256]{0}, /*index=1*/bf16[83,24]{1,0}, f32[]) all-reduce(%a, %b, %c)",
            "  %rs-start = (f32[64]{0}, f32[32]{0}) reduce-scatter-start(%g)",  # (in, out)
            "  %rs = f32[32]{0} reduce-scatter-done(%rs-start)",
            "  %gte = f32[256]{0} get-tuple-element(%ar), index=0",
        ]
    )
    assert hlo_text.collective_bytes(hlo) == {
        "all-gather": 192 * 256 * 4,
        "all-reduce": 256 * 4 + 83 * 24 * 2 + 4,
        "reduce-scatter": 32 * 4,
    }


@pytest.mark.parametrize(
    "args, words",
    [
        (["--nnodes=2", "--node_rank=2"], "node_rank=2: must be in [0, nnodes=2)"),
        (["--nnodes=0"], "nnodes=0: must be >= 1"),
        (["--master_port=70000"], "master_port=70000: must be in [1, 65535]"),
        (["--num_processes=2"], "give both"),
        (["--coordinator=10.0.0.1:1234"], "give both"),
        (["--coordinator=host", "--num_processes=2"], "must be HOST:PORT"),
        (["--coordinator=h:1", "--num_processes=2", "--process_id=2"], "process_id=2"),
    ],
)
def test_multi_node_settings_are_checked(args, words):
    from labs import fsdp

    for config in (spec.Config, fsdp.Config):
        with pytest.raises(UsageError) as err:
            override(config(), args)
        assert words in str(err.value)


def test_torchrun_rendezvous_one_machine_or_c10d_at_node_0():
    torch_parallel = pytest.importorskip("week1_torch.lib.parallel")
    assert torch_parallel.Nodes().rendezvous("x") == ["--standalone"]
    two = override(spec.Config(), ["--nnodes=2", "--node_rank=1", "--master_addr=10.1.2.3"])
    args = torch_parallel.Nodes.of(two).rendezvous("week1-data_parallel")
    assert "--nnodes=2" in args and "--rdzv-backend=c10d" in args
    assert "--rdzv-endpoint=10.1.2.3:29500" in args and "--rdzv-conf=is_host=false" in args


def test_workers_read_the_config_json_they_are_given(tmp_path):
    """Issue 20: one parser. The worker's settings travel as config.json and are validated by
    from_dict, like a run's."""
    from week1.parallel import read_worker_config, worker_args

    cfg = spec.Config(steps=30, lr=0.0125, method="jit", devices=2, nnodes=2, node_rank=1)
    argv = worker_args(cfg, tmp_path / "out", "bench")
    assert argv == [f"--config={(tmp_path / 'out' / 'worker-bench.json').resolve()}"]
    assert read_worker_config(spec.Config, argv) == (
        cfg,
        str((tmp_path / "out").resolve()),
        "bench",
    )
    with pytest.raises(UsageError, match="--config=PATH"):
        read_worker_config(spec.Config, ["--steps=3"])


def test_the_help_shows_the_multi_node_settings():
    done = subprocess.run(
        [sys.executable, "-m", "week1", "run", "fsdp", "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0
    for name in ("nnodes", "node_rank", "master_addr", "master_port", "coordinator",
                 "num_processes", "process_id"):  # fmt: skip
        assert f"--{name} " in done.stdout


@pytest.mark.parametrize("script", sorted((ROOT / "scripts" / "slurm").glob("*.sbatch")))
def test_slurm_examples_parse_and_name_real_settings(script):
    """The SLURM examples are valid bash and every --flag they give `week1 run` exists."""
    from labs import fsdp
    from week1.cli import build_parser

    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    run_options = {s for a in build_parser().commands["run"]._actions for s in a.option_strings}
    settings = {f"--{name}" for name in {**spec.Config.__dataclass_fields__,
                                          **fsdp.Config.__dataclass_fields__}}  # fmt: skip
    text = script.read_text()
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z_-]*", text))
    flags = {f for f in flags if not f.startswith(("--job", "--nodes", "--ntasks", "--gpus",
                                                   "--cpus", "--time"))}  # fmt: skip
    assert "--framework" in flags and (flags - run_options - settings) == set()


def test_a_failing_compare_process_is_named_with_its_error():
    """JAX's compare processes on a CPU (week1_jax/lib/parallel.compare_in_processes): one that
    cannot start ends the compare with its exit status and the line that says why."""
    from week1_jax.lib import parallel as jax_parallel

    cfg = spec.Config(steps=2)
    with pytest.raises(RuntimeError, match=r"week1_jax\.no_such_lab process 0 of 2 exited with 1: "
                       r".*No module named week1_jax\.no_such_lab"):  # fmt: skip
        jax_parallel.compare_in_processes("week1_jax.no_such_lab", cfg, "jit", {}, 2, loop.BARE)
