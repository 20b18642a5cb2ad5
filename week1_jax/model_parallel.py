"""Model parallelism in JAX: tensor parallelism (NamedSharding under jit; shard_map with an
explicit psum) and a GPipe pipeline (shard_map over a 'stage' mesh axis, lax.ppermute).

Read beside week1_torch/model_parallel.py (DTensor, a hand-written all-reduce pair,
torch.distributed.pipelining). The model is a set of pure functions over a nested dict of
arrays (Flax names: blocks.{i}.attn.q.kernel, ...): the same functions serve one device, the
compiler's partitioning and the per-device code of shard_map.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from labs import model_parallel as spec
from week1 import convert, loop
from week1.comparison import Curves
from week1.config import require
from week1_jax.lib import devices as jax_devices
from week1_jax.lib import optim, parallel, schedules
from week1_jax.lib import train as train_lib
from week1_jax.lib.models import dotted

# The model is pure functions here and nn.Modules in torch (DTensor and PipelineStage take
# modules); the shard_map version of tensor parallelism is JAX's own (torch's own is the
# hand-written all-reduce pair).
FRAMEWORK_ONLY = (
    "layer_norm",
    "linear",
    "identity",
    "ONE_DEVICE",
    "megatron_ops",
    "attention",
    "mlp",
    "block",
    "embed",
    "head_loss",
    "tensor_parallel_shard_map",
    "to_stages",
    "from_stages",
    "collectives",
)


def layer_norm(p, x):
    """(x - mean) / sqrt(var + eps) * scale + bias over the last axis (eps = spec.LN_EPS)."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + spec.LN_EPS) * p["scale"] + p["bias"]


def linear(p, x):
    return x @ p["kernel"] + p["bias"]


def identity(a):
    return a


# Megatron's two operators around each split pair, as (f, g): f before the column matrices
# (identity forward, all-reduce of the gradient backward), g after the row matrix (all-reduce
# forward, identity backward). On one device, and for the compiler's partitioning, both are
# the identity.
ONE_DEVICE = (identity, identity)


def megatron_ops(axis: str) -> tuple:
    """f and g inside shard_map: pcast(to="varying") marks the replicated input as used
    differently on each device (its transpose is a psum: the backward all-reduce, once for Q,
    K and V together); psum sums the row matrix's partial products."""
    return lambda a: lax.pcast(a, axis, to="varying"), lambda a: lax.psum(a, axis)


def attention(p, x, head_dim: int, ops=ONE_DEVICE):
    """Causal multi-head attention over the heads whose Q, K, V columns this device holds;
    ops = (f, g): Megatron's operators before the column and after the row matrices."""
    f, g = ops
    x = f(x)
    B, T, _ = x.shape
    q, v = (linear(p[n], x).reshape(B, T, -1, head_dim) for n in ("q", "v"))  # (B, T, H, D)
    k = (x @ p["k"]["kernel"]).reshape(B, T, -1, head_dim)  # no bias (spec.init_weights)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)  # (B, H, T, T)
    causal = jnp.tril(jnp.ones((T, T), dtype=bool))
    weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, -1)  # (B, T, H*D)
    return g(out @ p["proj"]["kernel"]) + p["proj"]["bias"]  # bias once, after the sum


def mlp(p, x, ops=ONE_DEVICE):
    """GELU(x A) B, A split by columns and B by rows (Megatron-LM, Figure 3a)."""
    f, g = ops
    h = jax.nn.gelu(linear(p["fc1"], f(x)), approximate=False)  # (B, T, n_hidden / t)
    return g(h @ p["fc2"]["kernel"]) + p["fc2"]["bias"]


def block(p, x, head_dim: int, ops=ONE_DEVICE):
    x = x + attention(p["attn"], layer_norm(p["ln1"], x), head_dim, ops)
    return x + mlp(p["mlp"], layer_norm(p["ln2"], x), ops)


def embed(params, x):
    return params["wte"]["embedding"][x] + params["wpe"]["embedding"][: x.shape[1]]  # (B, T, C)


