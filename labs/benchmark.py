"""Lab: performance benchmarking: JAX jit, torch eager, torch.compile; dispatch- to compute-bound.

Each workload swept in size, with model FLOP utilisation (MFU) and data-parallel scaling.

What it teaches
---------------
A training step costs max(work, overhead), roughly. The *work* is the arithmetic (FLOPs)
and memory traffic of the maths; the *overhead* is everything around it: Python, the
framework's dispatch of each operation, kernel launches, synchronisation. A small model
is *dispatch-bound*: its step time is a floor that does not move when the model grows,
and what is measured is the framework, not the hardware. A large model is
*compute-bound*: its step time grows with its FLOPs and what is measured is the kernels.
The other labs' 73k-parameter workloads all sit on the floor. This lab sweeps each
workload in size across the two regimes:

- `mlp`: the training_loop lab's character MLP (week1_*/lib/models.CharMLP and that lab's
  build_model/loss), one AdamW step, n_hidden 256 -> 8192 with the batch growing alongside;
  the embedding is n_hidden / 8 wide so the concatenated context is as wide as the hidden
  layer (a square matmul: the shape hardware is built for);
- `lstm` and `lstm-nn`: the rnn lab's LSTM language model (week1_*/lib/recurrent.LSTMLM),
  T = 128 steps, H 128 -> 1024: `lstm` is the from-scratch layer (a `lax.scan` in JAX, a
  Python loop over the steps in torch), `lstm-nn` each framework's built-in
  (`nnx.OptimizedLSTMCell` under `nnx.RNN`; `torch.nn.LSTM`, cuDNN on a GPU);
- `bert`: the pretrained_embeddings lab's MiniLM encoder (week1_*/lib/bert.py, 6 layers,
  384 wide) with a 2-class head on its pooled output, one fine-tuning step of every weight,
  sequence 128, batch 8 -> 128 (random weights of the packaged model's shape: the time does
  not depend on the values, and a GPU box needs no data package);
- `word2vec`: the word2vec lab's skip-gram negative-sampling update
  (week1_*/lib/embeddings.negative_sampling_update), a batch of (centre, context) pairs with
  5 negatives each over a 50,000-word, 100-dimension vocabulary: sparse, memory-bound work
  with no optimizer state. fp32 only: a plain SGD update of bf16 rows would lose every
  lr * gradient below bf16's resolution of the weights (no master copy to keep them).

Each point is one training step in JAX jit (state donated), torch eager and torch.compile
(`max-autotune` on a GPU in the full sweep; compiling the model's loss and the optimizer
step), in fp32 (TF32 off on both sides) and bf16 (JAX compute policy with fp32 master
weights; torch.autocast). Both optimizers are the frameworks' own AdamW (optax.adamw;
torch.optim.AdamW with its fused kernel): the adamw lab's subject is writing one,
this lab's is what a user runs. Both frameworks are measured in a process of their own
(`--isolate`), as `week1 bench` does, so neither inherits the other's threads, caches or
allocator.

The figures per point, timed the same way in both frameworks (week1/timing.py): the step
time is device time, `iters` steps queued back to back and one wait for the device (the
median of three such batches), the way a training loop that never reads a value back runs;
the latency (`latency_s` in results.json) is one step and its wait, every time, dispatch and
the host's round trip included. A point whose latency is far above its step time is
dispatch-bound. The first call apart (it includes compilation: XLA's, or
torch.compile's); tokens per second (rows for the MLP, pairs for word2vec); peak memory
(on a GPU torch's allocator peak and XLA's buffer plan for the JAX executable; on a CPU the
growth of the process's resident set during the step, noisy); and MFU: the model FLOPs per
step counted analytically (`model_flops` below), over the step time, over a peak: the
datasheet's dense peak (week1.timing.DATASHEET_TFLOPS, e.g. 989 TFLOP/s bf16 on an
H100/H200) and the peak the gpu_basics lab measured on the same machine (`--peaks`). The
analytic count is checked against XLA's `cost_analysis()` and torch's `FlopCounterMode`
(agree within 10%, or the FLOP table says why: XLA counts the body of a `lax.scan` once,
not T times; elementwise work and the optimizer are in XLA's count and not in the model's;
torch's counter sees no FLOPs in cuDNN's fused LSTM). An MFU above 60% at these sizes is a
counting error until proven otherwise.

Two more tables. *Loop habits*: the training_loop lab's model trained 50 steps with
`float(loss)` after every step (a device sync per step) against the habits the training
loops now follow (losses kept on the device and read every 50 steps; JAX donates the
state). On a CPU the sync is nearly free; on a GPU the per-step sync drains the launch
queue. *Data-parallel scaling*: the MLP with a fixed batch per device on 1, 2, 4, 8 devices
(JAX jit over a NamedSharding mesh; torch DDP under torchrun). On a CPU these are simulated
XLA devices and gloo processes sharing the same cores: a correctness run, not a speed claim.

How to read the results
-----------------------
- step_time.png: ms per step against model GFLOP per step, log-log, one panel per
  workload. Flat on the left (dispatch-bound), slope 1 on the right (compute-bound). The
  cross marks each curve's crossover: the fit t = a + W / r (a: the overhead floor, r: the
  sustained FLOP rate, W: the work) crosses from a-dominated to W/r-dominated at W = a r.
- ratio.png: torch's step time over JAX's at the same size and precision (1 = equal;
  above 1 JAX is faster). Expect torch eager's dispatch to cost most on the small sizes and
  the ratios to approach 1 where the matmuls dominate (on a GPU both call cuBLAS; on a CPU
  XLA's and torch's matmul libraries differ, and so do their threads).
- The per-workload tables: `/jax` is that ratio, `first s` the first call with its
  compilation, `MFU` on a GPU. "where each framework wins" names the fastest variant at each
  size.
- dp_scaling.png: weak-scaling efficiency t(1 device) / t(N devices) at a fixed batch per
  device (1 = perfect).
- On a busy or small CPU the absolute times move from run to run: compare the ratios
  measured in one run, and give both frameworks the same threads (`--threads=1` on a shared
  machine: torch's OpenMP threads otherwise spin against other processes).

Where a framework loses, and why (read from profiles: `torch.profiler`, `jax.profiler`, the
profiling lab's `week1 profile training_loop --framework F` for the MLP's step in phases)
------------------------------------------------------------------------------------------
- Small sizes, torch eager: one step of the MLP is some thirty operations (forward,
  backward, AdamW), each dispatched from Python; JAX runs one compiled executable.
  torch.compile removes most of the gap; its guards and the Python around its graphs remain.
- The from-scratch LSTM in torch is a Python loop over the T steps: a profile of one step
  counts thousands of aten calls (a handful of small matmuls and elementwise ops per time
  step, forward and backward), so it stays dispatch-bound until the batch is large. JAX's
  `lax.scan` is one compiled loop. torch.nn.LSTM (one operation per layer, cuDNN on a GPU)
  narrows the gap; compiling (`compile_cells`) fuses a time step's gate arithmetic only.
- AdamW on MiniLM's 23M parameters (12M of them the word embeddings): torch's `foreach`
  AdamW spends most of a CPU step in its square-root pass (aten::sqrt tops the profile); the
  fused kernel, which this lab uses, is several times faster. XLA fuses the whole update.
- word2vec is sparse row traffic (gathers, `index_add_` / `.at[].add`): no matmul to speak
  of, so MFU is meaningless there; at large batches XLA's CPU scatter is slower than
  torch's index_add_, at small ones torch eager pays the dispatch of a dozen operations.
- bf16 on a CPU: most CPUs have no bf16 matrix units (or only some kernels use them), so
  bf16 is often slower than fp32 there; the comparison that matters is on a GPU.

Published figures come from results.json files, one per machine, with the machine's
description (CPU, GPU, driver, versions): `week1 results RESULTS.json ... --out
docs/results.md` writes docs/results.md from them (week1/commands/results.py).

Run it:  week1 run benchmark --quick                              (both frameworks; sized
         for a few minutes on 2 CPU cores; --threads=1 on a shared machine)
         week1 run benchmark --framework jax                       (the full sweep, for a GPU)
         week1 bench benchmark                                     (the MLP points, as a table)
         week1 results runs/benchmark-*/results.json --out docs/results.md

History: docs/history.md#frameworks-2016, #krizhevsky-2012
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zlib

import numpy as np

from week1 import convert
from week1 import report as show
from week1.config import Range, as_dict, require
from week1.data.minilm import BertConfig
from week1.exercises import Exercise, Part
from week1.machine import thread_env
from week1.parallel import config_args
from week1.runs import one_line
from week1.timing import Timing, datasheet_peak, flops_agree, mfu

WORKLOADS = ("mlp", "lstm", "lstm-nn", "bert", "word2vec")
PRECISIONS = ("fp32", "bf16")
FRAMEWORKS = ("jax", "torch")
VARIANTS = ("jax jit", "torch eager", "torch.compile")
COMPILE_MODES = ("auto", "default", "max-autotune", "max-autotune-no-cudagraphs")
MULTI_DEVICE = True  # the CLI gives JAX 8 simulated CPU devices (the DP rows) before it starts

CHAR_VOCAB = 83  # the training_loop corpus's characters (`week1 prepare training_loop`)
MLP_CONTEXT = 8  # characters of context, training_loop's block_size
LSTM_EMBD = 64  # character embedding width of the LSTM LM
BERT = BertConfig()  # all-MiniLM-L6-v2's shape
BERT_SEQ, BERT_CLASSES = 128, 2
W2V_VOCAB, W2V_DIM, W2V_NEGATIVE = 50_000, 100, 5  # gensim's default vector size and negatives
LR, WEIGHT_DECAY, W2V_LR = 1e-3, 0.01, 0.025
LOOP_STEPS, LOG_EVERY = 50, 50  # the loop-habits rows (the training loops read every 50 too)
FULL_ON_CPU = (
    "note: the full sweep is sized for a GPU (its largest MLP step is teraFLOPs): on a CPU it "
    "runs for hours; --quick=true is the CPU sweep"
)

BOTH_FRAMEWORKS = True  # `week1 run benchmark` needs no --framework: it measures both

# (width, batch) per point; "quick-cpu" fits 5 minutes for both frameworks on 2 cores,
# "quick-gpu" scripts/gpu_check.sh's 120 s on an H200, compiles included (each point is a
# compile per framework and precision, seconds each for XLA: the MLP's two ends, one size of the
# others), "full" is the sweep for a GPU.
SWEEPS = {
    "mlp": {
        "quick-cpu": [(32, 8), (64, 16), (128, 32), (256, 64), (512, 128), (1024, 256),
                      (2048, 512)],
        "quick-gpu": [(256, 64), (8192, 8192)],
        "full": [(256, 64), (512, 128), (1024, 256), (2048, 512), (4096, 1024), (4096, 2048),
                 (8192, 8192)],
    },
    "lstm": {
        "quick-cpu": [(64, 16), (256, 16)],
        "quick-gpu": [(1024, 64)],
        "full": [(128, 64), (256, 64), (512, 64), (1024, 64)],
    },
    "bert": {
        "quick-cpu": [(BERT.hidden_size, 1)],
        "quick-gpu": [(BERT.hidden_size, 64)],
        "full": [(BERT.hidden_size, b) for b in (8, 16, 32, 64, 128)],
    },
    "word2vec": {
        "quick-cpu": [(W2V_DIM, 1024), (W2V_DIM, 8192), (W2V_DIM, 65536)],
        "quick-gpu": [(W2V_DIM, 4096), (W2V_DIM, 262144)],
        "full": [(W2V_DIM, b) for b in (1024, 4096, 16384, 65536, 262144)],
    },
}  # fmt: skip
SWEEPS["lstm-nn"] = SWEEPS["lstm"]
SEQ = {"mlp": MLP_CONTEXT, "lstm": 128, "lstm-nn": 128, "bert": BERT_SEQ, "word2vec": 1}
# The DP rows: the MLP's (width, batch per device) and the device counts.
DP_POINT = {"cpu": (256, 64), "gpu": (2048, 512)}
DP_DEVICES = (1, 2, 4, 8)


@dataclasses.dataclass(frozen=True)
class Config:
    quick: bool = False  # the short sweep (minutes on 2 CPU cores); the full one is for a GPU
    workloads: str = ",".join(WORKLOADS)  # comma-separated, of WORKLOADS
    precisions: str = ",".join(PRECISIONS)  # fp32 (TF32 off), bf16 (policy / autocast)
    frameworks: str = ",".join(FRAMEWORKS)  # which to measure
    compiled: bool = True  # add torch.compile rows (the quick sweeps: on the MLP only)
    compile_mode: str = "auto"  # auto: max-autotune on a GPU in the full sweep, else default
    dp: bool = True  # data-parallel scaling rows (simulated on a CPU: a correctness run)
    habits: bool = True  # the loop-habits rows: float(loss) per step vs reads every 50
    max_points: int = 0  # the first N sizes of each sweep (0: all of them)
    warmup: int = 2  # calls after the first, not timed
    iters: int = 10  # timed calls per point (their median is the figure)
    threads: int = 0  # CPU threads for each framework (0: the frameworks' own defaults)
    peaks: str = "auto"  # measured peaks: a gpu_basics run folder, auto (newest beside), none
    isolate: bool = True  # each framework in a fresh process (false: --framework's, here)
    seed: int = 0

    RANGES = {
        "max_points": Range(0, 100),
        "warmup": Range(0, 1000),
        "iters": Range(1, 10_000),
        "threads": Range(0, 1024),
    }

    def check(self) -> None:
        for field, allowed in (
            ("workloads", WORKLOADS),
            ("precisions", PRECISIONS),
            ("frameworks", FRAMEWORKS),
        ):
            names = _names(getattr(self, field))
            require(names, f"{field}={getattr(self, field)!r}: name at least one")
            for name in names:
                require(
                    name in allowed,
                    f"{field}={getattr(self, field)!r}: {name!r} is not one of "
                    f"{', '.join(allowed)}",
                )
        require(
            self.compile_mode in COMPILE_MODES,
            f"compile_mode={self.compile_mode!r}: allowed: {', '.join(COMPILE_MODES)}",
        )
        require(
            self.peaks in ("auto", "none") or (pathlib.Path(self.peaks) / "summary.json").exists(),
            f"peaks={self.peaks!r}: expected auto, none or a gpu_basics run folder (with a "
            "summary.json)",
        )

    @property
    def workload_list(self) -> list[str]:
        return _names(self.workloads)

    @property
    def precision_list(self) -> list[str]:
        return _names(self.precisions)

    @property
    def framework_list(self) -> list[str]:
        return _names(self.frameworks)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# ---------------------------------------------------------------------------------------------
# The sweep: points, and what each costs (analytic counts)


@dataclasses.dataclass(frozen=True)
class Point:
    """One size of one workload."""

    workload: str
    width: int  # n_hidden (mlp, lstm), hidden size (bert), vector size (word2vec)
    batch: int  # rows (mlp), sequences (lstm, bert), (centre, context) pairs (word2vec)

    @property
    def seq(self) -> int:
        return SEQ[self.workload]

    @property
    def label(self) -> str:
        if self.workload in ("mlp", "lstm", "lstm-nn"):
            return f"H={self.width} B={self.batch}"
        return f"B={self.batch}" + (f" T={self.seq}" if self.workload == "bert" else "")

    @property
    def tokens(self) -> int:
        """What a step consumes: predicted characters (mlp, lstm), tokens (bert), pairs."""
        return self.batch * self.seq

    @property
    def flops(self) -> float:
        return model_flops(self)


def model_flops(p: Point) -> float:
    """The model FLOPs of one training step: 3 x the forward pass's matmul FLOPs (the backward
    pass costs twice the forward: a product for the inputs' gradient, one for the weights').

    2 FLOPs per multiply-add; embedding lookups, elementwise work, LayerNorm, softmax and the
    optimizer are not counted (the MFU convention, see week1.timing).
      mlp:      (B, T*C) x (T*C, H) and (B, H) x (H, V), C = H / 8, T = 8
      lstm:     per step (B, C) x (C, 4H) and (B, H) x (H, 4H), then (B, H) x (H, V)
      bert:     per layer Q, K, V, O (C x C each), FFN C x 4C x 2, attention QK^T and PV
                (2 x 2 B T^2 C); pooler C x C and the head C x classes once per sequence
      word2vec: the update is written out, not differentiated (week1_*/lib/embeddings): its
                three contractions h = a.W_in (2BSC), f = h.W_out (2BKC) and dh = g.W_out
                (2BKC), K = 1 + negatives output rows, S = 1 input row.
    """
    B, H, T = p.batch, p.width, p.seq
    if p.workload == "mlp":
        C = H // MLP_CONTEXT
        return 3 * 2 * B * (T * C * H + H * CHAR_VOCAB)
    if p.workload in ("lstm", "lstm-nn"):
        return 3 * 2 * B * T * (LSTM_EMBD * 4 * H + H * 4 * H + H * CHAR_VOCAB)
    if p.workload == "bert":
        C, inner, layers = H, BERT.intermediate_size, BERT.num_hidden_layers
        per_layer = 2 * B * T * (4 * C * C + 2 * C * inner) + 2 * 2 * B * T * T * C
        return 3 * (layers * per_layer + 2 * B * C * C + 2 * B * C * BERT_CLASSES)
    K = 1 + W2V_NEGATIVE
    return 2 * B * H + 2 * (2 * B * K * H)


def mlp_dims(p: Point) -> dict:
    """The training_loop Config fields of an MLP point (dropout off, as the labs time it)."""
    return dict(
        n_hidden=p.width,
        n_embd=p.width // MLP_CONTEXT,
        block_size=MLP_CONTEXT,
        batch_size=p.batch,
        dropout=0.0,
    )


def sweep_kind(cfg: Config, on_gpu: bool) -> str:
    return ("quick-gpu" if on_gpu else "quick-cpu") if cfg.quick else "full"


def plan(cfg: Config, on_gpu: bool) -> list[tuple[Point, str, bool]]:
    """(point, precision, with torch.compile) for every measurement, smallest sizes first.

    The quick sweeps compile with torch.compile only on the MLP (10-35 s to compile a train
    step on 2 cores, tens of seconds on a GPU): at both ends of its sweep in fp32 on a CPU, at
    its largest size in bf16 on a GPU (where MFU is measured). The quick CPU sweep keeps bf16
    (slow on most CPUs) to the ends of the MLP's sweep too; the quick GPU sweep to the MLP and
    BERT (the recurrent steps are latency-bound at these sizes: bf16 shows nothing there).
    """
    kind = sweep_kind(cfg, on_gpu)
    out = []
    for workload in cfg.workload_list:
        sizes = SWEEPS[workload][kind]
        sizes = sizes[: cfg.max_points] if cfg.max_points else sizes
        for i, (width, batch) in enumerate(sizes):
            point = Point(workload, width, batch)
            mlp = workload == "mlp"
            ends, last = i in (0, len(sizes) - 1), i == len(sizes) - 1
            for precision in cfg.precision_list:
                if precision == "bf16" and (
                    workload == "word2vec"
                    or (kind == "quick-cpu" and not (mlp and ends))
                    or (kind == "quick-gpu" and workload not in ("mlp", "bert"))
                ):
                    continue
                with_compile = kind == "full" or (
                    mlp
                    and (
                        (kind == "quick-cpu" and ends and precision == "fp32")
                        or (kind == "quick-gpu" and last and precision == "bf16")
                    )
                )
                out.append((point, precision, cfg.compiled and with_compile))
    return out


QUICK_SLOW_S = 0.2  # in the quick sweep a step slower than this is timed 3 times, not `iters`


def repeats(cfg: Config, first_s: float) -> tuple[int, int]:
    """(warm-up calls, timed calls) for a point whose first call (after any compilation) took
    `first_s`: the quick sweep spends its minutes on many sizes rather than on repeating slow
    steps (their median moves little: a long step averages out short noise itself)."""
    if cfg.quick and first_s > QUICK_SLOW_S:
        return min(cfg.warmup, 1), min(cfg.iters, 3)
    return cfg.warmup, cfg.iters


def compile_mode(cfg: Config, on_gpu: bool) -> str | None:
    """torch.compile's mode: max-autotune (autotuned matmul kernels, CUDA graphs) on a GPU in
    the full sweep; the default elsewhere (its autotuning takes minutes per graph)."""
    if cfg.compile_mode == "auto":
        return "max-autotune" if on_gpu and not cfg.quick else None
    return None if cfg.compile_mode == "default" else cfg.compile_mode


def dp_point(on_gpu: bool) -> Point:
    width, batch = DP_POINT["gpu" if on_gpu else "cpu"]
    return Point("mlp", width, batch)


# ---------------------------------------------------------------------------------------------
# Data and weights: numpy, seeded, the same for both frameworks


def rng(seed: int, *key) -> np.random.Generator:
    """A generator seeded by (seed, key...): the keys through crc32, stable across processes
    (str hashes are salted per process)."""
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in key)])


def mlp_batch(p: Point, seed: int):
    """x (B, T) character ids, y (B,) the next character: random ids, the corpus's vocabulary
    (the time of a step does not depend on the values)."""
    g = rng(seed, "mlp", p.batch)
    return (
        g.integers(0, CHAR_VOCAB, (p.batch, p.seq), dtype=np.int32),
        g.integers(0, CHAR_VOCAB, (p.batch,), dtype=np.int32),
    )


def lstm_batch(p: Point, seed: int):
    """x, y (B, T) character ids: y is x shifted by one, as in the rnn lab's LM."""
    ids = rng(seed, "lstm", p.batch).integers(0, CHAR_VOCAB, (p.batch, p.seq + 1), dtype=np.int32)
    return ids[:, :-1], ids[:, 1:]


