"""FSDP in JAX: parameters and optimizer state sharded over an `fsdp` mesh axis (ZeRO-3), by
NamedSharding.

Read beside week1_torch/fsdp.py (torch FSDP2, fully_shard).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys

import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from labs import fsdp as spec
from week1 import charlm, convert, loop
from week1 import hlo as hlo_text
from week1.comparison import Curves
from week1.config import require
from week1.parallel import check_batch_split, loop_config
from week1_jax.lib import charlm as lm
from week1_jax.lib import parallel

# No counterpart in the other framework (meshes and shardings: how JAX expresses FSDP).
FRAMEWORK_ONLY = (
    "make_mesh",
    "param_spec",
    "fsdp_shardings",
    "regathered_loss_and_grads",
    "fsdp_strategy",
    "collective_bytes",
    "memory_bytes",
)


def make_mesh(devices: list, data_axis: int = 1) -> jax.sharding.Mesh:
    """A (data, fsdp) mesh; data_axis=1 is plain FSDP over every device."""
    spec.check_mesh(len(devices), data_axis)
    return parallel.mesh_of(devices, {"data": data_axis, "fsdp": len(devices) // data_axis})


def param_spec(shape: tuple, n: int) -> P:
    """Shard the first dimension that `n` divides over `fsdp`; replicate what nothing divides."""
    for dim, size in enumerate(shape):
        if size % n == 0:
            return P(*[None] * dim, "fsdp")
    return P()


def fsdp_shardings(tree, mesh: jax.sharding.Mesh):
    """A NamedSharding for each array of `tree` (params, or optimizer state: moments shaped like
    params)."""
    return jax.tree.map(
        lambda a: NamedSharding(mesh, param_spec(a.shape, mesh.shape["fsdp"])), tree
    )


def regathered_loss_and_grads(graphdef, params, x, y, mesh: jax.sharding.Mesh):
    """The loss and its gradients with every parameter all-gathered for the forward pass and
    gathered again for the backward pass, as FSDP2 does (ZeRO-3: the whole parameters are not
    kept between the two passes).

    Left to itself XLA gathers each parameter where it is used and keeps it until the backward
    pass: less traffic, and the memory of unsharded parameters, which FSDP exists to avoid.
    Here the gather is written out (a sharding constraint to replicated) inside the function
    that `jax.checkpoint` recomputes in the backward pass; its policy saves the matmuls'
    outputs, so what is recomputed is the gathers and the cheap elementwise ops, not the
    activations (the model has no blocks: all its parameters are gathered as one unit).
    """
    replicated = NamedSharding(mesh, P())

    @functools.partial(
        jax.checkpoint, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable
    )
    def loss(params):
        whole = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, replicated), params)
        return lm.loss_fn(nnx.merge(graphdef, whole), x, y)

    return jax.value_and_grad(loss)(params)


def fsdp_strategy(graphdef, tx, mesh: jax.sharding.Mesh, params, opt_state) -> parallel.Strategy:
    """jit with sharded state in and out; the parameters all-gathered for the forward pass and
    again for the backward pass (regathered_loss_and_grads), the gradients reduced to each
    device's shard (XLA's collectives)."""
    replicated = NamedSharding(mesh, P())
    grads_of = functools.partial(regathered_loss_and_grads, mesh=mesh)
    step = jax.jit(
        lambda params, opt_state, x, y: parallel.train_step(
            graphdef, tx, params, opt_state, x, y, grads_of
        ),
        out_shardings=(
            fsdp_shardings(params, mesh),
            fsdp_shardings(opt_state, mesh),
            replicated,
            fsdp_shardings(params, mesh),
        ),
    )
    return parallel.Strategy(
        step=step,
        put_state=lambda tree: parallel.put_global(tree, fsdp_shardings(tree, mesh)),
        put_batch=lambda a: parallel.put_batch_rows(
            a, NamedSharding(mesh, P(("data", "fsdp")))
        ),  # all devices
        get=lambda tree: tree,
    )


def collective_bytes(graphdef, tx, mesh: jax.sharding.Mesh, params, opt_state, x, y) -> dict:
    """What one compiled step moves, read from its HLO: bytes out of its all-gathers,
    all-reduces and reduce-scatters, and the bytes of the sharded parameters to hold them
    against. All-gathered / sharded is 2 when every parameter is gathered for the forward pass
    and again for the backward pass (XLA's own placement gathered 1.28x here)."""
    strategy = fsdp_strategy(graphdef, tx, mesh, params, opt_state)
    placed = (strategy.put_state(params), strategy.put_state(opt_state))
    hlo = strategy.step.lower(*placed, strategy.put_batch(x), strategy.put_batch(y))
    n = mesh.shape["fsdp"]
    sharded = [a for a in jax.tree.leaves(params) if param_spec(a.shape, n) != P()]
    return {
        **hlo_text.collective_bytes(hlo.compile().as_text()),
        "sharded parameters": sum(a.nbytes for a in sharded),
    }


def memory_bytes(params, opt_state, mesh: jax.sharding.Mesh) -> dict[str, int]:
    """Bytes on this process's first device of the mesh: parameters and optimizer state,
    replicated vs sharded."""
    device = next(d for d in mesh.devices.flat if d.process_index == jax.process_index())
    replicated = NamedSharding(mesh, P())
    return {
        "params replicated": parallel.device_bytes(parallel.put_global(params, replicated), device),
        "params sharded": parallel.device_bytes(
            parallel.put_global(params, fsdp_shardings(params, mesh)), device
        ),
        "optimizer replicated": parallel.device_bytes(
            parallel.put_global(opt_state, replicated), device
        ),
        "optimizer sharded": parallel.device_bytes(
            parallel.put_global(opt_state, fsdp_shardings(opt_state, mesh)), device
        ),
    }


def save_checkpoint(directory, step: int, params, opt_state) -> None:
    """Every device writes its own shards, with metadata on how they tile each array (orbax)."""
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(
            _step_path(directory, step), {"params": params, "opt_state": opt_state}, force=True
        )
        checkpointer.wait_until_finished()


def _step_path(directory, step: int) -> pathlib.Path:
    return pathlib.Path(directory).absolute() / f"step_{step:08d}"  # orbax wants absolute paths


def restore_checkpoint(directory, step: int, params, opt_state, mesh: jax.sharding.Mesh):
    """(params, opt_state) of `step`, read straight into this mesh's shardings (any device
    count)."""
    checkpointer = ocp.StandardCheckpointer()
    saved = checkpointer.metadata(_step_path(directory, step)).item_metadata["params"]
    spec.check_checkpoint_shapes(
        parallel.flat_names(saved, lambda m: m.shape),
        parallel.flat_names(params, lambda a: a.shape),
    )
    target = {"params": params, "opt_state": opt_state}
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        target,
        fsdp_shardings(target, mesh),
    )
    restored = checkpointer.restore(_step_path(directory, step), abstract)
    return restored["params"], restored["opt_state"]