def head_loss(params, h, y):
    """Mean cross-entropy of the next character, from the last position of h (B, T, C)."""
    logits = linear(params["head"], layer_norm(params["ln_f"], h[:, -1]))  # (B, V)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def build_model(cfg: spec.Config, vocab_size: int, weights: dict | None = None) -> dict:
    """The parameters as a nested dict of jnp arrays under Flax names, from `weights` (torch
    names, numpy; None: spec.init_weights from cfg.seed), through the lab's weight map."""
    weights = spec.init_weights(cfg, vocab_size) if weights is None else weights
    params = {}
    for name, value in convert.torch_to_flax(weights, spec.weight_map(cfg.n_layer)).items():
        *path, leaf = name.split(".")
        node = params
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = jnp.asarray(value)
    return params


def loss_fn(params, x, y, head_dim: int, ops=ONE_DEVICE):
    h = embed(params, x)
    for i in range(len(params["blocks"])):
        h = block(params["blocks"][str(i)], h, head_dim, ops)
    return head_loss(params, h, y)


def make_optimizer(cfg: spec.Config, mask=optim.decay_mask) -> optax.GradientTransformation:
    """The library's AdamW on warmup-cosine; decay on matrices only (`mask`)."""
    schedule = schedules.warmup_cosine(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr)
    return optim.adamw(schedule, weight_decay=cfg.weight_decay, mask=mask)


class Mode(NamedTuple):
    """One way to run the model's step on devices."""

    loss_and_grads: Callable  # jitted (params, x, y) -> (loss, grads), in the mode's layout
    step: Callable  # jitted (params, opt_state, x, y) -> (params, opt_state, loss, grads)
    place: Callable  # nested params (one device's layout) -> (params, opt_state) on the devices
    gather: Callable  # the mode's params -> nested numpy params in one device's layout
    put_batch: Callable  # a global numpy batch array -> placed as the step takes it
    mesh: jax.sharding.Mesh
    comm_bytes: float  # sent per device per step, by the formula


def _shardings(mesh, specs):
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda s: isinstance(s, P))


def _mode(loss_and_grads, tx, mesh, specs, batch_spec, comm_bytes, to_layout=None, back=None):
    """A Mode from a loss_and_grads function on `mesh`: the AdamW step after it, everything
    jitted with the state placed by `specs` (moments like the params) and the batch by
    `batch_spec`."""
    to_layout, back = to_layout or (lambda t: t), back or (lambda t: t)
    state_specs = (specs, optim.AdamWState(P(), specs, specs))
    state, batch, replicated = (_shardings(mesh, s) for s in (state_specs, batch_spec, P()))

    def step(params, opt_state, x, y):
        loss, grads = loss_and_grads(params, x, y)
        params, opt_state = parallel.apply_update(tx, params, opt_state, grads)
        return params, opt_state, loss, grads

    def place(params):
        layout = to_layout(params)
        return parallel.put_global(layout, state[0]), parallel.put_global(tx.init(layout), state[1])

    return Mode(
        loss_and_grads=jax.jit(
            loss_and_grads,
            in_shardings=(state[0], batch, batch),
            out_shardings=(replicated, state[0]),
        ),
        step=jax.jit(
            step,
            in_shardings=(*state, batch, batch),
            out_shardings=(*state, replicated, state[0]),
        ),
        place=place,
        gather=lambda params: back(jax.tree.map(parallel.to_host, params)),
        put_batch=lambda a: parallel.put_global(a, batch),
        mesh=mesh,
        comm_bytes=comm_bytes,
    )


def single_device(cfg: spec.Config, params, devices: list) -> Mode:
    """The reference: the whole model and batch on the first device."""
    mesh = parallel.mesh_of(devices[:1], {"data": 1})
    head_dim = cfg.n_embd // cfg.n_head
    specs = jax.tree.map(lambda _: P(), params)
    return _mode(
        jax.value_and_grad(lambda p, x, y: loss_fn(p, x, y, head_dim)),
        make_optimizer(cfg),
        mesh,
        specs,
        P(),
        0.0,
    )


def tp_plan(params):
    """Megatron's placement: column kernels P(None, 'model') and their biases P('model'), row
    kernels P('model', None); everything else (row biases, norms, embeddings, head) replicated."""

    def spec_of(path, leaf):
        role = spec.tp_role(dotted(path))
        if role == spec.COLUMN:
            return P(None, "model") if leaf.ndim == 2 else P("model")
        if role == spec.ROW and leaf.ndim == 2:
            return P("model", None)
        return P()

    return jax.tree_util.tree_map_with_path(spec_of, params)