def bert_batch(p: Point, seed: int):
    """ids, type_ids, mask (B, T) and labels (B,): texts of random lengths 8..T, right-padded."""
    g = rng(seed, "bert", p.batch)
    T = p.seq
    lengths = g.integers(8, T + 1, p.batch)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int32)  # (B, T)
    ids = g.integers(1000, BERT.vocab_size, (p.batch, T), dtype=np.int32) * mask  # pad id 0
    labels = g.integers(0, BERT_CLASSES, (p.batch,), dtype=np.int32)
    return ids, np.zeros_like(ids), mask, labels


@functools.lru_cache(maxsize=2)
def bert_weights(seed: int) -> dict[str, np.ndarray]:
    """The classifier's weights by torch state_dict name (bert.* and head.*): BERT's init,
    normal(0, 0.02) matrices, zero biases, LayerNorm (1, 0). Built once per seed: 23M numbers."""
    shapes = _bert_shapes()
    g = rng(seed, "bert weights")
    weights = {}
    for name, shape in shapes.items():
        if name.endswith("LayerNorm.weight"):
            weights[name] = np.ones(shape, np.float32)
        elif name.endswith("bias"):
            weights[name] = np.zeros(shape, np.float32)
        else:
            weights[name] = (0.02 * g.standard_normal(shape, np.float32)).astype(np.float32)
    return weights


