"""FSDP in torch: FSDP2's fully_shard, per layer then the root, in N processes under torchrun.

Read beside week1_jax/fsdp.py (parameters sharded over an `fsdp` mesh axis by NamedSharding).
Worker processes (what `week1 run fsdp --framework torch` launches):
    torchrun --standalone --nproc-per-node=2 -m week1_torch.fsdp --config=PATH
(a config.json: the settings, the mode train|resume|bench|compare|compare_compiled, the
output folder); `--nnodes=N --node_rank=R --master_addr=HOST0` on every node runs the
training across machines (c10d rendezvous); the resume on fewer ranks is then left out
(each node's checkpoint shards lie on its own disk).
"""

from __future__ import annotations

import functools
import pathlib
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from labs import fsdp as spec
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

# No counterpart in JAX: fully_shard, the shard written out beside it (JAX's layout is the
# PartitionSpec of param_spec), and the rank entry point torchrun starts (JAX runs in one
# process).
FRAMEWORK_ONLY = ("shard_rows", "hand_shards", "replicated_memory_bytes", "worker")
SHARDS = "shards"  # the worker's folder for hand_shards' result, one file per rank


def _sharded(model, device, mixed_precision: bool = False):
    """The char MLP under FSDP2: its two large layers (the stand-ins for transformer blocks)
    sharded as units of their own, the root taking the embedding and LayerNorm."""
    return parallelize.apply_fsdp(model, device, (model.fc1, model.head), mixed_precision)


def shard_rows(full: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """The rows of a parameter FSDP2 keeps on `rank`: dim 0 cut as torch.chunk cuts it,

        rows [rank c, min((rank + 1) c, d0)),   c = ceil(d0 / N)

    so the last ranks' shards are shorter, or empty, when N does not divide d0. A rank holds
    about 1/N of every parameter, and so of its gradient and optimizer state; a unit's forward
    all-gathers the N shards into the full parameter and frees it after. Reference: Zhao et al.
    (2023), "PyTorch FSDP"; torch.distributed.fsdp.fully_shard ("sharded on dim-0").
    """
    rows = -(-full.shape[0] // world_size)  # ceil(d0 / N)
    return full[rank * rows : (rank + 1) * rows]  # (<= c, ...)


def hand_shards(cfg: spec.Config, data: charlm.Data, device) -> dict:
    """This rank's shards of cfg.seed's init two ways, numpy by state_dict name: "hand/<name>"
    cut by shard_rows from the whole model, "fsdp/<name>" the local part of fully_shard's
    DTensor."""
    loop_cfg = loop_config(cfg)
    full = lm.build_model(loop_cfg, data.vocab_size)
    model = _sharded(devices.place(lm.build_model(loop_cfg, data.vocab_size), device), device)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    hand = {
        f"hand/{n}": shard_rows(p.detach(), rank, world_size) for n, p in full.named_parameters()
    }
    fsdp = {f"fsdp/{n}": p.to_local().detach() for n, p in model.named_parameters()}
    return {k: v.cpu().numpy() for k, v in (hand | fsdp).items()}


def replicated_memory_bytes(cfg: spec.Config, data: charlm.Data, device) -> dict[str, int]:
    """What every rank holds without sharding (DDP): a whole model and its optimizer state after
    one step."""
    loop_cfg = loop_config(cfg)
    model = devices.place(lm.build_model(loop_cfg, data.vocab_size), device)
    optimizer, scheduler = lm.make_optimizer(model, loop_cfg)
    lm.train_step(
        model,
        optimizer,
        scheduler,
        *lm.as_tensors(*charlm.train_batch(data, loop_cfg, 1), device),
    )
    return parallel.state_bytes(model, optimizer)


def save_checkpoint(directory, model, optimizer, scheduler) -> None:
    """Every rank writes its own shards, with metadata on how they tile each tensor
    (torch.distributed.checkpoint)."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save(
        {"model": model_state, "optimizer": optimizer_state, "scheduler": scheduler.state_dict()},
        checkpoint_id=directory,
    )


def restore_checkpoint(directory, model, optimizer, scheduler) -> None:
    """Load a checkpoint saved on any number of ranks into this group's shards."""
    saved = dcp.FileSystemReader(directory).read_metadata().state_dict_metadata
    spec.check_checkpoint_shapes(
        {
            k.removeprefix("model."): tuple(m.size)
            for k, m in saved.items()
            if k.startswith("model.")
        },
        {k: tuple(t.shape) for k, t in model.state_dict().items()},
    )
    # The target: this group's shards. An optimizer with no state yet gets it from get_state_dict,
    # which takes one zero-gradient step at lr 0 (harmless for AdamW: the loaded moments replace
    # it).
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
    }
    dcp.load(state, checkpoint_id=directory)
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )
    scheduler.load_state_dict(state["scheduler"])


def train(
    cfg: spec.Config,
    data: charlm.Data,
    device,
    checkpoint_dir=None,
    resume: bool = False,
    log=None,
    weights: dict | None = None,
    compile: bool = False,
    history: loop.History | None = None,
):
    """Train with FSDP in the current group, from `weights` (state_dict names; None: cfg.seed's
    init); returns (losses, first-step grads, memory bytes on this rank).

    checkpoint_dir: save a sharded checkpoint at spec.checkpoint_step(cfg), then go on.
    resume: start from that checkpoint instead (saved on any number of ranks).
    compile: the sharded model through torch.compile (FSDP2's hooks break its graph per unit).
    history: filled with the steps' losses and times and the validation losses (lib/parallel.py).
    """
    check_batch_split(cfg.batch_size, dist.get_world_size())
    loop_cfg = loop_config(cfg)
    model = _sharded(
        devices.place(lm.build_model(loop_cfg, data.vocab_size, weights), device),
        device,
        cfg.mixed_precision,
    )
    optimizer, scheduler = lm.make_optimizer(model, loop_cfg)
    steps = functools.partial(
        parallel.train,
        torch.compile(model) if compile else model,
        optimizer,
        scheduler,
        data,
        loop_cfg,
        device,
        log=log,
        history=history,
        evaluate=parallel.validation(model, data, loop_cfg),
    )
    half = spec.checkpoint_step(cfg)
    if resume:
        restore_checkpoint(checkpoint_dir, model, optimizer, scheduler)
        losses, grads = steps(start=half)
        return losses, grads, parallel.state_bytes(model, optimizer)
    losses, grads = steps(end=half if checkpoint_dir else None)
    if checkpoint_dir:
        save_checkpoint(checkpoint_dir, model, optimizer, scheduler)
        losses += steps(start=half)[0]
    return losses, grads, parallel.state_bytes(model, optimizer)


