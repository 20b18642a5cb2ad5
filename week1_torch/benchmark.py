"""Benchmark lab in torch: each workload's training step eager and under torch.compile, timed,
its FLOPs counted by FlopCounterMode, and data-parallel scaling with DDP under torchrun.

Read beside week1_jax/benchmark.py: the same functions in the same order. The sweep, the
analytic FLOP counts, the batches and the report are labs/benchmark.py's.
DDP worker processes (what dp_scaling launches):
    torchrun --standalone --nproc-per-node=N -m week1_torch.benchmark --out=DIR [--key=value]
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from labs import benchmark as spec
from week1 import charlm, timing
from week1.parallel import worker_args
from week1.timing import time_calls
from week1_torch.lib import (
    bert,
    devices,
    embeddings,
    optim,
    parallel,
    parallelize,
    precision,
    recurrent,
)
from week1_torch.lib import charlm as lm
from week1_torch.lib.models import set_weights

# No counterpart in JAX: the rank of a torchrun DDP group (JAX shards arrays in one process).
FRAMEWORK_ONLY = ("worker",)


class Workload(NamedTuple):
    """A training step: `step()` runs one eagerly (returns the loss, not synced);
    `compiled(mode)` builds the torch.compile'd step (compiled on its first call); `held()` the
    tensors it keeps between steps (parameters, gradients, optimizer state; or the matrices)."""

    model: nn.Module | None  # what the step trains (None: word2vec's bare matrices)
    step: Callable[[], torch.Tensor]
    compiled: Callable[[str | None], Callable[[], torch.Tensor]]
    held: Callable[[], list]


def cross_entropy(logits, labels):
    """Mean next-token cross-entropy over every position, in float32 (what autocast does for
    bf16 logits anyway; written out to match JAX's)."""
    logits = logits.float().reshape(-1, logits.shape[-1])  # (N, V)
    return F.cross_entropy(logits, labels.reshape(-1))


def mlp_loss(model, x, y):
    return cross_entropy(model(x), y)  # logits (B, V)


def lstm_loss(model, x, y):
    logits, _ = model(x)  # (B, T, V)
    return cross_entropy(logits, y)


class BertClassifier(nn.Module):
    """The MiniLM encoder with a linear head on its pooled [CLS] output (transformers'
    BertForSequenceClassification without dropout)."""

    def __init__(self, config, classes: int):
        super().__init__()
        self.bert = bert.BertModel(config)
        self.head = nn.Linear(config.hidden_size, classes)

    def forward(self, ids, type_ids, mask):  # each (B, T)
        _, pooled = self.bert(ids, type_ids, mask)  # (B, C)
        return self.head(pooled)  # (B, classes)


def bert_loss(model, ids, type_ids, mask, labels):
    return cross_entropy(model(ids, type_ids, mask), labels)


def _adamw_options() -> dict:
    """torch.optim.AdamW's fastest implementation: one fused kernel on a GPU and on a CPU (on a
    2-core CPU ~5x faster than foreach on MiniLM's 23M parameters, whose sqrt pass dominates);
    foreach (a few multi-tensor ops) on devices without the fused kernel."""
    fused = devices.default_device().type in ("cuda", "cpu")
    return {"fused": True} if fused else {"foreach": True}


def _training(model: nn.Module, loss, batch: tuple, precision_name: str, compile_loss=None):
    """torch.optim.AdamW (no decay on biases and norm scales) and one step of
    `loss(model, *batch)` under autocast; compiled: the loss (forward and, through
    AOTAutograd, backward) and the optimizer step each through torch.compile, or
    `compile_loss(mode)` where compiling the whole loss does not suit."""
    optimizer = torch.optim.AdamW(
        optim.param_groups(model, spec.WEIGHT_DECAY), lr=spec.LR, **_adamw_options()
    )
    device_type = devices.default_device().type

    def make(loss_fn, optimizer_step):
        def step():
            optimizer.zero_grad(set_to_none=True)
            with precision.autocast(precision_name, device_type):
                value = loss_fn(model, *batch)
            value.backward()
            optimizer_step()
            return value.detach()

        return step

    def compiled(mode):
        loss_fn = compile_loss(mode) if compile_loss else torch.compile(loss, mode=mode)
        return make(loss_fn, torch.compile(optimizer.step, mode=mode))

    def held():
        params = list(model.parameters())
        grads = [p.grad for p in params if p.grad is not None]
        moments = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        return params + grads + moments

    return Workload(model, make(loss, optimizer.step), compiled, held)


def mlp_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """The training_loop lab's model (its build_model, on the default device) at the point's
    width."""
    cfg = charlm.Config(**spec.mlp_dims(point), seed=seed)
    model = lm.build_model(cfg, spec.CHAR_VOCAB, weights)
    return _training(model, mlp_loss, lm.as_tensors(*spec.mlp_batch(point, seed)), precision)


def lstm_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """The rnn lab's LSTM LM: our Python loop over the steps (lstm; compiled: its cell, as
    lib/recurrent.compile_cells does, since a whole compiled layer unrolls T steps) or
    torch.nn.LSTM (lstm-nn, cuDNN on a GPU)."""
    torch.manual_seed(seed)
    builtin = point.workload == "lstm-nn"
    model = recurrent.LSTMLM(spec.CHAR_VOCAB, spec.LSTM_EMBD, point.width, builtin=builtin)
    if weights is not None:
        set_weights(model, weights)
    devices.place(model)
    batch = devices.to_device(*spec.lstm_batch(point, seed), dtype=torch.long)

    def compile_cells(mode):  # torch.compile's default mode for the cells
        recurrent.compile_cells(model)
        return lstm_loss

    return _training(
        model, lstm_loss, batch, precision, compile_loss=None if builtin else compile_cells
    )


def bert_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """MiniLM with a 2-class head, from `weights` (state_dict names; default:
    spec.bert_weights)."""
    model = BertClassifier(spec.BERT, spec.BERT_CLASSES)
    set_weights(model, spec.bert_weights(seed) if weights is None else weights)
    devices.place(model)
    ids, type_ids, mask, labels = devices.to_device(*spec.bert_batch(point, seed), dtype=torch.long)
    return _training(model, bert_loss, (ids, type_ids, mask, labels), precision)


def word2vec_workload(point: spec.Point, precision: str, seed: int, weights=None) -> Workload:
    """The word2vec lab's negative-sampling update (lib/embeddings, in place, no autograd) on
    one batch of pairs; fp32 only (labs/benchmark.py says why)."""
    state = embeddings.as_state(weights or spec.word2vec_weights(point, seed))
    inputs, in_weights, outputs, labels, out_weights = spec.word2vec_batch(point, seed)
    ids = devices.to_device(inputs, outputs, dtype=torch.long)
    floats = devices.to_device(in_weights, labels, out_weights)
    batch = (ids[0], floats[0], ids[1], floats[1], floats[2])

    def make(update):
        return lambda: update(state["w_in"], state["w_out"], *batch, spec.W2V_LR)

    return Workload(
        None,
        make(embeddings.negative_sampling_update),
        lambda mode: make(torch.compile(embeddings.negative_sampling_update, mode=mode)),
        lambda: list(state.values()),
    )


WORKLOADS = {
    "mlp": mlp_workload,
    "lstm": lstm_workload,
    "lstm-nn": lstm_workload,
    "bert": bert_workload,
    "word2vec": word2vec_workload,
}


@contextlib.contextmanager
def _matmul_precision(precision_name: str):
    """fp32 means fp32: TF32 off for cuBLAS and cuDNN (cuDNN's is on by default) while
    measuring; restored after."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if precision_name == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def losses_at(point: spec.Point, precision: str, weights, steps: int = 2, seed: int = 0) -> list:
    """The losses of the first `steps` steps of a point's workload from `weights` (state_dict
    names; for word2vec "w_in"/"w_out"): the parity tests compare them with JAX's."""
    workload = WORKLOADS[point.workload](point, precision, seed, weights)
    with _matmul_precision(precision):
        return [float(workload.step()) for _ in range(steps)]


