"""Pieces the multi-device JAX labs (data_parallel, fsdp) share: the training_loop lab's model
and step (the base every lab may build on) run on several devices.

The model is trained functionally here: `nnx.split` gives a graph definition and
a plain dict of parameter arrays, so the same step can go through `jax.pmap`,
`jax.jit` on sharded arrays, or `jax.shard_map`. A `Strategy` bundles one way
of placing the state and the batch on devices with the step that runs there;
`train` is the loop every strategy shares.

`week1 compare` on a CPU runs JAX as torch runs there, in processes (compare_in_processes):
simulated devices in one process would trade arrays through memory where torch's ranks talk
through gloo, and the speed ratio would time that difference, not the frameworks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding

from week1 import charlm, loop
from week1.comparison import Curves
from week1.machine import thread_env
from week1.parallel import (
    CPU_PROCESSES,
    check_device_count,
    cluster_processes,
    counts_to_time,
    failure_line,
    free_port,
    host_device_flags,
    load_record,
    load_start_weights,
    read_worker_config,
    relayed_turn,
    save_record,
    save_start_weights,
    turns_relayed,
    worker_args,
)
from week1.report import console
from week1.timing import time_calls
from week1_jax.lib import charlm as lm
from week1_jax.lib import devices
from week1_jax.lib import train as trainer
from week1_jax.lib.models import dotted


def join_processes(cfg) -> bool:
    """Make this process one of a multi-process JAX run, before anything touches a device:
    jax.distributed.initialize with cfg's coordinator, num_processes and process_id, or (none
    given) with what a SLURM or Open MPI launch of several tasks says; False: one process.

    Across processes on CPUs the collectives go through gloo (XLA's default there is none).
    Afterwards jax.devices() lists every process's devices; a mesh over them and
    make_array_from_process_local_data (put_batch_rows) do the rest.
    """
    explicit = cfg.num_processes > 1
    if not explicit and not (cfg.num_processes == 0 and cluster_processes() > 1):
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(
            coordinator_address=cfg.coordinator,
            num_processes=cfg.num_processes,
            process_id=cfg.process_id,
        )
    else:
        jax.distributed.initialize()  # reads SLURM_* / OMPI_* itself
    return True


def local_devices(requested: int) -> list:
    """The first `requested` devices (0: all of them), or a UsageError naming the numbers."""
    available = jax.devices()
    check_device_count(requested, len(available))
    return available[: requested or len(available)]


def mesh_of(devices: list, axes: dict[str, int]) -> jax.sharding.Mesh:
    """A mesh over `devices` with named axes (name -> size). Auto axes: the compiler propagates
    shardings (Explicit axes would make the model's embedding gather name its output sharding)."""
    return jax.make_mesh(
        tuple(axes.values()), tuple(axes), axis_types=(AxisType.Auto,) * len(axes), devices=devices
    )


def init_state(cfg: charlm.Config, vocab_size: int, weights: dict | None = None):
    """(graphdef, params, tx, opt_state): the training_loop lab's model and AdamW, as plain
    pytrees."""
    model = lm.build_model(cfg, vocab_size, weights)
    tx = lm.make_optimizer(model, cfg).tx
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)  # {"fc1": {"kernel": array, ...}, ...}
    return graphdef, params, tx, tx.init(params)


def loss_and_grads(graphdef, params, x, y):
    """The training_loop lab's mean cross-entropy of a batch, and its gradients."""
    return jax.value_and_grad(lambda p: lm.loss_fn(nnx.merge(graphdef, p), x, y))(params)


def apply_update(tx: optax.GradientTransformation, params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def train_step(graphdef, tx, params, opt_state, x, y, grads_of: Callable = loss_and_grads):
    """One step written for one device; under jit on sharded inputs XLA partitions it.
    grads_of: (graphdef, params, x, y) -> (loss, grads); the fsdp lab's gathers explicitly."""
    loss, grads = grads_of(graphdef, params, x, y)
    params, opt_state = apply_update(tx, params, opt_state, grads)
    return params, opt_state, loss, grads


class Strategy(NamedTuple):
    """One way to run the train step on several devices."""

    step: Callable  # (params, opt_state, x, y) -> (params, opt_state, loss, grads), placed values
    put_state: Callable  # a global pytree (params or optimizer state) -> placed on the devices
    put_batch: Callable  # a global numpy batch array -> placed on the devices
    get: Callable  # a placed output -> the global value


def put_global(tree, shardings):
    """Each array of `tree` as a global jax.Array with the given sharding(s). Every process holds
    the whole value and hands over its devices' pieces, so this works across processes too."""

    def put(a, sharding):
        local_to_global = sharding.is_fully_addressable is False and (
            not isinstance(a, jax.Array) or a.is_fully_addressable
        )  # one process's array onto every process's devices: through the host
        if isinstance(a, jax.Array) and not local_to_global:
            return jax.device_put(a, sharding)  # already on devices: reshard there
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda a: put(a, shardings), tree)
    return jax.tree.map(put, tree, shardings)


def put_batch_rows(a: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global batch (B, ...) split by rows: each process passes only the rows of its devices."""
    rows = a.shape[0] // jax.process_count()
    mine = a[jax.process_index() * rows : (jax.process_index() + 1) * rows]
    return jax.make_array_from_process_local_data(sharding, mine, a.shape)


def train(
    strategy: Strategy,
    params,
    opt_state,
    data: charlm.Data,
    cfg: charlm.Config,
    start: int = 0,
    end: int | None = None,
    log=None,
    history: loop.History | None = None,
    evaluate=None,
    ctx: loop.Context = loop.BARE,
):
    """Steps start+1..end (default cfg.steps) through the one loop's cadence (week1/loop.py:
    losses read every LOG_EVERY steps, a non-finite one stops the run); returns (params,
    opt_state, losses, grads of the first step).

    history: filled with the steps' losses and times and, at the cfg's evaluation steps,
    evaluate(params) (a validation loss, outside the steps' time); without one, nothing is
    evaluated.
    """
    params, opt_state = strategy.put_state(params), strategy.put_state(opt_state)
    first_grads = None

    def one(i: int):
        nonlocal params, opt_state, first_grads
        x, y = charlm.train_batch(data, cfg, i)  # (B, T), (B,) global batch
        params, opt_state, loss, grads = strategy.step(
            params, opt_state, strategy.put_batch(x), strategy.put_batch(y)
        )
        if first_grads is None:  # the parity tests' gradients: read once, at the first step
            first_grads = jax.tree.map(to_host, strategy.get(grads))
        return strategy.get(loss)

    ctx = dataclasses.replace(ctx, log=log, stop_at=end)
    before = 0 if history is None else len(history.steps)
    history = loop.drive(
        loop.Cadence.of(cfg),
        ctx,
        start=start,
        step=one,
        read=trainer.read,
        evaluate=(
            (lambda: {"val_loss": evaluate(strategy.get(params))})
            if evaluate and history is not None
            else None
        ),
        label="jax",
        history=history,
    )
    return params, opt_state, history.train_loss[before:], first_grads


def validation(graphdef, data: charlm.Data, cfg: charlm.Config):
    """params -> the training_loop lab's validation loss (its fixed val batches), on one device:
    the parameters, however placed, are gathered first."""
    batches = charlm.val_batches(data, cfg)
    return lambda params: lm.evaluate(nnx.merge(graphdef, jax.tree.map(to_host, params)), batches)


def to_host(a: jax.Array) -> np.ndarray:
    """The whole value of `a` as numpy, also when its shards lie on other processes' devices
    (FSDP across processes: gathered from every process, which each must call this)."""
    if a.is_fully_addressable or a.is_fully_replicated:
        return np.asarray(a)
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))


def bench_device_counts(lab: str, make_strategy, cfg: charlm.Config, data: charlm.Data) -> dict:
    """Time one train step on 1, 2, 4, 8 devices (those there are, that divide the batch); a
    count left out is named with the reason. make_strategy(graphdef, tx, devices, params,
    opt_state) -> Strategy."""
    available = jax.devices()
    simulated = available[0].platform == "cpu"
    if simulated:
        console.print(
            f"jax {lab}: simulated CPU devices share the same cores; these times check "
            "that the code runs, they are not a speed claim."
        )
    counts, left_out = counts_to_time(len(available), cfg.batch_size)
    if left_out:
        console.print(f"jax {lab}: {left_out}")
    x, y = charlm.train_batch(data, cfg, 1)
    timings = {}
    for n in counts:
        graphdef, params, tx, opt_state = init_state(cfg, data.vocab_size)
        strategy = make_strategy(graphdef, tx, available[:n], params, opt_state)
        state = strategy.put_state(params), strategy.put_state(opt_state)
        batch = strategy.put_batch(x), strategy.put_batch(y)
        label = f"jax x{n} ({'sim cpu' if simulated else available[0].platform})"
        timings[label] = time_calls(
            lambda: strategy.step(*state, *batch), devices.sync
        ).with_memory({"state/device": device_bytes(state, available[0])})
    return timings


def device_bytes(tree, device) -> int:
    """Bytes of `tree`'s arrays that live on `device`, summed over the actual shards."""
    return sum(
        shard.data.nbytes
        for a in jax.tree.leaves(tree)
        for shard in a.addressable_shards
        if shard.device == device
    )


def flat_names(tree, value=np.asarray) -> dict:
    """A nested params dict as {"fc1.kernel": value(leaf)}: the names week1.convert.CHAR_MLP
    uses."""
    return {dotted(path): value(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def compare_processes(cfg) -> int:
    """How many processes `week1 compare` trains a multi-device lab's JAX side in: on a CPU as
    many as torch's ranks there (cfg.devices; 0: CPU_PROCESSES), one device each, so both sides
    do the same work over the same kind of wire (gloo between processes); 0 (this process) where
    JAX has accelerators, which one process drives as torch's one rank per GPU does, and in a
    process that is one of several already."""
    if cfg.num_processes > 1 or jax.default_backend() != "cpu":
        return 0
    return cfg.devices or CPU_PROCESSES


def compare_in_processes(
    module: str, cfg, case: str, weights: dict, n: int, ctx: loop.Context
) -> Curves:
    """`case` of `week1 compare` in n processes on this machine: `python -m module --config=PATH`
    each (compare_worker), one CPU device and one thread each (torch's ranks: one thread each),
    joined by jax.distributed through a coordinator on 127.0.0.1, from `weights`, process 0
    taking ctx's turns; returns process 0's Curves. A process that fails ends the others, and
    its error is the message."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **host_device_flags(1)}
    env = thread_env(env, "jax", 1)
    cluster = {"devices": 0, "coordinator": f"127.0.0.1:{free_port()}", "num_processes": n}
    with (
        tempfile.TemporaryDirectory() as out,
        turns_relayed(ctx.turn) as turns,
        contextlib.ExitStack() as stack,
    ):
        save_start_weights(out, weights)
        procs = []
        for i in range(n):
            one = dataclasses.replace(cfg, **cluster, process_id=i)
            args = worker_args(one, os.path.join(out, f"process{i}"), case)
            log = stack.enter_context(open(os.path.join(out, f"process{i}.log"), "w+"))
            command = [sys.executable, "-m", module, *args]
            own_env = {**env, **turns} if i == 0 else env  # process 0 takes the turns
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=own_env)
            procs.append((proc, log))
            stack.callback(proc.kill)  # on any way out; a no-op for one that ended
        for i, (proc, log) in enumerate(procs):
            if proc.wait(timeout=300 + cfg.steps) != 0:
                raise RuntimeError(
                    f"{module} process {i} of {n} exited with {proc.returncode}: "
                    f"{failure_line(log)}"
                )
        return load_record(os.path.join(out, "process0"), Curves)


def compare_worker(compare_run, config_cls, argv: list[str]) -> None:
    """One of compare_in_processes' processes: join the others, train the case (the worker's
    mode) from the start weights, process 0 taking the compare's turns; process 0 records its
    Curves."""
    cfg, out_dir, case = read_worker_config(config_cls, argv)
    join_processes(cfg)
    ctx = loop.Context(turn=relayed_turn())
    curves = compare_run(cfg, case, load_start_weights(pathlib.Path(out_dir).parent), ctx)
    if jax.process_index() == 0:
        save_record(out_dir, curves)