def train(
    cfg: spec.Config,
    data: charlm.Data,
    mesh: jax.sharding.Mesh,
    weights: dict | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    log=None,
    history: loop.History | None = None,
    ctx: loop.Context = loop.BARE,
):
    """Train on `mesh` from `weights` (Flax names; None: cfg.seed's init); returns (losses,
    first-step grads by Flax name).

    checkpoint_dir: save a sharded checkpoint at spec.checkpoint_step(cfg), then go on.
    resume: start from that checkpoint instead (saved on any device count).
    history: filled with the steps' losses and times and the validation losses (lib/parallel.py).
    """
    require(
        not cfg.mixed_precision,
        "mixed_precision=true is torch's MixedPrecisionPolicy; the JAX version "
        "trains in fp32 (bf16 policies in JAX: the mixed_precision lab)",
    )
    check_batch_split(cfg.batch_size, mesh.size)
    loop_cfg = loop_config(cfg)
    graphdef, params, tx, opt_state = parallel.init_state(loop_cfg, data.vocab_size, weights)
    strategy = fsdp_strategy(graphdef, tx, mesh, params, opt_state)
    steps = functools.partial(
        parallel.train,
        strategy,
        data=data,
        cfg=loop_cfg,
        log=log,
        history=history,
        evaluate=parallel.validation(graphdef, data, loop_cfg),
        ctx=ctx,
    )
    half = spec.checkpoint_step(cfg)
    if resume:
        params, opt_state = restore_checkpoint(checkpoint_dir, half, params, opt_state, mesh)
        _, _, losses, grads = steps(params, opt_state, start=half)
        return losses, parallel.flat_names(grads)
    params, opt_state, losses, grads = steps(
        params, opt_state, end=half if checkpoint_dir else None
    )
    if checkpoint_dir:
        save_checkpoint(checkpoint_dir, half, params, opt_state)
        losses += steps(params, opt_state, start=half)[2]
    return losses, parallel.flat_names(grads)