def _bert_shapes() -> dict[str, tuple]:
    C, inner = BERT.hidden_size, BERT.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (BERT.vocab_size, C),
        "embeddings.position_embeddings.weight": (BERT.max_position_embeddings, C),
        "embeddings.token_type_embeddings.weight": (BERT.type_vocab_size, C),
        "embeddings.LayerNorm.weight": (C,),
        "embeddings.LayerNorm.bias": (C,),
        "pooler.dense.weight": (C, C),
        "pooler.dense.bias": (C,),
    }
    layer = {
        "attention.self.query": (C, C),
        "attention.self.key": (C, C),
        "attention.self.value": (C, C),
        "attention.output.dense": (C, C),
        "intermediate.dense": (inner, C),
        "output.dense": (C, inner),
    }
    for i in range(BERT.num_hidden_layers):
        for name, (out, inp) in layer.items():
            shapes[f"encoder.layer.{i}.{name}.weight"] = (out, inp)
            shapes[f"encoder.layer.{i}.{name}.bias"] = (out,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"encoder.layer.{i}.{norm}.weight"] = (C,)
            shapes[f"encoder.layer.{i}.{norm}.bias"] = (C,)
    shapes = {f"bert.{k}": v for k, v in shapes.items()}
    return {**shapes, "head.weight": (BERT_CLASSES, C), "head.bias": (BERT_CLASSES,)}


