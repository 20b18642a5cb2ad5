"""Benchmark lab in JAX: each workload's training step jitted with its state donated, timed, its
FLOPs counted by XLA, and data-parallel scaling over a device mesh.

Read beside week1_torch/benchmark.py: the same functions in the same order. The sweep, the
analytic FLOP counts, the batches and the report are labs/benchmark.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from labs import benchmark as spec
from week1 import charlm, convert
from week1.timing import time_calls
from week1_jax.lib import bert, devices, embeddings, optim, parallel, recurrent, steps
from week1_jax.lib import charlm as lm
from week1_jax.lib.models import set_weights
from week1_jax.lib.precision import POLICIES, apply_policy


class Workload(NamedTuple):
    """A training step ready to compile: `step(state, *batch) -> (state, loss)`, pure, jitted
    with the state donated (XLA writes the new state into the old one's buffers)."""

    state: object  # what a step updates: the (model, optimizer) state, or the matrices
    step: Callable
    batch: tuple  # device arrays


def cross_entropy(logits, labels):
    """Mean next-token cross-entropy over every position, in float32 whatever the compute
    dtype (torch.autocast does the same for bf16 logits)."""
    logits = logits.astype(jnp.float32).reshape(-1, logits.shape[-1])  # (N, V)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.reshape(-1)).mean()


def mlp_loss(model, x, y):
    return cross_entropy(model(x), y)  # logits (B, V)


def lstm_loss(model, x, y):
    logits, _ = model(x)  # (B, T, V)
    return cross_entropy(logits, y)


class BertClassifier(nnx.Module):
    """The MiniLM encoder with a linear head on its pooled [CLS] output (transformers'
    BertForSequenceClassification without dropout)."""

    def __init__(self, encoder: bert.BertModel, head: nnx.Linear):
        self.bert = encoder
        self.head = head

    def __call__(self, ids, type_ids, mask):  # each (B, T)
        _, pooled = self.bert(ids, type_ids, mask)  # (B, C)
        return self.head(pooled)  # (B, classes)


def bert_loss(model, ids, type_ids, mask, labels):
    return cross_entropy(model(ids, type_ids, mask), labels)


def _training(model: nnx.Module, loss, batch: tuple, precision: str) -> Workload:
    """`model` under the precision policy, optax.adamw (no decay on biases and norm scales),
    one value_and_grad step of `loss(model, *batch)`."""
    apply_policy(model, POLICIES[precision])
    tx = optax.adamw(spec.LR, weight_decay=spec.WEIGHT_DECAY, mask=optim.decay_mask)
    graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))

    def train_step(model, optimizer, *batch):
        value, grads = nnx.value_and_grad(loss)(model, *batch)
        optimizer.update(model, grads)
        return value

    return Workload(state, steps.jit_on_state(graphdef, train_step, donate=True), batch)


def mlp_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """The training_loop lab's model (its build_model) at the point's width."""
    cfg = charlm.Config(**spec.mlp_dims(point), seed=seed)
    model = lm.build_model(cfg, spec.CHAR_VOCAB, weights)
    return _training(model, mlp_loss, lm.as_arrays(*spec.mlp_batch(point, seed)), precision)


def lstm_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """The rnn lab's LSTM LM: our scan (lstm) or nnx.OptimizedLSTMCell under nnx.RNN
    (lstm-nn)."""
    model = recurrent.LSTMLM(
        spec.CHAR_VOCAB,
        spec.LSTM_EMBD,
        point.width,
        builtin=point.workload == "lstm-nn",
        rngs=nnx.Rngs(seed),
    )
    if weights is not None:
        set_weights(model, weights)
    batch = devices.to_device(*spec.lstm_batch(point, seed), dtype=jnp.int32)
    return _training(model, lstm_loss, batch, precision)


def bert_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """MiniLM with a 2-class head, from `weights` (Flax paths; default: spec.bert_weights
    converted by spec.BERT_MAP)."""
    if weights is None:
        weights = convert.torch_to_flax(spec.bert_weights(seed), spec.BERT_MAP)
    encoder = bert.from_weights(
        spec.BERT, {k[5:]: v for k, v in weights.items() if k.startswith("bert.")}
    )
    head = nnx.Linear(spec.BERT.hidden_size, spec.BERT_CLASSES, rngs=nnx.Rngs(seed))
    set_weights(head, {k[5:]: v for k, v in weights.items() if k.startswith("head.")})
    batch = devices.to_device(*spec.bert_batch(point, seed), dtype=jnp.int32)
    return _training(BertClassifier(encoder, head), bert_loss, batch, precision)


