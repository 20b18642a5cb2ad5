"""Data parallelism in torch: DistributedDataParallel in N processes under torchrun.

Read beside week1_jax/data_parallel.py (pmap, jit + NamedSharding, shard_map).
Worker processes (what `week1 run data_parallel --framework torch` launches):
    torchrun --standalone --nproc-per-node=2 -m week1_torch.data_parallel --config=PATH
(a config.json: the settings, the mode train|bench|compare|compare_compiled, the output
folder); across machines `--nnodes=N --node_rank=R --master_addr=HOST0` on every node
puts torchrun on a c10d rendezvous instead of --standalone.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import torch
import torch.distributed as dist

from labs import data_parallel as spec
from week1 import charlm, loop
from week1.comparison import Curves
from week1.parallel import (
    check_batch_split,
    load_start_weights,
    loop_config,
    save_record,
    worker_args,
)
from week1_torch.lib import charlm as lm
from week1_torch.lib import devices, parallel, parallelize

HAND = "all_reduce_mean"  # the worker's folder for hand_reduced_grads' result

# No counterpart in JAX: the DDP wrapper (JAX shards arrays instead of wrapping a model), the
# all-reduce written out beside it (JAX's is the lax.pmean in pmap_strategy) and the rank
# torchrun starts (a JAX process is a `week1 run` itself).
FRAMEWORK_ONLY = ("ddp_model", "all_reduce_mean", "hand_reduced_grads", "worker")


def ddp_model(
    cfg: spec.Config, vocab_size: int, device, weights: dict | None = None
) -> torch.nn.Module:
    """The training_loop model (cfg.seed's init, or `weights` by state_dict name) on this rank's
    device, wrapped so backward all-reduces (averages) the gradients."""
    model = devices.place(lm.build_model(loop_config(cfg), vocab_size, weights), device)
    return parallelize.apply_ddp(model, device)


def all_reduce_mean(grads: list[torch.Tensor]) -> None:
    """What DDP's backward does to every gradient, written out (without its buckets and their
    overlap with the rest of the backward pass):

        g <- (1/N) sum_{rank} g_rank        one all-reduce (sum) per tensor, then / N

    in place, on every rank. Each rank's g_rank is the gradient of the mean loss over its B/N
    rows; with equal shards their mean is the gradient of the mean loss over the global batch
    of B, so every replica takes the single-device step. Reference: Li et al. (2020), "PyTorch
    Distributed: Experiences on Accelerating Data Parallel Training", section 3.
    """
    world_size = dist.get_world_size()
    for g in grads:
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        g /= world_size


def hand_reduced_grads(cfg: spec.Config, data: charlm.Data, device) -> dict:
    """The first step's gradients without DDP: cfg.seed's init as a plain model, backward on
    this rank's rows of batch 1, then all_reduce_mean; numpy, by state_dict name."""
    loop_cfg = loop_config(cfg)
    model = devices.place(lm.build_model(loop_cfg, data.vocab_size), device)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    x, y = charlm.train_batch(data, loop_cfg, 1)  # (B, T), (B,): step 1's global batch
    rows = (parallel.local_rows(a, rank, world_size) for a in (x, y))  # (B/N, T), (B/N,)
    lm.loss_fn(model, *lm.as_tensors(*rows, device)).backward()
    all_reduce_mean([p.grad for p in model.parameters()])
    return {name: p.grad.cpu().numpy() for name, p in model.named_parameters()}