# torch state_dict name <-> Flax path of the BERT classifier: MiniLM's table under `bert.`, and
# the head.
BERT_MAP = tuple((f"bert.{t}", f"bert.{f}", how) for t, f, how in convert.MINILM) + (
    ("head.weight", "head.kernel", convert.TRANSPOSE),
    ("head.bias", "head.bias", convert.SAME),
)


def word2vec_weights(p: Point, seed: int) -> dict[str, np.ndarray]:
    """W_in uniform in +-0.5/C (word2vec.c's init), W_out small normal (word2vec.c starts it at
    zero, which would make every score 0 and the parity check blind)."""
    g = rng(seed, "word2vec weights")
    C = p.width
    return {
        "w_in": ((g.random((W2V_VOCAB, C), np.float32) - 0.5) / C).astype(np.float32),
        "w_out": (0.01 * g.standard_normal((W2V_VOCAB, C), np.float32)).astype(np.float32),
    }


def word2vec_batch(p: Point, seed: int):
    """One negative-sampling batch in week1.data.embeddings.Batch's layout: each row a centre
    word (S = 1 input of weight 1) against its context (label 1) and 5 negatives (label 0)."""
    g = rng(seed, "word2vec", p.batch)
    B, K = p.batch, 1 + W2V_NEGATIVE
    inputs = g.integers(0, W2V_VOCAB, (B, 1), dtype=np.int32)
    outputs = g.integers(0, W2V_VOCAB, (B, K), dtype=np.int32)
    labels = np.zeros((B, K), np.float32)
    labels[:, 0] = 1.0
    return inputs, np.ones((B, 1), np.float32), outputs, labels, np.ones((B, K), np.float32)


