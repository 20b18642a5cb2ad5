"""What the multi-device labs (data_parallel, fsdp) share, framework-free: one config for the
parallel model, the rules a device count and a batch must obey, and a config passed to workers.

The model, data and optimizer are the training_loop lab's; `loop_config` turns a
parallel config into that lab's config for the same run.

Past one machine (the fields under "multi-node" below, shown by `week1 run data_parallel
--help`): torch runs `torchrun --nnodes=N --node-rank=R --rdzv-backend=c10d
--rdzv-endpoint=MASTER_ADDR:MASTER_PORT` on every node (node 0 hosts the rendezvous
store); JAX calls `jax.distributed.initialize(coordinator, num_processes, process_id)`,
or, with none given under SLURM or Open MPI, `jax.distributed.initialize()`, which
reads them from the scheduler's environment. scripts/slurm/ has one job per framework.

Workers (the processes torchrun starts) get their settings as a config.json written
by `worker_args` and read back by `read_worker_config` (week1.config.from_dict: the
same validation as the command line's), never as argv strings parsed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import secrets
import socket
import sys
import threading
from multiprocessing.connection import Client, Listener

import numpy as np
from safetensors.numpy import load_file, save_file

from week1 import charlm
from week1.config import Range, as_dict, from_dict, require

CPU_HOST_DEVICES = 8  # simulated XLA devices when JAX runs on the CPU
CPU_PROCESSES = 2  # torch's ranks on a CPU (gloo), and JAX's processes when `week1 compare` runs


def host_device_flags(n: int = CPU_HOST_DEVICES) -> dict[str, str]:
    """The environment that gives a *new* JAX process `n` CPU devices (XLA reads it once, at
    start-up).

    Nothing sets this as a side effect of an import: the CLI passes it to the
    subprocess it starts (or sets it before its own first `import jax`).
    """
    return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}


def use_host_devices(n: int = CPU_HOST_DEVICES) -> bool:
    """Ask for `n` simulated CPU devices in *this* process, if JAX has not started yet.

    Returns False when it is too late (jax already imported) and the flag is not
    set: the caller then runs the multi-device work in a subprocess, or says why not.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return True
    if "jax" in sys.modules:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {host_device_flags(n)['XLA_FLAGS']}".strip()
    return True


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """The training_loop model trained on several devices: the fields data_parallel and fsdp
    share."""

    steps: int = 200
    batch_size: int = 64  # the global batch, split evenly over the devices
    lr: float = 3e-3
    seed: int = 0
    devices: int = (
        0  # 0: every JAX device (8 simulated on a CPU); torch: 2 CPU processes or one per GPU
    )
    block_size: int = 8
    n_embd: int = 24
    n_hidden: int = 256
    weight_decay: float = 0.01
    warmup_steps: int = 20
    final_lr: float = 3e-4
    val_fraction: float = 0.1
    # multi-node, torch (torchrun's c10d rendezvous); nnodes=1: this machine alone (--standalone)
    nnodes: int = 1  # torch: machines taking part; each runs this same command
    node_rank: int = 0  # torch: this machine's rank, 0 .. nnodes-1 (node 0 hosts the rendezvous)
    master_addr: str = "127.0.0.1"  # torch: node 0's address, as the other nodes reach it
    master_port: int = 29500  # torch: the rendezvous port on node 0
    # multi-process JAX (jax.distributed.initialize); none given: one process, or under SLURM /
    # Open MPI with several tasks, what the scheduler's environment says
    coordinator: str = ""  # JAX: process 0's HOST:PORT
    num_processes: int = 0  # JAX: processes taking part (one per host); 0: one, or the scheduler's
    process_id: int = 0  # JAX: this process, 0 .. num_processes-1

    RANGES = {
        "nnodes": Range(1),
        "master_port": Range(1, 65535),
        "num_processes": Range(0),
    }

    def check(self) -> None:
        loop_config(
            self
        ).check()  # the model, optimizer and data settings mean what they mean there
        require(self.devices >= 0, f"devices={self.devices}: must be >= 0 (0: all available)")
        if self.devices:
            check_batch_split(self.batch_size, self.devices)
        require(
            self.node_rank < self.nnodes,
            f"node_rank={self.node_rank}: must be in [0, nnodes={self.nnodes})",
        )
        require(
            self.nnodes == 1 or self.master_addr,
            "master_addr='': nnodes > 1 needs node 0's address",
        )
        explicit = self.num_processes > 1
        require(
            explicit == bool(self.coordinator),
            f"coordinator={self.coordinator!r} with num_processes={self.num_processes}: give both "
            "(HOST:PORT of process 0 and a count > 1) or neither",
        )
        require(
            not self.coordinator or self.coordinator.rpartition(":")[2].isdigit(),
            f"coordinator={self.coordinator!r}: must be HOST:PORT",
        )
        require(
            self.process_id < max(self.num_processes, 1),
            f"process_id={self.process_id}: must be in [0, num_processes={self.num_processes})",
        )


def loop_config(cfg: ParallelConfig) -> charlm.Config:
    """The training_loop lab's config for the same model, data and optimizer (dropout off:
    per-device dropout masks would differ from a single device's)."""
    shared = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(charlm.Config)
        if hasattr(cfg, f.name)
    }
    return charlm.Config(**shared, dropout=0.0)


def check_device_count(requested: int, available: int) -> None:
    require(
        requested <= available,
        f"devices={requested}: only {available} available (set XLA_FLAGS="
        f"--xla_force_host_platform_device_count=N for more simulated CPU devices)",
    )