def word2vec_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """The word2vec lab's negative-sampling update (lib/embeddings) on one batch of pairs;
    fp32 only (labs/benchmark.py says why)."""
    state = embeddings.as_state(weights or spec.word2vec_weights(point, seed))
    batch = devices.to_device(*spec.word2vec_batch(point, seed))
    lr = np.float32(spec.W2V_LR)

    def step(state, *batch):
        w_in, w_out, loss = embeddings.negative_sampling_update(
            state["w_in"], state["w_out"], *batch, lr
        )
        return {"w_in": w_in, "w_out": w_out}, loss

    return Workload(state, jax.jit(step, donate_argnums=0), batch)


WORKLOADS = {
    "mlp": mlp_workload,
    "lstm": lstm_workload,
    "lstm-nn": lstm_workload,
    "bert": bert_workload,
    "word2vec": word2vec_workload,
}


def _matmul_precision(precision: str):
    """fp32 means fp32: JAX's GPU default rounds fp32 matmul inputs to TF32 (set while tracing)."""
    if precision == "fp32":
        return jax.default_matmul_precision("highest")
    return contextlib.nullcontext()


def losses_at(point: spec.Point, precision: str, weights, steps: int = 2, seed: int = 0) -> list:
    """The losses of the first `steps` steps of a point's workload from `weights` (Flax paths;
    for word2vec "w_in"/"w_out"): the parity tests compare them with torch's."""
    workload = WORKLOADS[point.workload](point, precision, seed, weights)
    state, out = workload.state, []
    with _matmul_precision(precision):
        for _ in range(steps):
            state, loss = workload.step(state, *workload.batch)
            out.append(float(loss))
    return out