# ---------------------------------------------------------------------------------------------
# Rows: one measurement, as both frameworks report it


def row(point: Point, variant: str, precision: str, timing: Timing | None, **extra) -> dict:
    """A measurement as results.json holds it (timing None: the point failed, `error` says
    why)."""
    out = {
        "workload": point.workload,
        "size": point.label,
        "width": point.width,
        "batch": point.batch,
        "seq": point.seq,
        "variant": variant,
        "framework": variant.split()[0].split(".")[0],
        "precision": precision,
        "tokens": point.tokens,
        "flops": point.flops,
    }
    if timing is not None:
        out.update(median_s=timing.median_s, latency_s=timing.latency_s,
                   first_s=timing.first_s, iters=timing.iters)  # fmt: skip
    return {**out, **extra}


def failed(framework: str, what: str, error: str) -> dict:
    """The row of a DP or loop-habits measurement that failed (both tables can show it)."""
    return dict(framework=framework, devices=0, how=f"{what} failed", habit=f"{what} failed",
                ms_per_step=None, error=error)  # fmt: skip


def timings(part: dict) -> dict[str, Timing]:
    """A framework's rows as `week1 bench` timings: "<variant> <precision> H<width>" -> Timing
    (the MLP's points: at most 24 characters)."""
    out = {}
    for r in part["rows"]:
        if "median_s" in r:
            name = f"{r['variant']} {r['precision']} H{r['width']}"
            memory = {"peak": r["memory_bytes"]} if r.get("memory_bytes") else {}
            out[name] = Timing(r["first_s"], r["median_s"], r["iters"], memory)
    return out


# ---------------------------------------------------------------------------------------------
# Peaks and derived figures


def measured_peaks(cfg: Config, runs_root: pathlib.Path) -> dict:
    """{precision: FLOP/s} the gpu_basics lab measured: its largest matmul rate per dtype, the
    best over its runs' newest per framework (`--peaks=auto`), or from the given run folder."""
    if cfg.peaks == "none":
        return {}
    if cfg.peaks == "auto":
        found = {}
        for summary in sorted(runs_root.glob("gpu_basics-*/summary.json")):
            found[summary.parent.name.split("-")[1]] = summary  # newest per framework last
        folders = [s.parent for s in found.values()]
    else:
        folders = [pathlib.Path(cfg.peaks)]
    peaks = {}
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        if summary.get("status") != "ok":
            continue
        for precision in PRECISIONS:
            value = summary.get(f"{precision} peak TFLOP/s")
            if value:
                peaks[precision] = max(peaks.get(precision, 0.0), value * 1e12)
    return peaks


def derive(document: dict) -> None:
    """Add tokens/s, achieved TFLOP/s, MFU (datasheet, measured), the FLOP check and the torch /
    JAX ratio to every row, in place."""
    measured = document.get("measured_peaks", {})
    jax_times = {
        (r["workload"], r["size"], r["precision"]): r["median_s"]
        for r in document["rows"]
        if r["framework"] == "jax" and "median_s" in r
    }
    for r in document["rows"]:
        if "median_s" not in r:
            continue
        device = document["frameworks"].get(r["framework"], {}).get("device", "")
        r["tokens_per_s"] = r["tokens"] / r["median_s"]
        r["tflops"] = r["flops"] / r["median_s"] / 1e12
        r["mfu_datasheet"] = mfu(r["flops"], r["median_s"], datasheet_peak(device, r["precision"]))
        r["mfu_measured"] = mfu(r["flops"], r["median_s"], measured.get(r["precision"]))
        r["flops_agree"] = flops_agree(r["flops"], r.get("counted_flops"))
        base = jax_times.get((r["workload"], r["size"], r["precision"]))
        r["vs_jax"] = r["median_s"] / base if base else None
    for d in document.get("dp", []):
        one = next(
            (x for x in document["dp"] if x["framework"] == d["framework"] and x["devices"] == 1),
            None,
        )
        d["efficiency"] = one["median_s"] / d["median_s"] if one and "median_s" in d else None