def counted_flops(workload: Workload) -> float:
    """FlopCounterMode's count of one eager step (matmuls, convolutions, attention, forward
    and backward; kernels it has no formula for count nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        workload.step()
    return float(counter.get_total_flops())


def _memory(workload: Workload, rss_before: int | None) -> tuple[int | None, str]:
    """The step's memory: the CUDA caching allocator's peak since the reset on a GPU. A CPU
    allocator keeps no peak: there, the bytes of the tensors the step holds between calls plus
    the growth of the resident set during the timed calls (its activations and temporaries)."""
    if devices.default_device().type == "cuda":
        return torch.cuda.max_memory_allocated(), "allocator peak"
    peak = timing.rss_bytes("VmHWM")
    if not (peak and rss_before):
        return None, "not measurable here"
    held = sum(t.numel() * t.element_size() for t in workload.held())
    return held + max(peak - rss_before, 0), "held + rss growth"


def measure_point(cfg: spec.Config, point: spec.Point, precision_name: str, with_compile=False):
    """The eager step of one point (FlopCounterMode's FLOPs counted on it) and, with
    `with_compile`, the torch.compile'd step of a fresh copy: a row per variant."""
    on_gpu = devices.default_device().type == "cuda"
    rows = []
    for variant in ("torch eager", "torch.compile")[: 2 if with_compile else 1]:
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        workload = WORKLOADS[point.workload](point, precision_name, cfg.seed)
        counted = None
        if variant == "torch eager":
            counted = counted_flops(workload)
            step = workload.step
        else:
            step = workload.compiled(spec.compile_mode(cfg, on_gpu))
        with _matmul_precision(precision_name):
            start = time.perf_counter()
            devices.sync(step())  # the first call: compilation, the optimizer's state
            first_s = time.perf_counter() - start
            rss_before = timing.rss_bytes()
            timing.reset_peak_rss()
            warmup, iters = spec.repeats(cfg, first_s)
            # time_calls' own first call is one more warm-up call
            t = time_calls(step, devices.sync, warmup=max(warmup - 1, 0), iters=iters)
        memory, how = _memory(workload, rss_before)
        rows.append(
            spec.row(
                point,
                variant,
                precision_name,
                t,
                first_s=first_s,
                counted_flops=counted,
                memory_bytes=memory,
                memory_how=how,
            )
        )
        if variant == "torch.compile":
            torch._dynamo.reset()  # its caches hold this model: free it before the next point
    return rows


def dp_scaling(cfg: spec.Config) -> list[dict]:
    """The MLP in 1, 2, ... DDP processes (torchrun; gloo on a CPU, where 2 processes share the
    cores: a correctness run; nccl on the GPUs) with a fixed batch per process."""
    gpus = torch.cuda.device_count()
    counts = [n for n in spec.DP_DEVICES if n <= (gpus or 2)]
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for n in counts:
            parallel.torchrun(
                "week1_torch.benchmark",
                n,
                worker_args(cfg, out, "dp"),
                timeout_s=600,
            )
            numbers = parallel.load_result(pathlib.Path(out) / "dp")[2]
            rows.append(
                dict(
                    framework="torch",
                    devices=n,
                    how="DDP, torchrun",
                    per_device_batch=spec.dp_point(bool(gpus)).batch,
                    median_s=numbers["median_s"],
                    first_s=numbers["first_s"],
                    simulated=not gpus,
                )
            )
    return rows


def loop_habits(cfg: spec.Config) -> list[dict]:
    """The training_loop model (its defaults) trained LOOP_STEPS steps two ways: `float(loss)`
    after every step (the old loop), and the losses read every LOG_EVERY steps (the loop now).
    ms per step, the first (warm-up) step excluded."""
    loop_cfg = charlm.Config(seed=cfg.seed)
    point = spec.Point("mlp", loop_cfg.n_hidden, loop_cfg.batch_size)
    batches = [spec.mlp_batch(point, cfg.seed + k) for k in range(spec.LOOP_STEPS + 1)]
    rows = []
    for habit, every in (
        ("float(loss) every step", 1),
        (f"read every {spec.LOG_EVERY}", spec.LOG_EVERY),
    ):
        model = lm.build_model(loop_cfg, spec.CHAR_VOCAB)
        optimizer, scheduler = lm.make_optimizer(model, loop_cfg)
        float(lm.train_step(model, optimizer, scheduler, *lm.as_tensors(*batches[0])))
        pending, start = [], time.perf_counter()
        for step in range(1, spec.LOOP_STEPS + 1):
            x, y = lm.as_tensors(*batches[step])
            pending.append(lm.train_step(model, optimizer, scheduler, x, y))
            if step % every == 0:
                torch.stack(pending).cpu()  # waits for the device, as float(loss) does
                pending = []
        devices.sync()
        seconds = (time.perf_counter() - start) / spec.LOOP_STEPS
        rows.append(dict(framework="torch", habit=habit, ms_per_step=seconds * 1e3))
    return rows


def device_name() -> str:
    if devices.default_device().type == "cuda":
        return f"cuda:{torch.cuda.get_device_name()}"
    return f"{devices.default_device().type}, {torch.get_num_threads()} threads"


def _versions() -> dict:
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "-",
        "cudnn": str(torch.backends.cudnn.version() or "-"),
    }


