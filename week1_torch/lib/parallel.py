"""Pieces the multi-process torch labs (data_parallel, fsdp) share: the training_loop lab's model
and step (the base every lab may build on) run in N processes.

Processes come from torchrun (`python -m torch.distributed.run`, env:// rendezvous;
`--standalone` on one machine, c10d rendezvous across machines: `Nodes`), gloo
on the CPU, nccl on GPUs; each gets its settings as a config.json
(week1.parallel.worker_args). `train` is the loop DDP and FSDP share: every rank
draws the same global batch and keeps its own rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from week1 import charlm, loop
from week1.parallel import (
    CPU_PROCESSES,
    check_batch_split,
    check_device_count,
    counts_to_time,
    failure_line,
    load_record,
    loop_config,
    read_worker_config,
    relayed_turn,
    save_start_weights,
    turns_relayed,
    worker_args,
)
from week1.report import console
from week1.timing import Timing, time_calls
from week1_torch.lib import charlm as lm
from week1_torch.lib import devices
from week1_torch.lib import train as trainer
from week1_torch.lib.models import get_weights

STATE_BYTES = "state/device"  # the bench memory column: parameters + AdamW state


def default_world_size(requested: int) -> int:
    """`requested` processes, or (0) one per GPU, or 2 on a CPU; a UsageError past the GPUs there
    are."""
    if torch.cuda.is_available():
        check_device_count(requested, torch.cuda.device_count())
        return requested or torch.cuda.device_count()
    return requested or CPU_PROCESSES


def init_process_group():
    """Join the process group torchrun set up (env:// rendezvous); returns this rank's device."""
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(
            int(os.environ["LOCAL_RANK"])
        )  # default_device() is now this rank's GPU
    else:
        torch.set_num_threads(
            1
        )  # one core per rank, as torchrun's OMP_NUM_THREADS=1: N ranks use N cores
    device = devices.default_device()
    return (
        torch.device(device.type, torch.cuda.current_device()) if device.type == "cuda" else device
    )


@contextlib.contextmanager
def process_group():
    """The process group of a torchrun rank, and this rank's device; torn down cleanly.

    On the way out every rank waits at a barrier, so none destroys its group while another
    still talks to it: a rank that exits mid-collective leaves gloo threads behind, which
    abort the process at exit ("terminate called without an active exception").
    """
    device = init_process_group()
    try:
        yield device
        dist.barrier()
    finally:
        dist.destroy_process_group()


@dataclasses.dataclass(frozen=True)
class Nodes:
    """Where this machine stands in a multi-node run (the Config's nnodes, node_rank,
    master_addr, master_port); nnodes=1: this machine alone."""

    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @classmethod
    def of(cls, cfg) -> Nodes:
        return cls(cfg.nnodes, cfg.node_rank, cfg.master_addr, cfg.master_port)

    def rendezvous(self, run_id: str) -> list[str]:
        """torchrun's rendezvous arguments: --standalone on one machine (a free port of its own:
        a busy 29500 does not matter), else c10d at node 0, which hosts the store."""
        if self.nnodes == 1:
            return ["--standalone"]
        return [
            f"--nnodes={self.nnodes}",  # ranks come from the rendezvous: node_rank says who hosts
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={self.master_addr}:{self.master_port}",
            f"--rdzv-id={run_id}",
            f"--rdzv-conf=is_host={'true' if self.node_rank == 0 else 'false'}",
        ]


def torchrun(
    module: str,
    nproc: int,
    args: list[str],
    timeout_s: float,
    log_path=None,
    nodes: Nodes = Nodes(),
    env: dict | None = None,
) -> None:
    """`torchrun <rendezvous> --nproc-per-node=N -m module args`: the real launcher.

    The launcher's and ranks' output goes to `log_path` (a temporary file by default); a failure
    is one line naming the exit status and the last line the ranks printed, with the log's path.
    env: added to this process's environment for the launcher and the ranks.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *nodes.rendezvous(f"week1-{module.rpartition('.')[2]}"),
        f"--nproc-per-node={nproc}",
        "-m",
        module,
        *args,
    ]
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log = stack.enter_context(
                tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
            )
        else:
            log = stack.enter_context(open(log_path, "w+", encoding="utf-8"))
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s,
                              env={**os.environ, **(env or {})})  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"torchrun {module} x{nproc} exited with {done.returncode}: "
                f"{failure_line(log)} (log: {log.name})"
            )


def worker_main(worker, config_cls, argv: list[str]) -> None:
    """`python -m week1_torch.<lab> --config=PATH` (week1.parallel.worker_args), as torchrun
    starts each rank: worker(cfg, out_dir, mode)."""
    worker(*read_worker_config(config_cls, argv))
    # Done: the group is destroyed and the results are written and closed. Leave without the
    # interpreter's teardown, where a C++ thread still alive (gloo's, or one a library such as
    # Accelerate started) aborts the rank: "terminate called without an active exception",
    # seen once in a full parity run (the environment lab's Accelerate worker) even after the
    # barrier of process_group().
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def is_node_leader() -> bool:
    """This rank writes its node's results: local rank 0 (on one machine, rank 0). Every node of
    a multi-node run gets them in its own run folder: the losses are all-reduced, the same on
    every rank."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def local_rows(a: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's rows of a global batch (B, ...) -> (B/N, ...)."""
    rows = a.shape[0] // world_size
    return a[rank * rows : (rank + 1) * rows]


def full_grads(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Every parameter's gradient, whole (a sharded DTensor is gathered), by state_dict name."""
    grads = {}
    for name, p in model.named_parameters():
        g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
        grads[name.removeprefix("module.")] = g.detach().float().cpu().numpy()
    return grads


def train(
    model,
    optimizer,
    scheduler,
    data: charlm.Data,
    cfg: charlm.Config,
    device,
    start: int = 0,
    end: int | None = None,
    log=None,
    history: loop.History | None = None,
    evaluate=None,
):
    """Steps start+1..end (default cfg.steps) with a DDP or FSDP model, through the one loop
    (lib/train.py: losses read every LOG_EVERY steps, a non-finite one stops the run); returns
    (global losses, first-step grads).

    Each rank trains on its rows of the global batch; the logged loss is the ranks' mean (one
    all-reduce of a scalar per step, read with the others). history: filled with the steps'
    losses and times and, at the cfg's evaluation steps, evaluate() (a validation loss); without
    one, nothing is evaluated.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    update = trainer.make_step(model, optimizer, lm.loss_fn)
    first_grads = None

    def step(x, y):
        nonlocal first_grads
        loss = update(x, y).float()  # this rank's mean loss
        if first_grads is None:  # the parity tests' gradients: read once, at the first step
            first_grads = full_grads(model)
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)  # for logging only
        return loss / world_size

    def batch(i: int):
        x, y = charlm.train_batch(data, cfg, i)  # (B, T), (B,) global batch
        return lm.as_tensors(
            local_rows(x, rank, world_size), local_rows(y, rank, world_size), device
        )

    before = 0 if history is None else len(history.steps)
    history = trainer.train(
        model,
        optimizer,
        step,
        batch,
        loop.Cadence.of(cfg),
        loop.Context(log=log, stop_at=end, turn=relayed_turn()),  # a compare's turns, on rank 0
        scheduler=scheduler,
        # Evaluated only for a History (compare): an FSDP root's forward without a backward
        # leaves its parameters gathered, which the memory figures would count.
        evaluate=(lambda: {"val_loss": evaluate()}) if evaluate and history is not None else None,
        history=history,
        start=start,
    )
    return history.train_loss[before:], first_grads


def validation(model: torch.nn.Module, data: charlm.Data, cfg: charlm.Config):
    """() -> the training_loop lab's validation loss of `model` now (its fixed val batches, whole
    on every rank: an FSDP model gathers its parameters for them on all ranks at once)."""
    batches = charlm.val_batches(data, cfg)
    return lambda: lm.evaluate(model, batches)


def mode_with_compile(mode: str, compile: bool) -> str:
    """A worker's mode, with "_compiled" when its model runs through torch.compile (`week1 run
    ... --compile`): "train" -> "train_compiled"."""
    return f"{mode}_compiled" if compile else mode


def mode_and_compile(mode: str) -> tuple[str, bool]:
    """The inverse of mode_with_compile: "train_compiled" -> ("train", True)."""
    return mode.removesuffix("_compiled"), mode.endswith("_compiled")


# `week1 compare`: the mode tells the ranks whether to torch.compile.
COMPARE_MODES = {"compare": False, "compare_compiled": True}


def compare_start(cfg) -> dict[str, np.ndarray]:
    """The training_loop model's init from cfg.seed (state_dict names, numpy), as the ranks
    would build it: where `week1 compare` starts data_parallel and fsdp."""
    loop_cfg = loop_config(cfg)
    return get_weights(lm.build_model(loop_cfg, charlm.load_data(loop_cfg).vocab_size))


def compare_in_processes(module: str, cfg, weights: dict, ctx: loop.Context) -> loop.History:
    """`module`'s workers under torchrun in a compare mode (cfg.devices ranks; 0: as many as
    default_world_size gives; torch.compile as ctx.compile says), from `weights` (state_dict
    names, numpy), rank 0 taking ctx's turns; returns rank 0's loop.History: losses, step times,
    validation losses."""
    n = default_world_size(cfg.devices)
    check_batch_split(cfg.batch_size, n)
    mode = next(m for m, compiled in COMPARE_MODES.items() if compiled == ctx.compile)
    with tempfile.TemporaryDirectory() as out, turns_relayed(ctx.turn) as env:
        save_start_weights(out, weights)
        torchrun(module, n, worker_args(cfg, out, mode), timeout_s=300 + cfg.steps, env=env)
        return load_record(out, loop.History)  # rank 0's, saved by save_record


def time_train_step(
    model, optimizer, scheduler, data: charlm.Data, cfg: charlm.Config, device
) -> Timing:
    """Timing of one train step of a DDP or FSDP model on this rank's rows of batch 1, with the
    bytes of parameters and optimizer state this rank holds."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    x, y = charlm.train_batch(data, cfg, 1)
    x, y = lm.as_tensors(local_rows(x, rank, world_size), local_rows(y, rank, world_size), device)
    timing = time_calls(lambda: lm.train_step(model, optimizer, scheduler, x, y), devices.sync)
    return timing.with_memory({STATE_BYTES: sum(state_bytes(model, optimizer).values())})


def bench_process_counts(lab: str, module: str, cfg) -> dict[str, Timing]:
    """Run `module`'s workers in bench mode under torchrun for 1, 2, 4, 8 processes (GPUs, or 1
    and 2 on a CPU, that divide the batch; a count left out is named with the reason); rank 0's
    timing of each."""
    gpus = torch.cuda.device_count()
    if not gpus:
        console.print(
            f"torch {lab}: CPU processes share the machine's cores (one thread each); these times "
            "check that the code runs, they are not a speed claim."
        )
    counts, left_out = counts_to_time(gpus or 2, cfg.batch_size)
    if left_out:
        console.print(f"torch {lab}: {left_out}")
    timings = {}
    with tempfile.TemporaryDirectory() as out:
        for n in counts:
            torchrun(module, n, worker_args(cfg, out, "bench"), timeout_s=300)
            numbers = load_result(os.path.join(out, "bench"))[2]
            timings[f"torch x{n} ({'gpu' if gpus else 'cpu'})"] = Timing(
                numbers["first_s"],
                numbers["median_s"],
                numbers["iters"],
                {STATE_BYTES: numbers["state_bytes"]},
            )
    return timings


def device_bytes(tensors) -> int:
    """Bytes these tensors hold on this rank: a DTensor counts only its local shard."""
    return sum((t.to_local() if isinstance(t, DTensor) else t).nbytes for t in tensors)


def state_bytes(model: torch.nn.Module, optimizer) -> dict[str, int]:
    """Bytes on this rank: parameters and optimizer state, as held (a DTensor counts its local
    shard)."""
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    return {"params": device_bytes(model.parameters()), "optimizer": device_bytes(state)}


def save_timing(out_dir, timing: Timing) -> None:
    save_result(
        out_dir,
        [],
        first_s=timing.first_s,
        median_s=timing.median_s,
        iters=timing.iters,
        state_bytes=timing.memory[STATE_BYTES],
    )


def save_result(out_dir, losses: list, grads: dict | None = None, **numbers) -> None:
    """Rank 0's losses, first-step grads and figures, as out_dir/result.npz for the parent
    process."""
    os.makedirs(out_dir, exist_ok=True)
    arrays = {f"grad.{k}": v for k, v in (grads or {}).items()}
    np.savez(
        os.path.join(out_dir, "result.npz"),
        losses=np.array(losses),
        **arrays,
        **{f"number.{k}": np.array(v) for k, v in numbers.items()},
    )


def load_result(out_dir) -> tuple[list, dict, dict]:
    """(losses, grads, numbers) written by save_result."""
    with np.load(os.path.join(out_dir, "result.npz")) as f:
        grads = {k[5:]: f[k] for k in f.files if k.startswith("grad.")}
        numbers = {k[7:]: f[k].item() for k in f.files if k.startswith("number.")}
        return f["losses"].tolist(), grads, numbers