def crossover(flops: list[float], seconds: list[float]) -> tuple[float, float] | None:
    """Fit t = a + W / r to (W, t) by least squares on relative errors; return (W*, t*) where
    the two terms are equal (W* = a r, t* = 2a), or None with fewer than 3 points, without a
    positive floor and rate, or when W* lies outside the measured range.

    Below W* the step is dispatch-bound (the floor a dominates), above it compute-bound.
    """
    if len(flops) < 3:
        return None
    W, t = np.asarray(flops, np.float64), np.asarray(seconds, np.float64)
    A = np.stack([1.0 / t, W / t], axis=1)  # rows (1/t_i, W_i/t_i): (a + b W_i) / t_i = 1
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    if a <= 0 or b <= 0 or not W.min() <= a / b <= W.max():
        return None
    return a / b, 2 * a


def curves(document: dict, workload: str) -> dict[str, tuple[list, list]]:
    """ "<variant> <precision>" -> (GFLOP per step, ms) of a workload, by size."""
    out = {}
    for r in document["rows"]:
        if r["workload"] == workload and "median_s" in r:
            xs, ys = out.setdefault(f"{r['variant']} {r['precision']}", ([], []))
            xs.append(r["flops"] / 1e9)
            ys.append(r["median_s"] * 1e3)
    return out


def winners(document: dict) -> list[str]:
    """Per workload and precision: the fastest variant at each size, runs of sizes merged
    ("mlp fp32: jax jit at H=128..H=512, torch.compile at H=1024..H=2048")."""
    lines = []
    for workload in dict.fromkeys(r["workload"] for r in document["rows"]):
        for precision in PRECISIONS:
            measured = [
                r
                for r in document["rows"]
                if r["workload"] == workload and r["precision"] == precision and "median_s" in r
            ]
            best = {}
            for r in measured:
                if r["size"] not in best or r["median_s"] < best[r["size"]]["median_s"]:
                    best[r["size"]] = r
            if not best:
                continue
            runs = []  # [variant, first size, last size]
            for size, r in best.items():
                if runs and runs[-1][0] == r["variant"]:
                    runs[-1][2] = size
                else:
                    runs.append([r["variant"], size, size])
            parts = [f"{v} at {a}" + ("" if a == b else f"..{b}") for v, a, b in runs]
            lines.append(f"{workload} {precision}: {', '.join(parts)}")
    return lines


# ---------------------------------------------------------------------------------------------
# The run: each framework in a process of its own, one report


def measure_part(
    cfg: Config,
    should_stop,
    *,
    framework: str,
    variant: str,
    on_gpu: bool,
    device: str,
    versions: dict,
    measure_point,
    extras: dict,
) -> dict:
    """A framework's part of results.json: every point of the plan (`measure_point(cfg, point,
    precision, with_compile)` -> rows; a failed point becomes a `variant` row with its error),
    then the DP and loop-habit rows (`extras`: {"dp": fn(cfg), "habits": fn(cfg)} -> rows; a
    failure becomes one row). `should_stop` (None: never) ends it before the next point."""
    stop = lambda: should_stop is not None and should_stop()
    if not (on_gpu or cfg.quick):
        show.console.print(FULL_ON_CPU, highlight=False)
    todo = plan(cfg, on_gpu)
    rows = []
    with show.progress(framework, total=len(todo)) as advance:
        for point, precision, with_compile in todo:
            if stop():
                break
            try:
                rows += measure_point(cfg, point, precision, with_compile)
            except Exception as err:  # an out-of-memory size must not lose the others
                rows.append(row(point, variant, precision, None, error=one_line(err)))
            advance()
    part = {
        "framework": framework,
        "device": device,
        "versions": versions,
        "sweep": sweep_kind(cfg, on_gpu),
        "rows": rows,
        "dp": [],
        "habits": [],
    }
    for name, fn in extras.items():
        if getattr(cfg, name) and not stop():
            try:
                part[name] = fn(cfg)
            except Exception as err:
                part[name] = [failed(framework, name, one_line(err))]
    return part


def run_benchmark(cfg: Config, run, framework: str, measure) -> dict:
    """What `week1 run benchmark` does in either framework: measure every framework of
    cfg.frameworks, each in a child `week1 run` of its own (`isolate`, the default) or only
    `framework` in this process, then write results.json, the tables and the PNGs.

    A failed point or framework is reported and the run fails at the end (exit 1), after
    everything measured is written.
    """
    if cfg.isolate:
        parts = {}
        for fw in cfg.framework_list:
            if run.should_stop():
                break
            parts[fw] = measure_in_child(cfg, run, fw)
    else:
        parts = {framework: measure(cfg, should_stop=run.should_stop)}
    document = assemble(cfg, parts, measured_peaks(cfg, pathlib.Path(run.dir).parent))
    run.path("results.json").write_text(json.dumps(document, indent=1))
    summary = report(run, document)
    failures = [r for r in document["rows"] + document["dp"] + document["habits"] if "error" in r]
    failures += [{"error": f"{fw}: {p['error']}"} for fw, p in parts.items() if "error" in p]
    if failures:
        raise RuntimeError(f"{len(failures)} benchmark parts failed; first: {failures[0]['error']}")
    return summary