def run(cfg: spec.Config, run, compile: bool = False) -> dict:
    """`week1 run fsdp --framework torch`: torchrun N ranks with a checkpoint half way, resume on
    N/2, vs one device."""
    n = parallel.default_world_size(cfg.devices)
    check_batch_split(cfg.batch_size, n * cfg.nnodes)
    out = run.path("ranks")
    half = max(1, n // 2)
    modes = (("train", n),) if cfg.nnodes > 1 else (("train", n), ("resume", half))
    for mode, ranks in modes:
        parallel.torchrun(
            "week1_torch.fsdp",
            ranks,
            worker_args(cfg, out, parallel.mode_with_compile(mode, compile)),
            timeout_s=120 + cfg.steps,
            log_path=run.path(f"torchrun_{mode}.log"),
            nodes=parallel.Nodes.of(cfg),
        )
    losses, _, memory = parallel.load_result(out / "train")
    for step, loss in enumerate(losses, start=1):
        run.log(step, train_loss=loss)
    loop_cfg = loop_config(cfg)
    _, single = lm.train(loop_cfg, charlm.load_data(loop_cfg))
    ranks = n * cfg.nnodes
    summary = {"ranks": ranks, f"final loss x{ranks}": losses[-1]}
    shards = [parallel.load_result(f)[1] for f in sorted((out / SHARDS).iterdir())]
    summary["shard_rows == fully_shard's local shards"] = all(
        np.array_equal(s[k], s["fsdp/" + k.removeprefix("hand/")])
        for s in shards
        for k in s
        if k.startswith("hand/")
    )
    summary["head.weight rows per rank"] = ", ".join(
        str(len(s["fsdp/head.weight"])) for s in shards
    )
    if cfg.nnodes == 1:
        summary[f"final loss resumed on x{half}"] = parallel.load_result(out / "resume")[0][-1]
    return {
        **summary,
        "final loss 1 device": single.train_loss[-1],
        **{f"{k} bytes/rank": v for k, v in memory.items()},
    }


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: torch's init from
    cfg.seed, numpy arrays under state_dict names."""
    return parallel.compare_start(cfg)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare fsdp`: FSDP2 in N torchrun processes from `weights` (state_dict names, numpy),
    no checkpoint; returns its Curves. `case` is "fp32", or "bf16" under cfg.mixed_precision. The
    ranks print nothing here (ctx.show_progress is not used): their log is a temporary file."""
    history = parallel.compare_in_processes("week1_torch.fsdp", cfg, weights, ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench fsdp`: an FSDP step vs process count, each group started by torchrun."""
    return parallel.bench_process_counts("FSDP", "week1_torch.fsdp", cfg)


def worker(cfg: spec.Config, out_dir, mode: str = "train") -> None:
    """One rank started by torchrun. train: train with a checkpoint half way, in out_dir/checkpoint;
    resume: continue from it (either with "_compiled": through torch.compile); bench: time a
    step. Rank 0 writes out_dir/<mode>/result.npz."""
    loop_cfg = loop_config(cfg)
    with parallel.process_group() as device:
        data = charlm.load_data(loop_cfg)
        if mode == "bench":
            model = _sharded(
                devices.place(lm.build_model(loop_cfg, data.vocab_size), device),
                device,
                cfg.mixed_precision,
            )
            optimizer, scheduler = lm.make_optimizer(model, loop_cfg)
            timing = parallel.time_train_step(model, optimizer, scheduler, data, loop_cfg, device)
            if dist.get_rank() == 0:
                parallel.save_timing(pathlib.Path(out_dir) / mode, timing)
        elif mode in parallel.COMPARE_MODES:
            history = loop.History()
            weights = load_start_weights(out_dir)
            compile = parallel.COMPARE_MODES[mode]
            train(cfg, data, device, weights=weights, compile=compile, history=history)
            if dist.get_rank() == 0:
                save_record(out_dir, history)
        else:
            mode, compile = parallel.mode_and_compile(mode)
            if mode == "train":
                shards = hand_shards(cfg, data, device)
                parallel.save_result(pathlib.Path(out_dir) / SHARDS / f"rank{dist.get_rank()}",
                                     [], shards)  # fmt: skip
            losses, grads, sharded = train(
                cfg,
                data,
                device,
                pathlib.Path(out_dir) / "checkpoint",
                resume=mode == "resume",
                compile=compile,
            )
            replicated = replicated_memory_bytes(cfg, data, device)
            numbers = {
                f"{k} {how}": bytes_[k]
                for k in ("params", "optimizer")
                for how, bytes_ in (("replicated", replicated), ("sharded", sharded))
            }
            if parallel.is_node_leader():
                parallel.save_result(pathlib.Path(out_dir) / mode, losses, grads, **numbers)


if __name__ == "__main__":
    parallel.worker_main(worker, spec.Config, sys.argv[1:])