def run(cfg: spec.Config, run) -> dict:
    """`week1 run fsdp --framework jax`: N devices with a checkpoint half way, resumed on N/2, vs
    one device. Across processes (cfg.num_processes, or a SLURM / Open MPI launch) the mesh
    spans every process's devices and the checkpoint and the resume on fewer are left out
    (each process's shards would lie on its own disk)."""
    many = parallel.join_processes(cfg)
    devices = parallel.local_devices(cfg.devices)
    loop_cfg = loop_config(cfg)
    data = charlm.load_data(loop_cfg)
    checkpoints = None if many else run.path("checkpoints")
    mesh = make_mesh(devices, cfg.data_axis)
    losses, _ = train(cfg, data, mesh, checkpoint_dir=checkpoints, log=run.log)
    summary = {"devices": len(devices), f"final loss x{len(devices)}": losses[-1]}
    if not many:
        fewer = devices[: max(1, len(devices) // 2)]
        resumed, _ = train(
            cfg,
            data,
            make_mesh(fewer, cfg.data_axis if len(fewer) % cfg.data_axis == 0 else 1),
            checkpoint_dir=checkpoints,
            resume=True,
        )
        summary[f"final loss resumed on x{len(fewer)}"] = resumed[-1]
    _, single = lm.train(loop_cfg, data)  # the training_loop lab, one device
    graphdef, params, tx, opt_state = parallel.init_state(loop_cfg, data.vocab_size)
    memory = memory_bytes(params, opt_state, mesh)
    moved = collective_bytes(
        graphdef, tx, mesh, params, opt_state, *charlm.train_batch(data, loop_cfg, 0)
    )
    return {
        **summary,
        "final loss 1 device": single.train_loss[-1],
        **{f"{k} bytes/device": v for k, v in memory.items()},
        **{
            f"{kind} / sharded parameter bytes per step": round(
                moved[kind] / moved["sharded parameters"], 2
            )
            for kind in ("all-gather", "reduce-scatter", "all-reduce")
        },
    }


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare fsdp`: FSDP on cfg.devices devices ((data, fsdp) mesh of cfg.data_axis), no
    checkpoint, from `weights` (torch's names, numpy); returns its Curves. Always fp32: the "bf16"
    case (torch's bf16 policy) is held against it. On a CPU in as many processes as torch's
    ranks (lib/parallel.compare_processes)."""
    cfg = dataclasses.replace(cfg, mixed_precision=False)
    if n := parallel.compare_processes(cfg):
        return parallel.compare_in_processes("week1_jax.fsdp", cfg, case, weights, n, ctx)
    loop_cfg = loop_config(cfg)
    data = charlm.load_data(loop_cfg)
    flax_weights = convert.torch_to_flax(weights, charlm.WEIGHT_MAP)
    mesh = make_mesh(parallel.local_devices(cfg.devices), cfg.data_axis)
    history = loop.History()
    train(cfg, data, mesh, flax_weights, history=history, ctx=ctx)
    return Curves.of(history)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench fsdp`: one FSDP train step vs device count."""
    loop_cfg = loop_config(cfg)
    data = charlm.load_data(loop_cfg)
    return parallel.bench_device_counts(
        "fsdp",
        lambda graphdef, tx, devices, params, opt_state: fsdp_strategy(
            graphdef, tx, make_mesh(devices), params, opt_state
        ),
        loop_cfg,
        data,
    )


if __name__ == "__main__":  # one of compare_in_processes' processes
    parallel.compare_worker(compare_run, spec.Config, sys.argv[1:])