def measure_in_child(cfg: Config, run, framework: str) -> dict:
    """`week1 run benchmark --framework F --frameworks=F --isolate=false` in a fresh process,
    its run folder inside this run's (F-run/), its output in F.log; its results.json part, or
    {"error": ..., "rows": [...what it wrote]}."""
    folder = pathlib.Path(run.path(f"{framework}-run")).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    child = dataclasses.replace(cfg, frameworks=framework, isolate=False, peaks="none")
    command = [sys.executable, "-m", "week1", "run", "benchmark", "--framework", framework,
               "--runs-dir", str(folder), *config_args(child)]  # fmt: skip
    log_path = run.path(f"{framework}.log")
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env=thread_env(os.environ, framework, cfg.threads))  # fmt: skip
        # A stop signal sent to this process alone (kill PID, a scheduler) is passed on, so the
        # child stops at its next point as this run does (Ctrl-C reaches both anyway).
        passed_on = False
        while done.poll() is None:
            if run.should_stop() and not passed_on:
                done.send_signal(run.signum)
                passed_on = True
            with contextlib.suppress(subprocess.TimeoutExpired):
                done.wait(timeout=0.2)
    found = sorted(folder.glob("benchmark-*/results.json"))
    part = {"rows": [], "dp": [], "habits": []}
    if found:
        part = json.loads(found[-1].read_text())["parts"][framework]
    if done.returncode != 0 and done.returncode not in (130, 143):
        lines = [line.strip() for line in log_path.read_text().splitlines() if line.strip()]
        last = next((x for x in reversed(lines) if x.startswith("week1:")), lines[-1:] or [""])
        part["error"] = f"exit {done.returncode}: {str(last)[:160]} (log: {log_path})"
    return part