def _tp_mesh(cfg: spec.Config, devices: list):
    t = cfg.tensor_parallel
    spec.require_split(len(devices), t)
    return parallel.mesh_of(devices, {"data": len(devices) // t, "model": t})


def _tp_comm(cfg: spec.Config, mesh, params) -> float:
    t, d = mesh.shape["model"], mesh.shape["data"]
    held = sum(
        a.size // (t if s != P() else 1)
        for a, s in zip(
            jax.tree.leaves(params),
            jax.tree.leaves(tp_plan(params), is_leaf=lambda s: isinstance(s, P)),
            strict=True,
        )
    )
    return spec.tensor_parallel_bytes(cfg, t, d, held)


def tensor_parallel(cfg: spec.Config, params, devices: list) -> Mode:
    """The single-device step under jit, the weights placed by tp_plan on a (data, model) mesh
    and the batch split over 'data': XLA partitions the matmuls and inserts the collectives."""
    mesh = _tp_mesh(cfg, devices)
    head_dim = cfg.n_embd // cfg.n_head
    return _mode(
        jax.value_and_grad(lambda p, x, y: loss_fn(p, x, y, head_dim)),
        make_optimizer(cfg),
        mesh,
        tp_plan(params),
        P("data"),
        _tp_comm(cfg, mesh, params),
    )


def tensor_parallel_shard_map(cfg: spec.Config, params, devices: list) -> Mode:
    """The same placement, the block written per device: each device holds n_head/t heads and
    n_hidden/t MLP columns; megatron_ops puts the all-reduces where Megatron does. The gradient
    of the pmean'd loss is the global one: the transposes of pcast and of the implicit
    broadcasts (a replicated parameter meeting this device's rows) sum the gradients over
    'model' and over 'data' (data parallelism's all-reduce)."""
    mesh = _tp_mesh(cfg, devices)
    head_dim = cfg.n_embd // cfg.n_head
    specs = tp_plan(params)

    def local(params, x, y):  # x (B/data, T): this device's rows; params: its shards
        def global_loss(p):
            loss = loss_fn(p, x, y, head_dim, megatron_ops("model"))
            return lax.pmean(loss, "data")

        return jax.value_and_grad(global_loss)(params)

    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(specs, P("data"), P("data")), out_specs=(P(), specs)
    )
    return _mode(sharded, make_optimizer(cfg), mesh, specs, P("data"), _tp_comm(cfg, mesh, params))


def to_stages(params, stages: int) -> dict:
    """The pipeline layout: the blocks stacked as "stages" (p, L/p, ...), stage s holding blocks
    s L/p .. (s+1) L/p - 1; embeddings, final norm and head as they are."""
    blocks = [params["blocks"][str(i)] for i in range(len(params["blocks"]))]
    stacked = jax.tree.map(
        lambda *a: jnp.stack(a).reshape(stages, len(a) // stages, *a[0].shape), *blocks
    )  # (p, L/p, ...)
    return {**{k: v for k, v in params.items() if k != "blocks"}, "stages": stacked}


def from_stages(layout) -> dict:
    stages = layout["stages"]
    n_layer = math.prod(jax.tree.leaves(stages)[0].shape[:2])
    flat = jax.tree.map(lambda a: a.reshape(n_layer, *a.shape[2:]), stages)  # (L, ...)
    blocks = {str(i): jax.tree.map(lambda a, i=i: a[i], flat) for i in range(n_layer)}
    return {**{k: v for k, v in layout.items() if k != "stages"}, "blocks": blocks}


def pipeline_gpipe(cfg: spec.Config, params, devices: list) -> Mode:
    """GPipe over cfg.stages devices on a 'stage' axis and cfg.microbatches micro-batches.

    Per device (shard_map), at tick = 0 .. m + p - 2 stage s works on micro-batch tick - s:
    stage 0 embeds it, the others take what the previous stage sent at the last tick; each
    runs its L/p blocks; the last stage computes the loss of a finished micro-batch; then
    `lax.ppermute` shifts every activation one stage on. Ticks where a stage has no
    micro-batch compute on zeros or stale values that never reach a loss: the bubble. The
    loss is the mean of the m micro-batch means (equal sizes: the batch mean); `jax.grad` of
    it runs the ticks backwards, each ppermute sending gradients one stage back.
    """
    p, m, L = cfg.stages, cfg.microbatches, cfg.n_layer
    head_dim = cfg.n_embd // cfg.n_head
    mesh = parallel.mesh_of(devices[:p], {"stage": p})
    layout = to_stages(params, p)
    specs = {
        k: jax.tree.map(lambda _, k=k: P("stage") if k == "stages" else P(), v)
        for k, v in layout.items()
    }
    shift = [(s, s + 1) for s in range(p - 1)]

    def gpipe(layout, x, y):  # on stage s: layout["stages"] (1, L/p, ...); x (B, T), y (B,)
        stage = lax.axis_index("stage")
        layers = jax.tree.map(lambda a: a[0], layout["stages"])  # (L/p, ...)
        xs, ys = x.reshape(m, -1, x.shape[1]), y.reshape(m, -1)  # (m, B/m, T), (m, B/m)
        carry = jnp.zeros((xs.shape[1], x.shape[1], cfg.n_embd))  # (B/m, T, C)
        losses = []
        for tick in range(m + p - 1):
            h = jnp.where(stage == 0, embed(layout, xs[min(tick, m - 1)]), carry)
            for j in range(L // p):
                h = block(jax.tree.map(lambda a, j=j: a[j], layers), h, head_dim)
            if tick >= p - 1:  # the last stage has finished micro-batch tick - (p - 1)
                losses.append(head_loss(layout, h, ys[tick - (p - 1)]))
            if tick < m + p - 2:
                carry = lax.ppermute(h, "stage", shift)
        loss = jnp.mean(jnp.stack(losses))  # the batch's loss on the last stage only
        return lax.psum(jnp.where(stage == p - 1, loss, 0.0), "stage")

    sharded = jax.shard_map(gpipe, mesh=mesh, in_specs=(specs, P(), P()), out_specs=P())
    mask = {
        k: jax.tree.map(lambda a, k=k: a.ndim - 2 * (k == "stages") >= 2, v)
        for k, v in layout.items()
    }  # decay matrices, as on one device
    return _mode(
        jax.value_and_grad(sharded),
        make_optimizer(cfg, mask),
        mesh,
        specs,
        P(),
        spec.pipeline_bytes(cfg, p),
        lambda params: to_stages(params, p),
        from_stages,
    )


MODES = {
    "single_device": single_device,
    "tensor_parallel": tensor_parallel,
    "tensor_parallel_shard_map": tensor_parallel_shard_map,
    "pipeline_gpipe": pipeline_gpipe,
}


def setup(cfg: spec.Config, data, mode: str, weights: dict | None = None):
    """(Mode, the placed (params, opt_state)) of `mode` on cfg.devices devices, from `weights`
    (torch names, numpy; None: spec.init_weights)."""
    devices = parallel.local_devices(cfg.devices)
    params = build_model(cfg, data.vocab_size, weights)
    placed = MODES[mode](cfg, params, devices)
    return placed, placed.place(params)


def train(cfg: spec.Config, data, mode: str, weights=None, ctx=None, history=None):
    """cfg.steps steps of `mode` through the shared loop (week1/loop.py); returns (History,
    the Mode with its step compiled ahead of time (`collectives` reads its HLO), the final
    placed (params, opt_state), step 1's gradients by torch name). Validation (at
    cfg.eval_every) gathers the parameters to one device."""
    placed, state = setup(cfg, data, mode, weights)

    def batch(i: int):
        return [placed.put_batch(a) for a in spec.train_batch(data, cfg, i)]

    placed = placed._replace(step=placed.step.lower(*state, *batch(1)).compile())
    first_grads = {}

    def one(i: int):
        nonlocal state
        *state, loss, grads = placed.step(*state, *batch(i))
        if i == 1:
            named = jax.tree_util.tree_leaves_with_path(placed.gather(grads))
            flat = {dotted(path): g for path, g in named}
            first_grads.update(convert.flax_to_torch(flat, spec.weight_map(cfg.n_layer)))
        return loss

    def evaluate() -> dict:
        params, head_dim = placed.gather(state[0]), cfg.n_embd // cfg.n_head
        losses = [_val_loss(params, x, y, head_dim) for x, y in spec.val_batches(data, cfg)]
        return {"val_loss": float(np.mean(losses))}

    cadence = loop.Cadence(cfg.steps, cfg.eval_every)
    history = loop.drive(
        cadence,
        ctx or loop.Context(),
        start=0,
        step=one,
        read=train_lib.read,
        evaluate=evaluate,
        label=f"jax {mode}",
        history=history,
    )
    return history, placed, state, first_grads


_val_loss = jax.jit(loss_fn, static_argnums=3)


def collectives(placed: Mode) -> tuple[dict, float]:
    """The collectives of the step `train` compiled ({op: count}) and the bytes a device sends
    per step, read from its HLO (`jax.jit(f).lower(...).compile().as_text()`)."""
    return spec.hlo_collectives(placed.step.as_text(), placed.mesh.size)


def bubble_sweep(cfg: spec.Config, data) -> dict:
    """A GPipe step's forward and backward timed (the fastest of 10) for m = 1, 2, 4, 8
    micro-batches of the same
    size (cfg.sweep_rows), and the per-device temporary bytes XLA plans for each."""
    rows = cfg.sweep_rows
    seconds, temp = [], []
    for m in spec.sweep_microbatches("pipeline_gpipe", cfg.stages):
        cfg_m = dataclasses.replace(cfg, batch_size=rows * m, microbatches=m)
        placed, (params, _) = setup(cfg_m, data, "pipeline_gpipe")
        x, y = spec.train_batch(data, cfg_m, 1)
        seconds.append(spec.fastest(lambda: placed.loss_and_grads(params, x, y), jax_devices.sync))
        memory = placed.loss_and_grads.lower(params, x, y).compile().memory_analysis()
        temp.append(int(memory.temp_size_in_bytes) if memory is not None else 0)
    return spec.sweep_result(cfg.stages, {"pipeline_gpipe": seconds}, {"pipeline_gpipe": temp})


def run(cfg: spec.Config, run) -> dict:
    """`week1 run model_parallel --framework jax`: one device, then each mode on the same
    batches from the same weights; the table, the bubble sweep and its plot."""
    require(
        cfg.num_processes <= 1,
        f"num_processes={cfg.num_processes}: `week1 run model_parallel` runs in one process "
        "(`week1 compare` starts its own on a CPU)",
    )
    data = spec.load_data(cfg)
    results, single = [], None
    for mode in ("single_device", *spec.modes(cfg, "jax")):
        ctx = loop.Context(
            log=lambda step, mode=mode, **m: run.log(
                step, **{f"{mode}_{k}": v for k, v in m.items()}
            ),
            should_stop=run.should_stop,
            show_progress=True,
        )
        history, placed, state, _ = train(cfg, data, mode, ctx=ctx)
        if run.should_stop():
            break
        single = single or history.train_loss
        counts, hlo_bytes = collectives(placed)
        held = [parallel.device_bytes(state[0], d) for d in placed.mesh.devices.flat]
        results.append(
            spec.ModeResult(
                mode,
                placed.mesh.size,
                max(held) // 4,
                max(parallel.device_bytes(state, d) for d in placed.mesh.devices.flat),
                placed.comm_bytes,
                hlo_bytes,
                ", ".join(f"{k} x{v}" for k, v in counts.items()),
                *spec.loss_diffs(history.train_loss, single),
                1 / max(history.steps_per_s, 1e-9),
                history.train_loss[-1],
            )
        )
    sweep = bubble_sweep(cfg, data) if cfg.sweep and not run.should_stop() else None
    return spec.summarise("jax", results, sweep, run)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare model_parallel`: the case's mode from `weights` (torch names, numpy); returns
    its Curves. On a CPU in as many processes as torch's ranks (lib/parallel.compare_processes),
    laid out as torch lays them: tensor parallelism over all of them, one pipeline stage each."""
    if n := parallel.compare_processes(cfg):
        cfg = dataclasses.replace(cfg, tensor_parallel=n, stages=n)
        return parallel.compare_in_processes("week1_jax.model_parallel", cfg, case, weights, n, ctx)
    data = spec.load_data(cfg)
    history, *_ = train(cfg, data, case, weights, ctx)
    return Curves.of(history)


if __name__ == "__main__":  # one of compare_in_processes' processes
    parallel.compare_worker(compare_run, spec.Config, sys.argv[1:])