def measure(cfg: spec.Config, should_stop=None) -> dict:
    """Every point of the plan, then the DP and loop-habit rows: this framework's part of
    results.json (labs/benchmark.py)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return spec.measure_part(
        cfg,
        should_stop,
        framework="torch",
        variant="torch eager",
        on_gpu=devices.default_device().type == "cuda",
        device=device_name(),
        versions=_versions(),
        measure_point=measure_point,
        extras={"dp": dp_scaling, "habits": loop_habits},
    )


def run(cfg: spec.Config, run) -> dict:
    """`week1 run benchmark --framework torch`: both frameworks' sweeps (labs/benchmark.py)."""
    return spec.run_benchmark(cfg, run, "torch", measure)


def bench(cfg: spec.Config) -> dict:
    """`week1 bench benchmark`: the quick sweep's MLP points."""
    quick = dataclasses.replace(cfg, quick=True, workloads="mlp", dp=False, habits=False)
    return spec.timings(measure(quick))


def worker(cfg: spec.Config, out_dir, mode: str = "dp") -> None:
    """One rank started by torchrun: the DP point's MLP under DDP on this rank's device, its
    own batch of the fixed per-device size; rank 0 writes the timing to out_dir/dp/."""
    with parallel.process_group() as device:
        point = spec.dp_point(device.type == "cuda")
        loop_cfg = charlm.Config(**spec.mlp_dims(point), seed=cfg.seed)
        model = devices.place(lm.build_model(loop_cfg, spec.CHAR_VOCAB), device)
        ddp = parallelize.apply_ddp(model, device)
        optimizer, scheduler = lm.make_optimizer(model, loop_cfg)
        batch = spec.mlp_batch(point, cfg.seed + dist.get_rank())
        x, y = lm.as_tensors(*batch, device=device)
        t = time_calls(
            lambda: lm.train_step(ddp, optimizer, scheduler, x, y),
            devices.sync,
            warmup=cfg.warmup,
            iters=cfg.iters,
        )
        if dist.get_rank() == 0:
            parallel.save_result(
                pathlib.Path(out_dir) / mode, [], first_s=t.first_s, median_s=t.median_s
            )


if __name__ == "__main__":
    parallel.worker_main(worker, spec.Config, sys.argv[1:])