def counted_flops(compiled) -> float | None:
    """XLA's count of the step's floating-point operations: cost_analysis of the compiled step
    (or of the lowered one, before optimisation: the same count to a fraction of a percent)."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis  # older jax: a list
    return (analysis or {}).get("flops")


def _memory(compiled) -> tuple[int, str]:
    """XLA's buffer plan for the step's executable, on any device: its arguments (parameters,
    optimizer state, batch), outputs and temporaries, less what donation aliases."""
    m = compiled.memory_analysis()
    total = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )
    return total, "xla plan"


def measure_point(cfg: spec.Config, point: spec.Point, precision: str, with_compile=False):
    """The jitted step of one point: compile time (lower + compile, apart), its median step,
    XLA's FLOPs and memory. One row (JAX has one variant; `with_compile` is torch's)."""
    workload = WORKLOADS[point.workload](point, precision, cfg.seed)
    start = time.perf_counter()
    with _matmul_precision(precision):
        compiled = workload.step.lower(workload.state, *workload.batch).compile()
    compile_s = time.perf_counter() - start
    state = workload.state

    def call():  # the state is donated: each call takes the one the last returned
        nonlocal state
        state, loss = compiled(state, *workload.batch)
        return state, loss

    start = time.perf_counter()
    devices.sync(call())
    first_s = time.perf_counter() - start
    warmup, iters = spec.repeats(cfg, first_s)
    # time_calls' own first call is one more warm-up call
    t = time_calls(call, devices.sync, warmup=max(warmup - 1, 0), iters=iters)
    memory, how = _memory(compiled)
    return [
        spec.row(
            point,
            "jax jit",
            precision,
            t,
            first_s=compile_s + first_s,
            compile_s=compile_s,
            counted_flops=counted_flops(compiled),
            memory_bytes=memory,
            memory_how=how,
        )
    ]


def dp_scaling(cfg: spec.Config) -> list[dict]:
    """The MLP on 1, 2, 4, 8 devices with a fixed batch per device: jit of the single-device
    step on a batch sharded over a `data` mesh axis, state replicated (XLA inserts the gradient
    all-reduce). Simulated CPU devices share the cores: a correctness run there."""
    available = jax.devices()
    on_gpu = available[0].platform != "cpu"
    point = spec.dp_point(on_gpu)
    loop_cfg = charlm.Config(**spec.mlp_dims(point), seed=cfg.seed)
    rows = []
    for n in [n for n in spec.DP_DEVICES if n <= len(available)]:
        mesh = parallel.mesh_of(available[:n], {"data": n})
        graphdef, params, tx, opt_state = parallel.init_state(loop_cfg, spec.CHAR_VOCAB)
        replicated, rows_split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        state = parallel.put_global((params, opt_state), replicated)
        x, y = spec.mlp_batch(dataclasses.replace(point, batch=n * point.batch), cfg.seed)
        batch = parallel.put_batch_rows(x, rows_split), parallel.put_batch_rows(y, rows_split)
        step = jax.jit(
            lambda state, x, y: parallel.train_step(graphdef, tx, *state, x, y)[:3],
            donate_argnums=0,
        )

        def call():
            nonlocal state
            params, opt_state, loss = step(state, *batch)
            state = params, opt_state
            return state, loss

        t = time_calls(call, devices.sync, warmup=cfg.warmup, iters=cfg.iters)
        rows.append(
            dict(
                framework="jax",
                devices=n,
                how="jit, sharded batch",
                per_device_batch=point.batch,
                median_s=t.median_s,
                first_s=t.first_s,
                simulated=not on_gpu,
            )
        )
    return rows


def loop_habits(cfg: spec.Config) -> list[dict]:
    """The training_loop model (its defaults) trained LOOP_STEPS steps two ways: `float(loss)`
    after every step without donation (the old loop), and the losses read every LOG_EVERY
    steps with the state donated (the loop now). ms per step, compilation excluded."""
    loop_cfg = charlm.Config(seed=cfg.seed)
    point = spec.Point("mlp", loop_cfg.n_hidden, loop_cfg.batch_size)
    batches = [spec.mlp_batch(point, cfg.seed + k) for k in range(spec.LOOP_STEPS + 1)]
    key = jax.random.key(cfg.seed)
    rows = []
    for habit, donate, every in (
        ("float(loss) every step", False, 1),
        (f"read every {spec.LOG_EVERY}, donated", True, spec.LOG_EVERY),
    ):
        model = lm.build_model(loop_cfg, spec.CHAR_VOCAB)
        graphdef, state = nnx.split((model, lm.make_optimizer(model, loop_cfg)))
        train_step = lm.make_train_step(graphdef, donate=donate)
        state, loss = train_step(state, key, *lm.as_arrays(*batches[0]))  # compiles
        float(loss)
        pending, start = [], time.perf_counter()
        for step in range(1, spec.LOOP_STEPS + 1):
            x, y = lm.as_arrays(*batches[step])
            state, loss = train_step(state, jax.random.fold_in(key, step), x, y)
            pending.append(loss)
            if step % every == 0:
                jax.device_get(pending)  # waits for the device, as float(loss) does
                pending = []
        devices.sync(state)
        seconds = (time.perf_counter() - start) / spec.LOOP_STEPS
        rows.append(dict(framework="jax", habit=habit, ms_per_step=seconds * 1e3))
    return rows


def device_name() -> str:
    device = devices.default_device()
    return f"{device.platform}:{device.device_kind} x{jax.device_count()}"


def _versions() -> dict:
    names = ("jax", "jaxlib", "flax", "optax")
    return {name: importlib.metadata.version(name) for name in names}


def measure(cfg: spec.Config, should_stop=None) -> dict:
    """Every point of the plan, then the DP and loop-habit rows: this framework's part of
    results.json (labs/benchmark.py)."""
    return spec.measure_part(
        cfg,
        should_stop,
        framework="jax",
        variant="jax jit",
        on_gpu=devices.default_device().platform != "cpu",
        device=device_name(),
        versions=_versions(),
        measure_point=measure_point,
        extras={"dp": dp_scaling, "habits": loop_habits},
    )


def run(cfg: spec.Config, run) -> dict:
    """`week1 run benchmark --framework jax`: both frameworks' sweeps (labs/benchmark.py)."""
    return spec.run_benchmark(cfg, run, "jax", measure)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench benchmark`: the quick sweep's MLP points."""
    quick = dataclasses.replace(cfg, quick=True, workloads="mlp", dp=False, habits=False)
    return spec.timings(measure(quick))
