"""Data parallelism in JAX, three ways: pmap, jit on a sharded batch, shard_map.

Read beside week1_torch/data_parallel.py (DistributedDataParallel under torchrun).
Across processes (one per host, or two on one machine in the tests), on every host:
    week1 run data_parallel --framework jax --coordinator=HOST0:PORT --num_processes=P
        --process_id=I
(under SLURM or Open MPI with none of them given, jax.distributed.initialize() reads the
scheduler's environment); the jit method then runs on every process's devices.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from labs import data_parallel as spec
from week1 import charlm, convert, loop
from week1.comparison import Curves
from week1.config import require
from week1.parallel import check_batch_split, loop_config
from week1_jax.lib import charlm as lm
from week1_jax.lib import parallel

# No counterpart in the other framework (JAX's three ways; torch has one (DDP)).
FRAMEWORK_ONLY = ("pmap_strategy", "jit_strategy", "shard_map_strategy")


def pmap_strategy(graphdef, tx, devices: list) -> parallel.Strategy:
    """jax.pmap: per-device code; state stacked on a leading device axis, batch as (N, B/N, ...)."""
    n = len(devices)

    def step(params, opt_state, x, y):  # one device: x (B/N, T), its own replica
        loss, grads = parallel.loss_and_grads(graphdef, params, x, y)
        loss, grads = lax.pmean((loss, grads), "data")  # equal shards: mean of means = global mean
        params, opt_state = parallel.apply_update(tx, params, opt_state, grads)
        return params, opt_state, loss, grads

    return parallel.Strategy(
        step=jax.pmap(step, axis_name="data", devices=devices),
        put_state=lambda tree: jax.tree.map(
            lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), tree
        ),  # (N, ...)
        put_batch=lambda a: a.reshape(n, a.shape[0] // n, *a.shape[1:]),  # (N, B/N, ...)
        get=lambda tree: jax.tree.map(lambda a: a[0], tree),
    )  # every replica holds the same value


def jit_strategy(graphdef, tx, devices: list) -> parallel.Strategy:
    """jax.jit on NamedSharding: the single-device step; the batch sharded over `data`, state
    replicated."""
    mesh = parallel.mesh_of(devices, {"data": len(devices)})
    step = jax.jit(
        lambda params, opt_state, x, y: parallel.train_step(graphdef, tx, params, opt_state, x, y)
    )
    return parallel.Strategy(
        step=step,
        put_state=lambda tree: parallel.put_global(tree, NamedSharding(mesh, P())),
        put_batch=lambda a: parallel.put_batch_rows(a, NamedSharding(mesh, P("data"))),
        get=lambda tree: tree,
    )


def shard_map_strategy(graphdef, tx, devices: list) -> parallel.Strategy:
    """jax.shard_map: per-device code on a mesh; the gradient of the pmean'd loss is the global
    one."""
    mesh = parallel.mesh_of(devices, {"data": len(devices)})

    def step(params, opt_state, x, y):  # one device: x (B/N, T), params replicated
        def global_loss(params):
            return lax.pmean(parallel.loss_and_grads(graphdef, params, x, y)[0], "data")

        loss, grads = jax.value_and_grad(global_loss)(
            params
        )  # not pmean(grads): they are global already
        params, opt_state = parallel.apply_update(tx, params, opt_state, grads)
        return params, opt_state, loss, grads

    sharded = jax.shard_map(
        step, mesh=mesh, in_specs=(P(), P(), P("data"), P("data")), out_specs=P()
    )
    return parallel.Strategy(
        step=jax.jit(sharded),
        put_state=lambda tree: parallel.put_global(tree, NamedSharding(mesh, P())),
        put_batch=lambda a: parallel.put_batch_rows(a, NamedSharding(mesh, P("data"))),
        get=lambda tree: tree,
    )


STRATEGIES = {"pmap": pmap_strategy, "jit": jit_strategy, "shard_map": shard_map_strategy}


def train(
    cfg: spec.Config,
    data: charlm.Data,
    method: str,
    weights: dict | None = None,
    log=None,
    history: loop.History | None = None,
    ctx: loop.Context = loop.BARE,
):
    """Train with one method on cfg.devices devices, from `weights` (Flax names; None: cfg.seed's
    init); returns (losses, first-step grads by Flax name).

    history: filled with the steps' losses and times and the validation losses (lib/parallel.py).
    """
    devices = parallel.local_devices(cfg.devices)
    check_batch_split(cfg.batch_size, len(devices))
    loop_cfg = loop_config(cfg)
    graphdef, params, tx, opt_state = parallel.init_state(loop_cfg, data.vocab_size, weights)
    strategy = STRATEGIES[method](graphdef, tx, devices)
    _, _, losses, grads = parallel.train(
        strategy,
        params,
        opt_state,
        data,
        loop_cfg,
        log=log,
        history=history,
        evaluate=parallel.validation(graphdef, data, loop_cfg),
        ctx=ctx,
    )
    return losses, parallel.flat_names(grads)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run data_parallel --framework jax`: each method, then one device, on the same
    batches. Across processes (cfg.num_processes, or a SLURM / Open MPI launch) only jit: its
    mesh spans every process's devices; pmap and shard_map here keep to one process's."""
    many = parallel.join_processes(cfg)
    require(
        not many or cfg.method in ("jit", "all"),
        f"method={cfg.method!r}: a multi-process run uses jit (or all, meaning jit)",
    )
    loop_cfg = loop_config(cfg)
    data = charlm.load_data(loop_cfg)
    n = len(parallel.local_devices(cfg.devices))
    summary = {"devices": n, "processes": jax.process_count()}
    methods = ("jit",) if many else spec.METHODS if cfg.method == "all" else (cfg.method,)
    for method in methods:
        losses, _ = train(
            cfg,
            data,
            method,
            log=lambda step, **m: run.log(step, **{f"{method}_{k}": v for k, v in m.items()}),
        )
        summary[f"{method} final loss"] = losses[-1]
    _, single = lm.train(loop_cfg, data)  # the training_loop lab, one device
    summary["1 device final loss"] = single.train_loss[-1]
    return summary


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare data_parallel`: the case's method (pmap, jit, shard_map) on cfg.devices
    devices from `weights` (torch's names, numpy); returns its Curves. jit on a CPU runs in as
    many processes as torch's ranks (lib/parallel.compare_processes); pmap and shard_map keep to
    one process's simulated devices, as `week1 run` does."""
    if case == "jit" and (n := parallel.compare_processes(cfg)):
        return parallel.compare_in_processes("week1_jax.data_parallel", cfg, case, weights, n, ctx)
    loop_cfg = loop_config(cfg)
    data = charlm.load_data(loop_cfg)
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    history = loop.History()
    train(cfg, data, case, flax_weights, history=history, ctx=ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench data_parallel`: one jit data-parallel step vs device count."""
    loop_cfg = loop_config(cfg)
    data = charlm.load_data(loop_cfg)
    return parallel.bench_device_counts(
        "jit",
        lambda graphdef, tx, devices, *_: jit_strategy(graphdef, tx, devices),
        loop_cfg,
        data,
    )


if __name__ == "__main__":  # one of compare_in_processes' processes
    parallel.compare_worker(compare_run, spec.Config, sys.argv[1:])