def train(
    cfg: spec.Config,
    data: charlm.Data,
    device,
    weights: dict | None = None,
    compile: bool = False,
    history: loop.History | None = None,
    log=None,
):
    """Train with DDP in the current process group, from `weights` (None: cfg.seed's init);
    returns (global losses, first-step grads by state_dict name).

    compile: the DDP model through torch.compile (which splits the graph at DDP's buckets).
    history: filled with the steps' losses and times and the validation losses (lib/parallel.py).
    """
    check_batch_split(cfg.batch_size, dist.get_world_size())
    loop_cfg = loop_config(cfg)
    model = ddp_model(cfg, data.vocab_size, device, weights)
    optimizer, scheduler = lm.make_optimizer(model.module, loop_cfg)
    return parallel.train(
        torch.compile(model) if compile else model,
        optimizer,
        scheduler,
        data,
        loop_cfg,
        device,
        log=log,
        history=history,
        evaluate=parallel.validation(model.module, data, loop_cfg),
    )


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run data_parallel --framework torch [--compile]`: torchrun N DDP processes on this
    machine (and as many on each of the other cfg.nnodes), then one device, same batches."""
    n = parallel.default_world_size(cfg.devices)
    check_batch_split(cfg.batch_size, n * cfg.nnodes)
    out = run.path("ranks")
    parallel.torchrun(
        "week1_torch.data_parallel",
        n,
        worker_args(cfg, out, parallel.mode_with_compile("train", compile)),
        timeout_s=120 + cfg.steps,
        log_path=run.path("torchrun.log"),
        nodes=parallel.Nodes.of(cfg),
    )
    losses, grads, _ = parallel.load_result(out / "train")
    _, hand, _ = parallel.load_result(out / HAND)
    for step, loss in enumerate(losses, start=1):
        run.log(step, train_loss=loss)
    loop_cfg = loop_config(cfg)
    _, single = lm.train(loop_cfg, charlm.load_data(loop_cfg))
    return {
        "processes": n * cfg.nnodes,
        "DDP final loss": losses[-1],
        "1 device final loss": single.train_loss[-1],
        "all-reduce by hand vs DDP, step-1 grads max |diff|": max(
            float(np.abs(hand[name] - g).max()) for name, g in grads.items()
        ),
    }


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under state_dict names."""
    return parallel.compare_start(cfg)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare data_parallel`: DDP in N torchrun processes from `weights` (state_dict names,
    numpy); returns its Curves. The case names the JAX method DDP is compared with; the torch side
    is DDP for every case. The ranks print nothing here (ctx.show_progress is not used): their log
    is a temporary file."""
    history = parallel.compare_in_processes("week1_torch.data_parallel", cfg, weights, ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench data_parallel`: a DDP step vs process count, each group started by torchrun."""
    return parallel.bench_process_counts("DDP", "week1_torch.data_parallel", cfg)


def worker(cfg: spec.Config, out_dir, mode: str = "train") -> None:
    """One rank started by torchrun: join the group, train (train_compiled: through
    torch.compile) or time a step; rank 0 writes out_dir/<mode>/result.npz."""
    loop_cfg = loop_config(cfg)
    with parallel.process_group() as device:
        data = charlm.load_data(loop_cfg)
        if mode == "bench":
            model = ddp_model(cfg, data.vocab_size, device)
            optimizer, scheduler = lm.make_optimizer(model.module, loop_cfg)
            timing = parallel.time_train_step(model, optimizer, scheduler, data, loop_cfg, device)
            if dist.get_rank() == 0:
                parallel.save_timing(pathlib.Path(out_dir) / mode, timing)
        elif mode in parallel.COMPARE_MODES:
            history = loop.History()
            weights = load_start_weights(out_dir)
            train(cfg, data, device, weights, parallel.COMPARE_MODES[mode], history)
            if dist.get_rank() == 0:
                save_record(out_dir, history)
        else:
            base, compile = parallel.mode_and_compile(mode)
            hand = hand_reduced_grads(cfg, data, device)
            losses, grads = train(cfg, data, device, compile=compile)
            if parallel.is_node_leader():
                parallel.save_result(pathlib.Path(out_dir) / base, losses, grads)
                parallel.save_result(pathlib.Path(out_dir) / HAND, [], hand)


if __name__ == "__main__":
    parallel.worker_main(worker, spec.Config, sys.argv[1:])
