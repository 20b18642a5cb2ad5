"""Data parallelism in torch: DistributedDataParallel in N processes under torchrun.

Read beside week1_jax/data_parallel.py (pmap, jit + NamedSharding, shard_map).
Worker processes (what `week1 run data_parallel --framework torch` launches):
    torchrun --standalone --nproc-per-node=2 -m week1_torch.data_parallel --out=DIR [--key=value]
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from labs import data_parallel as spec
from labs import training_loop
from labs.bench import Timing, time_calls
from labs.config import override
from labs.report import console
from week1_torch import parallel
from week1_torch import training_loop as loop


def ddp_model(cfg: spec.Config, vocab_size: int, device) -> DistributedDataParallel:
    """The training_loop model (cfg.seed's init) on this rank's device, wrapped so backward all-reduces
    (averages) the gradients."""
    model = loop.build_model(spec.loop_config(cfg), vocab_size).to(device)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def train(cfg: spec.Config, data: training_loop.Data, device, log=None):
    """Train with DDP in the current process group; returns (global losses, first-step grads by state_dict name)."""
    spec.check_batch_split(cfg.batch_size, dist.get_world_size())
    model = ddp_model(cfg, data.vocab_size, device)
    optimizer, scheduler = loop.make_optimizer(model.module, spec.loop_config(cfg))
    return parallel.train(model, optimizer, scheduler, data, spec.loop_config(cfg), device, log=log)


def time_step(cfg: spec.Config, data: training_loop.Data, device):
    """Timing of one DDP train step on this rank's rows of batch 1."""
    model = ddp_model(cfg, data.vocab_size, device)
    optimizer, scheduler = loop.make_optimizer(model.module, spec.loop_config(cfg))
    x, y = training_loop.train_batch(data, spec.loop_config(cfg), 1)
    x, y = (torch.from_numpy(parallel.local_rows(a, dist.get_rank(), dist.get_world_size())).long().to(device)
            for a in (x, y))
    return time_calls(lambda: loop.train_step(model, optimizer, scheduler, x, y), loop.sync)


def worker(cfg: spec.Config, out_dir, mode: str = "train") -> None:
    """One rank started by torchrun: join the group, train (or time a step); rank 0 writes out_dir/result.npz."""
    device = parallel.init_process_group()
    try:
        data = training_loop.load_data(spec.loop_config(cfg))
        if mode == "bench":
            timing = time_step(cfg, data, device)
            if dist.get_rank() == 0:
                parallel.save_result(out_dir, [], **dataclasses.asdict(timing))
        else:
            losses, grads = train(cfg, data, device)
            if dist.get_rank() == 0:
                parallel.save_result(out_dir, losses, grads)
    finally:
        dist.destroy_process_group()


def run(cfg: spec.Config, run) -> dict:
    """`week1 run data_parallel --framework torch`: torchrun N DDP processes, then one device, same batches."""
    n = parallel.default_world_size(cfg.devices)
    spec.check_batch_split(cfg.batch_size, n)
    out = run.path("ranks")
    parallel.torchrun("week1_torch.data_parallel", n, [f"--out={out}", *spec.config_args(cfg)],
                      timeout_s=120 + cfg.steps)
    losses, _, _ = parallel.load_result(out)
    for step, loss in enumerate(losses, start=1):
        run.log(step, train_loss=loss)
    data = training_loop.load_data(spec.loop_config(cfg))
    _, single = loop.train(spec.loop_config(cfg), data)
    return {"processes": n, "DDP final loss": losses[-1], "1 device final loss": single.train_loss[-1]}


def bench(cfg: spec.Config) -> dict:
    """`week1 bench data_parallel`: a DDP step vs process count, each group started by torchrun."""
    gpus = torch.cuda.device_count()
    counts = [n for n in (1, 2, 4, 8) if n <= (gpus or 2) and cfg.batch_size % n == 0]
    if not gpus:
        console.print("data_parallel: CPU processes share the same cores; these times check "
                      "that the code runs, they are not a speed claim.")
    timings = {}
    with tempfile.TemporaryDirectory() as out:
        for n in counts:
            parallel.torchrun("week1_torch.data_parallel", n, [f"--out={out}", "--mode=bench", *spec.config_args(cfg)],
                              timeout_s=300)
            _, _, numbers = parallel.load_result(out)
            timings[f"torch DDP x{n} ({'gpu' if gpus else 'cpu'})"] = Timing(**numbers)
    return timings


if __name__ == "__main__":
    options = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if arg.startswith(("--out=", "--mode=")))
    overrides = [arg for arg in sys.argv[1:] if not arg.startswith(("--out=", "--mode="))]
    worker(override(spec.Config(), overrides), options["out"], options.get("mode", "train"))