def machine() -> dict:
    """The machine, framework-free: CPU, cores, memory, Python, how busy it was (other
    processes' load moves CPU timings); the GPU and its driver when nvidia-smi answers."""
    from week1.machine import machine_rows

    out = dict(machine_rows())
    out["load average (1 min) at the end"] = f"{os.getloadavg()[0]:.1f}"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                 "--format=csv,noheader"]  # fmt: skip
        done = subprocess.run(query, capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip():
            out["gpu (nvidia-smi)"] = done.stdout.strip().splitlines()[0]
    return out


def assemble(cfg: Config, parts: dict, measured: dict) -> dict:
    """The results.json document: machine, command, config, each framework's part, and every
    row with the derived figures."""
    document = {
        "lab": "benchmark",
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "command": ["week1", *sys.argv[1:]],
        "config": as_dict(cfg),
        "measured_peaks": measured,
        "frameworks": {
            fw: {k: v for k, v in p.items() if k not in ("rows", "dp", "habits")}
            for fw, p in parts.items()
        },
        "parts": parts,
        "rows": [r for p in parts.values() for r in p.get("rows", [])],
        "dp": [r for p in parts.values() for r in p.get("dp", [])],
        "habits": [r for p in parts.values() for r in p.get("habits", [])],
    }
    derive(document)
    return document


# ---------------------------------------------------------------------------------------------
# Reports: tables (80 columns), PNGs, Markdown

SHORT = {"jax jit": "jax", "torch eager": "eager", "torch.compile": "compile"}
TABLE_COLUMNS = ["size", "variant", "prec", "ms", "first s", "tok/s", "MiB", "MFU", "/jax"]


def sorted_rows(document: dict, workload: str) -> list[dict]:
    """One workload's rows by size (as measured: smallest first), then variant, then precision."""
    sizes = list(dict.fromkeys(r["size"] for r in document["rows"] if r["workload"] == workload))
    return sorted(
        (r for r in document["rows"] if r["workload"] == workload),
        key=lambda r: (
            sizes.index(r["size"]),
            VARIANTS.index(r["variant"]),
            PRECISIONS.index(r["precision"]),
        ),
    )


def table_rows(document: dict, workload: str) -> list[tuple]:
    """One workload's rows, formatted for the 80-column table."""
    out = []
    for r in sorted_rows(document, workload):
        if "median_s" not in r:
            out.append((r["size"], SHORT[r["variant"]], r["precision"], "FAILED",
                        r["error"][:40], "", "", "", ""))  # fmt: skip
            continue
        memory = r.get("memory_bytes")
        out.append((
            r["size"],
            SHORT[r["variant"]],
            r["precision"],
            show.num(r["median_s"] * 1e3, 4),
            f"{r['first_s']:.1f}",
            show.si(r["tokens_per_s"]),
            show.num(memory / 2**20 if memory else None),
            show.pct(r["mfu_datasheet"] if r["mfu_datasheet"] is not None else r["mfu_measured"]),
            show.num(r["vs_jax"], 3),
        ))  # fmt: skip
    return out


TITLES = {
    "mlp": "mlp: the training_loop char MLP, one AdamW step",
    "lstm": "lstm: LSTM LM, from-scratch layer (scan / loop), T=128",
    "lstm-nn": "lstm-nn: LSTM LM, built-in layer (nnx.RNN / nn.LSTM)",
    "bert": "bert: MiniLM fine-tuning step (2-class head)",
    "word2vec": "word2vec: skip-gram negative-sampling update",
}


def flop_rows(document: dict) -> list[tuple]:
    """Per workload and size (fp32): the analytic GFLOP and each counter's ratio to it, with
    the reason where a counter disagrees by more than 10%."""
    out = {}
    for r in document["rows"]:
        if r["precision"] != "fp32" or "median_s" not in r or r["variant"] == "torch.compile":
            continue
        key = (r["workload"], r["size"])
        entry = out.setdefault(key, {"flops": r["flops"], "jax": None, "torch": None})
        if r.get("counted_flops"):
            entry[r["framework"]] = r["counted_flops"] / r["flops"]
    rows = []
    for (workload, size), e in out.items():
        why = [
            WHY[(fw, workload)]
            for fw in FRAMEWORKS
            if e[fw] is not None and abs(e[fw] - 1) > 0.10 and (fw, workload) in WHY
        ]
        if any(e[fw] is not None and abs(e[fw] - 1) > 0.10 for fw in FRAMEWORKS) and not why:
            why = ["unexplained: check the count"]
        rows.append((workload, size, show.num(e["flops"] / 1e9), show.num(e["jax"]),
                     show.num(e["torch"]), "; ".join(why) or "agree (10%)"))  # fmt: skip
    return rows


# Why a counter may disagree with the analytic model FLOPs, by (framework, workload).
WHY = {
    ("jax", "lstm"): "XLA counts a scan body once",
    ("jax", "lstm-nn"): "XLA counts a scan body once",
    ("jax", "word2vec"): "XLA adds the elementwise update",
    ("torch", "lstm-nn"): "no formula for the fused LSTM op",
    ("jax", "mlp"): "XLA adds elementwise and AdamW",
    ("jax", "bert"): "XLA adds softmax, GELU, LN, AdamW",
}


def report(run, document: dict) -> dict:
    """Print the tables, write step_time.png, ratio.png and dp_scaling.png; return the
    summary."""
    for fw, part in document["frameworks"].items():
        show.console.print(f"{fw}: {part.get('device', '?')}", highlight=False)
        if "error" in part:
            show.console.print(f"  {fw} FAILED: {part['error']}", highlight=False, markup=False)
    iters = max((r["iters"] for r in document["rows"] if "iters" in r), default=0)
    fewer = document["config"]["quick"] and iters > 3
    caption = f"ms: median of {iters} synced calls" + (
        f" (3 for steps over {QUICK_SLOW_S} s)" if fewer else ""
    )
    workloads = list(dict.fromkeys(r["workload"] for r in document["rows"]))
    for workload in workloads:
        rows = table_rows(document, workload)
        columns = TABLE_COLUMNS
        if all(row[7] in ("-", "") for row in rows):  # no peak known (a CPU): no MFU column
            columns = columns[:7] + columns[8:]
            rows = [row[:7] + row[8:] for row in rows]
        show.compact_table(
            TITLES[workload], columns, rows, caption=f"{caption}; /jax: time over JAX's"
        )
    if document["rows"]:
        show.compact_table(
            "model FLOPs per step: analytic, and counters' ratio to it",
            ["workload", "size", "GFLOP", "xla", "torch", "verdict"],
            flop_rows(document),
        )
    if document["dp"]:
        show.compact_table(
            "data parallel, fixed batch per device (CPU: simulated, correctness run only)",
            ["framework", "devices", "how", "ms", "efficiency"],
            [
                (
                    d["framework"],
                    d["devices"],
                    d["how"],
                    show.num(d.get("median_s", 0) * 1e3, 4),
                    show.num(d.get("efficiency")),
                )
                for d in document["dp"]
            ],  # fmt: skip
        )
    if document["habits"]:
        show.compact_table(
            f"loop habits: the training_loop model, {LOOP_STEPS} steps",
            ["framework", "habit", "ms/step"],
            [
                (h["framework"], h["habit"], show.num(h["ms_per_step"], 4))
                for h in document["habits"]
            ],
        )
    plot(run, document, workloads)
    return {
        "points measured": sum("median_s" in r for r in document["rows"]),
        "points failed": sum("error" in r for r in document["rows"]),
        "where each framework wins (the fastest variant per size)": "\n".join(winners(document)),
    }


def plot(run, document: dict, workloads: list[str]) -> None:
    panels, titles, marks = [], [], []
    for workload in workloads:
        series = curves(document, workload)
        panels.append(show.Panel(series, "ms per step", logy=True,
                                 styles={k: "o-" for k in series}))  # fmt: skip
        titles.append(workload)
        found = {k: crossover(xs, ys) for k, (xs, ys) in series.items()}
        marks.append([(*c, f"crossover {k}: {c[0]:.3g} GFLOP", k) for k, c in found.items() if c])
    if panels:
        show.plot_grid(run.path("step_time.png"), panels, titles=titles, marks=marks,
                       title="step time vs work (log-log); x: crossover dispatch -> compute",
                       xlabel="model GFLOP per step")  # fmt: skip
    ratio_panels, ratio_titles = [], []
    for workload in workloads:
        series = {}
        for r in document["rows"]:
            if r["workload"] == workload and r["framework"] == "torch" and r.get("vs_jax"):
                xs, ys = series.setdefault(f"{r['variant']} {r['precision']}", ([], []))
                xs.append(r["flops"] / 1e9)
                ys.append(r["vs_jax"])
        if series:
            ratio_panels.append(show.Panel(series, "torch ms / JAX ms", logy=True,
                                           styles={k: "o-" for k in series}))  # fmt: skip
            ratio_titles.append(workload)
    if ratio_panels:
        show.plot_grid(run.path("ratio.png"), ratio_panels, titles=ratio_titles,
                       hline=1.0, title="torch / JAX step time (above 1: JAX faster)",
                       xlabel="model GFLOP per step")  # fmt: skip
    dp = {}
    for d in document["dp"]:
        if d.get("efficiency"):
            xs, ys = dp.setdefault(f"{d['framework']} {d['how']}", ([], []))
            xs.append(d["devices"])
            ys.append(d["efficiency"])
    if dp:
        simulated = any(d.get("simulated") for d in document["dp"])
        show.plot_grid(run.path("dp_scaling.png"),
                       [show.Panel(dp, "t(1) / t(N)", styles={k: "o-" for k in dp})],
                       titles=["simulated devices: a correctness run" if simulated else "GPUs"],
                       hline=1.0, logx=False, title="data-parallel weak-scaling efficiency",
                       xlabel="devices")  # fmt: skip


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "cross_entropy",
        hints=(
            (
                "Mean next-token cross-entropy over every position, computed in float32 whatever "
                "the compute dtype."
            ),
            (
                "Flatten logits to (N, V) and labels to (N,); loss = mean(logsumexp(logits) - "
                "logits[label])."
            ),
        ),
        jax=Part(
            "week1_jax/benchmark.py::cross_entropy",
            (
                "test_benchmark.py::test_same_weights_same_batch_same_losses[mlp",
                "test_benchmark.py::test_same_weights_same_batch_same_losses[lstm H",
            ),
        ),
        torch=Part(
            "week1_torch/benchmark.py::cross_entropy",
            (
                "test_benchmark.py::test_same_weights_same_batch_same_losses[mlp",
                "test_benchmark.py::test_same_weights_same_batch_same_losses[lstm H",
            ),
        ),
    ),
)