def check_batch_split(batch_size: int, devices: int) -> None:
    require(
        batch_size % devices == 0,
        f"batch_size={batch_size} does not split over {devices} devices: use a multiple of "
        f"{devices}",
    )


def counts_to_time(available: int, batch_size: int) -> tuple[list[int], str]:
    """The device counts a bench times (1, 2, 4, 8: those there are that divide the batch), and a
    sentence naming the ones left out and why ("" when none is)."""
    counts = [n for n in (1, 2, 4, 8) if n <= available and batch_size % n == 0]
    reasons = [
        f"x{n} left out ({f'only {available} devices' if n > available else f'batch {batch_size}'}"
        f"{'' if n > available else f' does not split {n} ways'})"
        for n in (1, 2, 4, 8)
        if n not in counts
    ]
    return counts, "; ".join(reasons)


def config_args(cfg) -> list[str]:
    """cfg as the command line's `--key=value` settings (for a `week1 run` started by code)."""
    return [f"--{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg)]


def worker_args(cfg, out_dir, mode: str = "train") -> list[str]:
    """The worker's arguments: `--config=PATH` of a config.json written in out_dir (the settings,
    the mode, the output folder)."""
    out_dir = pathlib.Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"worker-{mode}.json"
    path.write_text(json.dumps({"config": as_dict(cfg), "mode": mode, "out": str(out_dir)}))
    return [f"--config={path}"]


def read_worker_config(config_cls, argv: list[str]):
    """(cfg, out_dir, mode) from the `--config=PATH` that worker_args gave the worker."""
    require(
        len(argv) == 1 and argv[0].startswith("--config="),
        f"a worker takes --config=PATH (written by week1.parallel.worker_args); got {argv}",
    )
    saved = json.loads(pathlib.Path(argv[0].removeprefix("--config=")).read_text())
    return from_dict(config_cls, saved["config"]), saved["out"], saved["mode"]


def cluster_processes() -> int:
    """The task count a SLURM (SLURM_NTASKS) or Open MPI (OMPI_COMM_WORLD_SIZE) launch gives this
    process's job, or 1 outside one: jax.distributed.initialize() reads the rest itself."""
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def failure_line(log) -> str:
    """The line of a worker's log (an open file) that says why it failed: the first that names
    an error (or a C++ abort), else the last."""
    log.seek(0)
    lines = [line.strip() for line in log if line.strip()]
    cause = next(
        (line for line in lines if "terminate called" in line or "Error" in line),
        lines[-1] if lines else "no output",
    )
    return cause[:200]


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now (the system's pick), for a coordinator on this machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# `week1 compare` in worker processes (torchrun's ranks; JAX's processes on a CPU): the parent
# hands the start weights to the workers as safetensors (no pickle) and reads what process 0
# recorded (a loop.History or a comparison.Curves) back as JSON.
START_WEIGHTS, RECORD = "start.safetensors", "record.json"


def save_start_weights(out_dir, weights: dict[str, np.ndarray]) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()},
              os.path.join(out_dir, START_WEIGHTS))  # fmt: skip


def load_start_weights(out_dir) -> dict[str, np.ndarray]:
    """The start weights save_start_weights left for the workers in out_dir."""
    return load_file(os.path.join(out_dir, START_WEIGHTS))


def save_record(out_dir, record) -> None:
    """Process 0's record of a compare (a dataclass of plain fields), for the parent."""
    with open(os.path.join(out_dir, RECORD), "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(record), f)


def load_record(out_dir, record_cls):
    with open(os.path.join(out_dir, RECORD), encoding="utf-8") as f:
        return record_cls(**json.load(f))


# `week1 compare` takes turns (week1/commands/interleave.py) also where a run's steps happen in
# worker processes: the run relays its turn to process 0 of its workers, which hands over at
# each read-window boundary and waits for its turn to come round again; the other workers wait
# for it in their next collective.
TURNS_ENV, TURNS_KEY_ENV = "WEEK1_TURNS", "WEEK1_TURNS_KEY"


@contextlib.contextmanager
def turns_relayed(turn):
    """The environment (names -> values) that hands `turn` (a compare run's loop.Context.turn;
    None: no turns, an empty environment) to process 0 of the workers started inside: a
    listener on 127.0.0.1 with a one-off key, relaying each step process 0 sends to turn(step),
    then answering it."""
    if turn is None:
        yield {}
        return
    key = secrets.token_bytes(16)
    listener = Listener(("127.0.0.1", 0), authkey=key)

    def relay() -> None:
        try:
            with listener.accept() as conn:
                while True:
                    turn(conn.recv())
                    conn.send(True)
        except (EOFError, OSError):  # process 0 is done (or never came)
            return

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    host, port = listener.address
    try:
        yield {TURNS_ENV: f"{host}:{port}", TURNS_KEY_ENV: key.hex()}
    finally:
        if thread.is_alive():  # still waiting for process 0 (it failed first): release it
            with contextlib.suppress(OSError):
                Client(listener.address, authkey=key).close()
        thread.join(timeout=5)
        listener.close()


@functools.cache  # one connection per process: the relay accepts one, a second would hang
def relayed_turn():
    """In process 0 of a compare run's workers (turns_relayed's environment; under torchrun rank
    0 only): a loop.Context.turn that hands each read-window boundary to the run, returning when
    its turn comes round again; None anywhere else."""
    address = os.environ.get(TURNS_ENV)
    if not address or os.environ.get("RANK", "0") != "0":
        return None
    host, _, port = address.rpartition(":")
    conn = Client((host, int(port)), authkey=bytes.fromhex(os.environ[TURNS_KEY_ENV]))

    def turn(step: int) -> None:
        conn.send(step)
        conn.recv()

    return turn
