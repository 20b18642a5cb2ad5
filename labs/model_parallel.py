"""Lab: model parallelism, a layer split across devices (tensor) and the layer stack split into
stages (pipeline), in JAX and torch.

What it teaches
---------------
Data parallelism (the data_parallel and fsdp labs) copies or shards the *state*, but every
device still runs the whole model. When one layer's matrices, or the whole stack's
activations, no longer fit or run fast enough on one device, the model itself is split.

The model: a small character-level transformer on the training_loop lab's Shakespeare
batches (the previous `block_size` characters predict the next one): token and position
embeddings, `n_layer` pre-LayerNorm blocks (causal multi-head attention, then a GELU MLP),
a final LayerNorm and the head on the last position. The weights start from one numpy
initialisation (`init_weights`), so every framework and every mode starts from the same
numbers.

Tensor parallelism (Megatron-LM: Shoeybi et al., 2019, arXiv:1909.08053, its Figure 3)
splits each block over the `model` devices. The MLP's first matrix A is split by columns
and the second B by rows: GELU(X A_i) needs only column block i, and the partial products
GELU(X A_i) B_i sum to the block's output, so one all-reduce ends the MLP. Attention splits
the same way by heads: Q, K, V by columns (each device owns n_head/t heads), the output
projection by rows, one all-reduce. Forward: two all-reduces of the activations (B, T, C)
per block ("g"); backward: two more, on the gradient of each block's input ("f"). Biases of
the column matrices are split, those of the row matrices are added once after the sum;
LayerNorms, embeddings and the head are replicated.
- JAX: a `Mesh` with axes ('data', 'model'); the weights placed with `NamedSharding`
  (`P(None, 'model')` for the column kernels, `P('model', None)` for the row kernels) and the
  *unchanged single-device step* under `jit`: XLA inserts the collectives
  (`tensor_parallel`). Then the same block under `jax.shard_map`, Megatron's operators
  written out (`tensor_parallel_shard_map`): `lax.psum(..., 'model')` after each row matrix
  (g) and `lax.pcast(..., 'model', to='varying')` before the column matrices (f: its
  transpose is the backward all-reduce, one for Q, K and V together). The table counts the
  collectives of each compiled step from its HLO
  (`jax.jit(f).lower(...).compile().as_text()`): read them beside the formula. The
  compiler's version reduces the input gradients of Q, K and V separately, three
  all-reduces where Megatron has one.
- torch: `parallelize_module` with `ColwiseParallel`/`RowwiseParallel` on a device mesh
  (DTensor, `tensor_parallel`; it runs on gloo on the CPU too) and the same written by hand:
  a column linear whose backward all-reduces its input's gradient and a row linear whose
  forward all-reduces its output (`dist.all_reduce`, `tensor_parallel_all_reduce`).

Pipeline parallelism (GPipe: Huang et al., 2019, arXiv:1811.06965, its Figure 2) puts
consecutive blocks on different devices (stages) and cuts the batch into m micro-batches
that flow through them. With p stages the pipeline fills and drains: of the m + p - 1 time
slots of each stage, p - 1 are idle, the *bubble* (p - 1)/(m + p - 1) (GPipe, Section 2.2).
More micro-batches shrink it, but GPipe keeps every micro-batch's activations until the
backward pass begins (m sets per stage); 1F1B (PipeDream-Flush: Narayanan et al., 2021,
arXiv:2104.04473, Figure 4) starts each micro-batch's backward as soon as it can and holds
at most p - s sets on stage s, for the same bubble.
- JAX: stages on a 'stage' mesh axis under `jax.shard_map`; each device holds its stage's
  stacked blocks, activations move to the next stage with `lax.ppermute`; the GPipe
  schedule is a loop over m + p - 1 ticks (stage 0 embeds micro-batch t, the last stage
  computes the loss), and `jax.grad` of it is the backward pipeline, the ppermutes reversed
  (`pipeline_gpipe`). Every stage holds the (small) embeddings and head, used on the first
  and last; one all-reduce sums their gradients over the stages.
- torch: `torch.distributed.pipelining`: a `PipelineStage` per rank (stage 0 owns the
  embeddings, the last the head) driven by `ScheduleGPipe` and `Schedule1F1B`
  (`pipeline_gpipe`, `pipeline_1f1b`).

Every mode is the single-device model's maths, reordered: one step's loss and gradients
equal one device's to float32 rounding, and so do the losses of a run (the table's
max|dloss|). Training amplifies tiny differences: at the default learning rate the curves
stay together for hundreds of steps, at lr=3e-3 they part after some tens, and then two
single-device runs whose start differs by a 1e-7 nudge to one weight part as far.

When each pays
--------------
Tensor parallelism communicates activations four times per block per step, on the critical
path: it needs the fastest links there are, NVLink inside one node (Megatron-LM keeps t <= 8,
one server; its Figure 5 shows the scaling within and across nodes). Pipeline parallelism
sends only one activation per micro-batch per stage boundary, so it crosses nodes (GPipe's
Table 1 and Figure 3: near-linear speed-up with enough micro-batches); its price is the
bubble and the activation memory. Data parallelism and FSDP go around both: the usual
large-model layout is TP inside a node, PP across a few nodes, DP/FSDP over the copies
(Narayanan et al., 2021, "3D parallelism").

What to run, what to look for
-----------------------------
`week1 run model_parallel --framework jax` (8 simulated devices on a CPU: TP on a 2 x 4
data x model mesh, PP over 4 stages) and `--framework torch` (torchrun: 2 gloo processes on
a CPU, one per GPU; TP and PP over all of them). Each prints a table: per mode the devices,
parameters and state bytes per device, the bytes communicated per step by the formula and
(JAX) read from the compiled HLO with the collectives counted, the largest difference of
the loss from single-device training over the run, and the step time; the run folder has
`summary.json` (one entry per mode) and `bubble.png`: the measured bubble against
(p-1)/(m+p-1) as m grows and (torch) the peak activation bytes per stage of GPipe and 1F1B.
Look for: the loss differences at float32 rounding; the compiler's TP step with as many
all-reduces as the hand-written one but more bytes (the input gradients of Q, K and V
reduced one by one); the HLO of the JAX pipeline moving more than the formula, because an
SPMD pipeline ppermutes at every tick, bubbles included; the measured bubble near the
formula, falling as m grows (fixed per-step work counts as bubble too, and on a CPU the
simulated stages share the cores); GPipe's activation bytes growing with m while 1F1B's
stay flat. On a CPU the devices share the same cores: the step times say the code runs, not
how it scales, and the measured bubble there is only as good as the machine is quiet (JAX's
simulated stages all compute on the same cores at every tick; torch's two gloo ranks on a busy
CPU can read a bubble near zero or below it at every m: read that one on GPUs).

The bubble is measured from step times: with micro-batches of a fixed size, a step of m
micro-batches costs T(m) ~ (m + p - 1) t; t is the slope of T over m (least squares), and
1 - m t / T(m) is the time not spent on useful work.

`week1 parity model_parallel` checks every mode against one device and JAX against torch;
`week1 compare model_parallel` trains JAX and torch tensor-parallel (and GPipe) from the same
weights. On a CPU JAX runs in as many processes as torch's ranks, one device each, joined by
jax.distributed over gloo, and laid out as torch is (tensor parallelism over all of them, one
pipeline stage each; --tensor_parallel and --stages are for `week1 run`): the same work over
the same wire, so the speed ratio compares the frameworks.

History: docs/history.md#shoeybi-2019
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from week1 import charlm, convert, report
from week1 import hlo as week1_hlo
from week1.comparison import Case
from week1.config import require
from week1.exercises import Exercise, Part
from week1.parallel import loop_config
from week1.tolerances import TRAJECTORY

MULTI_DEVICE = True  # the CLI gives JAX simulated host devices on a CPU

JAX_MODES = ("tensor_parallel", "tensor_parallel_shard_map", "pipeline_gpipe")
TORCH_MODES = ("tensor_parallel", "tensor_parallel_all_reduce", "pipeline_gpipe", "pipeline_1f1b")
PIPELINE_SCHEDULES = ("pipeline_gpipe", "pipeline_1f1b")
SWEEP_MICROBATCHES = (1, 2, 4, 8)  # the bubble sweep: m at a fixed micro-batch size
LN_EPS = 1e-5  # LayerNorm epsilon, passed explicitly in both frameworks (flax's default is 1e-6)


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 200
    batch_size: int = 32  # the global batch; micro-batches and data shards split it evenly
    lr: float = 1e-3  # peak of the warmup-cosine schedule (3e-3: runs drift apart, see below)
    seed: int = 0
    block_size: int = 16  # characters of context
    n_embd: int = 64
    n_head: int = 8
    n_layer: int = 4
    n_hidden: int = 256  # MLP width
    weight_decay: float = 0.01
    warmup_steps: int = 20
    final_lr: float = 1e-4
    val_fraction: float = 0.1
    eval_every: int = 50  # `week1 compare`: validation loss every this many steps, and the last
    eval_batches: int = 4
    strategy: str = "all"  # one mode (tensor_parallel, pipeline_gpipe, ...) or all
    devices: int = 0  # 0: all JAX devices (8 simulated on a CPU); torch: 2 CPU ranks or 1 per GPU
    tensor_parallel: int = 4  # JAX: size of the mesh's 'model' axis (the rest is 'data')
    stages: int = 4  # JAX: pipeline stages (torch: one per rank)
    microbatches: int = 4  # m, micro-batches per step in the pipelines
    sweep: bool = True  # `week1 run`: time the pipelines over m = 1, 2, 4, 8 (the bubble plot)
    sweep_rows: int = 64  # rows per micro-batch in the sweep: enough work per tick to time
    # JAX processes joined by jax.distributed: set by `week1 compare`, which on a CPU trains the
    # JAX side in as many processes as torch's ranks; `week1 run` stays in one process
    coordinator: str = ""  # JAX: process 0's HOST:PORT
    num_processes: int = 0  # JAX: processes taking part; 0: one
    process_id: int = 0  # JAX: this process, 0 .. num_processes-1

    def check(self) -> None:
        require(
            self.strategy in ("all", *JAX_MODES, *TORCH_MODES),
            f"strategy={self.strategy!r}: allowed all, "
            f"{', '.join(dict.fromkeys(JAX_MODES + TORCH_MODES))}",
        )
        require(self.warmup_steps <= self.steps, f"warmup_steps={self.warmup_steps}: > steps")
        require(self.final_lr <= self.lr, f"final_lr={self.final_lr}: must be <= lr={self.lr}")
        require(
            self.n_embd % self.n_head == 0,
            f"n_embd={self.n_embd} does not split into n_head={self.n_head} heads",
        )
        for name in ("tensor_parallel", "stages", "microbatches"):
            require(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        check_splits(self, self.tensor_parallel, self.stages)


def check_splits(cfg: Config, model_devices: int, stages: int) -> None:
    """The heads and MLP columns split over `model_devices`, the blocks over `stages`, the batch
    into micro-batches: one line naming the value that does not divide."""
    require(
        cfg.n_head % model_devices == 0 and cfg.n_hidden % model_devices == 0,
        f"tensor_parallel={model_devices}: must divide n_head={cfg.n_head} and "
        f"n_hidden={cfg.n_hidden}",
    )
    require(cfg.n_layer % stages == 0, f"stages={stages}: must divide n_layer={cfg.n_layer}")
    require(
        cfg.batch_size % cfg.microbatches == 0,
        f"batch_size={cfg.batch_size} does not split into microbatches={cfg.microbatches}",
    )


def require_split(devices: int, tensor_parallel: int) -> None:
    require(
        devices % tensor_parallel == 0,
        f"tensor_parallel={tensor_parallel} does not divide the {devices} devices",
    )


def modes(cfg: Config, framework: str) -> tuple[str, ...]:
    """The modes a run trains: cfg.strategy, or every mode of the framework."""
    available = JAX_MODES if framework == "jax" else TORCH_MODES
    if cfg.strategy == "all":
        return available
    require(
        cfg.strategy in available,
        f"strategy={cfg.strategy!r}: {framework} has {', '.join(available)}",
    )
    return (cfg.strategy,)


# --- data: the training_loop lab's Shakespeare batches ------------------------------------


def lm_config(cfg: Config) -> charlm.Config:
    """The char LM's config of the same data and batches (week1/charlm.py)."""
    return loop_config(cfg)


def load_data(cfg: Config) -> charlm.Data:
    return charlm.load_data(lm_config(cfg))


def train_batch(data: charlm.Data, cfg: Config, step: int):
    """Global batch `step`: x (B, T), y (B,) int32, the same in both frameworks."""
    return charlm.train_batch(data, lm_config(cfg), step)


def val_batches(data: charlm.Data, cfg: Config) -> list:
    return charlm.val_batches(data, lm_config(cfg))


# --- weights: one numpy init, torch names; the map to Flax names -------------------------

COLUMN, ROW = "column", "row"
# Megatron's split of a block (torch module names): column matrices (split outputs, heads)
# first, a row matrix (split inputs) after them, one all-reduce at its output.
TP_SPLIT = {
    "attn.q": COLUMN,
    "attn.k": COLUMN,
    "attn.v": COLUMN,
    "attn.proj": ROW,
    "mlp.fc1": COLUMN,
    "mlp.fc2": ROW,
}

_BLOCK_MAP = (
    # torch (blocks.{i}.)     flax (blocks.{i}.)      transform
    ("ln1.weight", "ln1.scale", convert.SAME),
    ("ln1.bias", "ln1.bias", convert.SAME),
    ("attn.q.weight", "attn.q.kernel", convert.TRANSPOSE),
    ("attn.q.bias", "attn.q.bias", convert.SAME),
    ("attn.k.weight", "attn.k.kernel", convert.TRANSPOSE),  # no bias: see init_weights
    ("attn.v.weight", "attn.v.kernel", convert.TRANSPOSE),
    ("attn.v.bias", "attn.v.bias", convert.SAME),
    ("attn.proj.weight", "attn.proj.kernel", convert.TRANSPOSE),
    ("attn.proj.bias", "attn.proj.bias", convert.SAME),
    ("ln2.weight", "ln2.scale", convert.SAME),
    ("ln2.bias", "ln2.bias", convert.SAME),
    ("mlp.fc1.weight", "mlp.fc1.kernel", convert.TRANSPOSE),
    ("mlp.fc1.bias", "mlp.fc1.bias", convert.SAME),
    ("mlp.fc2.weight", "mlp.fc2.kernel", convert.TRANSPOSE),
    ("mlp.fc2.bias", "mlp.fc2.bias", convert.SAME),
)


def weight_map(n_layer: int) -> tuple:
    """torch state_dict name <-> Flax path, for a model of `n_layer` blocks."""
    return (
        ("wte.weight", "wte.embedding", convert.SAME),
        ("wpe.weight", "wpe.embedding", convert.SAME),
        *(
            (f"blocks.{i}.{t}", f"blocks.{i}.{f}", how)
            for i in range(n_layer)
            for t, f, how in _BLOCK_MAP
        ),
        ("ln_f.weight", "ln_f.scale", convert.SAME),
        ("ln_f.bias", "ln_f.bias", convert.SAME),
        ("head.weight", "head.kernel", convert.TRANSPOSE),
        ("head.bias", "head.bias", convert.SAME),
    )


def init_weights(cfg: Config, vocab_size: int) -> dict[str, np.ndarray]:
    """The start of every run, torch names, float32: N(0, 0.02) matrices and embeddings (GPT-2's
    init), zero biases, unit LayerNorm scales; from cfg.seed.

    The keys have no bias: it adds the same q.b to all of a query's scores, which the softmax
    ignores, so its gradient is pure rounding noise, and Adam (dividing by the noise's own
    size) would turn it into full-size steps on which two equal runs drift apart."""
    rng = np.random.default_rng(cfg.seed)
    C, H, V, T = cfg.n_embd, cfg.n_hidden, vocab_size, cfg.block_size
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C), "head.weight": (V, C), "head.bias": (V,)}
    for i in range(cfg.n_layer):
        for name in ("q", "k", "v", "proj"):
            shapes[f"blocks.{i}.attn.{name}.weight"] = (C, C)
            if name != "k":
                shapes[f"blocks.{i}.attn.{name}.bias"] = (C,)
        shapes[f"blocks.{i}.mlp.fc1.weight"], shapes[f"blocks.{i}.mlp.fc1.bias"] = (H, C), (H,)
        shapes[f"blocks.{i}.mlp.fc2.weight"], shapes[f"blocks.{i}.mlp.fc2.bias"] = (C, H), (C,)
    weights = {}
    for name, shape in shapes.items():
        if name.endswith(".bias"):
            weights[name] = np.zeros(shape, np.float32)
        else:
            weights[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    for norm in [f"blocks.{i}.{n}" for i in range(cfg.n_layer) for n in ("ln1", "ln2")] + ["ln_f"]:
        weights[f"{norm}.weight"] = np.ones(C, np.float32)
        weights[f"{norm}.bias"] = np.zeros(C, np.float32)
    return weights


def tp_role(name: str) -> str | None:
    """COLUMN, ROW or None (replicated) for a parameter name (torch or Flax)."""
    return next((role for module, role in TP_SPLIT.items() if f".{module}." in name), None)


def stage_of(name: str, n_layer: int, stages: int) -> int | None:
    """The pipeline stage of block parameter `name` (blocks.{i}.*), None for the others."""
    if not name.startswith("blocks."):
        return None
    return int(name.split(".")[1]) // (n_layer // stages)


# --- what the wire carries ----------------------------------------------------------------


def allreduce_bytes(nbytes: float, n: int) -> float:
    """Bytes each device sends in a ring all-reduce of `nbytes` over n devices: 2 (n-1)/n."""
    return 2 * (n - 1) / n * nbytes


def tensor_parallel_bytes(cfg: Config, model: int, data: int, replicated_params: int) -> float:
    """Bytes each device sends per step: 4 all-reduces of the (B/data, T, C) activations per
    block over the model axis (2 forward, 2 backward), plus the data axis's gradient
    all-reduce of what each device holds (the model-split shard and the replicated rest)."""
    activation = 4 * cfg.batch_size // data * cfg.block_size * cfg.n_embd
    tp = cfg.n_layer * 4 * allreduce_bytes(activation, model)
    return tp + allreduce_bytes(4 * replicated_params, data)


def pipeline_bytes(cfg: Config, stages: int) -> float:
    """Bytes the busiest stage sends per step: every micro-batch's (B/m, T, C) activation to
    the next stage and its gradient back to the previous one, B T C floats each way in all."""
    each_way = 4 * cfg.batch_size * cfg.block_size * cfg.n_embd
    return 0.0 if stages == 1 else each_way * (2 if stages > 2 else 1)


def fastest(call, sync, repeats: int = 10) -> float:
    """Seconds of the fastest of `repeats` synced calls, after one to warm up: on a shared
    machine, the call least disturbed by other work (a median still carries the others' load)."""
    sync(call())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        sync(call())
        best = min(best, time.perf_counter() - start)
    return best


def bubble_formula(stages: int, microbatches: int) -> float:
    """GPipe's idle fraction of each stage: (p - 1) / (m + p - 1)."""
    return (stages - 1) / (microbatches + stages - 1)


def measured_bubble(microbatches, seconds) -> list[float]:
    """1 - m t / T(m), t the least-squares slope of the step time T over m (micro-batches of a
    fixed size): the share of each step not spent on useful micro-batch work."""
    m, s = np.asarray(microbatches, np.float64), np.asarray(seconds, np.float64)
    slope = np.polyfit(m, s, 1)[0]
    return [float(1 - mi * slope / si) for mi, si in zip(m, s, strict=True)]


# --- collectives in compiled HLO ----------------------------------------------------------


def hlo_collectives(hlo: str, n_devices: int) -> tuple[dict[str, int], float]:
    """({op: count}, bytes one device sends per call) of the collectives in compiled HLO text.

    An all-reduce of S bytes over a group of n costs 2 (n-1)/n S (ring), an all-gather or
    all-to-all (n-1)/n of its result, a reduce-scatter (n-1) times its result, a
    collective-permute its operand once. Each op is counted where it is written: an op inside
    a loop body counts once (the lab's pipeline unrolls its ticks, so none hides there).
    """
    counts, sent = {}, 0.0
    for op, phase, nbytes, line in week1_hlo.collectives(hlo):
        if phase == "-done":  # an asynchronous op is counted at its -start
            continue
        counts[op] = counts.get(op, 0) + 1
        if phase == "-start":  # (operand, result[, scratch]) tuple; the operand is the first
            nbytes //= 2
        n = _group_size(line, n_devices)
        sent += {
            "all-reduce": 2 * (n - 1) / n,
            "all-gather": (n - 1) / n,
            "all-to-all": (n - 1) / n,
            "reduce-scatter": float(n - 1),
            "collective-permute": 1.0,
        }[op] * nbytes
    return counts, sent


def _group_size(line: str, n_devices: int) -> int:
    import re

    if match := re.search(r"replica_groups=\[(\d+),(\d+)\]", line):  # iota: [groups, size]
        return int(match[2])
    if match := re.search(r"replica_groups=\{\{([\d,]+)\}", line):
        return len(match[1].split(","))
    return n_devices


# --- what a run shows ---------------------------------------------------------------------


@dataclasses.dataclass
class ModeResult:
    """One mode's run, as the table and summary.json show it."""

    mode: str
    devices: int
    params_per_device: int  # parameters this device holds (the busiest, for pipelines)
    bytes_per_device: int  # parameters + AdamW moments, float32
    comm_bytes: float  # sent per device per step, by the formula
    hlo_comm_bytes: float | None  # the same read from the compiled step's HLO (JAX)
    hlo_collectives: str  # "all-reduce x12, ..." (JAX), "" elsewhere
    max_abs_loss_diff: float  # over the run, vs single-device training
    max_abs_loss_diff_20: float  # over its first 20 steps
    step_s: float  # mean step time after the first
    final_loss: float


def loss_diffs(losses, single) -> tuple[float, float]:
    """The largest |loss - single-device loss| over the run and over its first 20 steps."""
    diff = np.abs(np.asarray(losses) - np.asarray(single[: len(losses)]))
    return float(diff.max()), float(diff[:20].max())


# Table headings: the mode each framework runs under that name, short.
LABELS = {"single_device": "1 device", "tensor_parallel_shard_map": "TP shard_map",
          "tensor_parallel_all_reduce": "TP by hand", "pipeline_gpipe": "GPipe",
          "pipeline_1f1b": "1F1B"}  # fmt: skip
TP_LABEL = {"jax": "TP jit", "torch": "TP DTensor"}


def summarise(framework: str, results: list[ModeResult], sweep: dict | None, run) -> dict:
    """Print the table (a column per mode), plot the bubble sweep into the run folder, return
    the summary."""

    def kib(v) -> str:
        return "-" if v is None else f"{v / 1024:,.0f}"

    rows = {
        "devices": lambda r: str(r.devices),
        "params / device": lambda r: f"{r.params_per_device:,}",
        "state KiB / device": lambda r: kib(r.bytes_per_device),
        "comm KiB / step": lambda r: kib(r.comm_bytes),
        "  from the HLO": lambda r: kib(r.hlo_comm_bytes),
        "  collectives": lambda r: _short(r.hlo_collectives),
        "max |dloss|, 20 steps": lambda r: f"{r.max_abs_loss_diff_20:.1e}",
        "max |dloss|, the run": lambda r: f"{r.max_abs_loss_diff:.1e}",
        "ms / step": lambda r: f"{1000 * r.step_s:.1f}",
        "final loss": lambda r: f"{r.final_loss:.4f}",
    }
    report.compact_table(
        f"model_parallel ({framework})",
        ["", *(LABELS.get(r.mode, TP_LABEL[framework]) for r in results)],
        [[name, *(cell(r) for r in results)] for name, cell in rows.items()],
        caption="per device; comm: by the formula and (JAX) read from the compiled step; "
        "AR all-reduce, CP collective-permute; |dloss|: train loss vs one device's",
    )
    summary = {
        r.mode: {
            "max_abs_loss_diff_vs_single_device": r.max_abs_loss_diff,
            "max_abs_loss_diff_first_20_steps": r.max_abs_loss_diff_20,
            "devices": r.devices,
            "bytes_per_device": r.bytes_per_device,
            "params_per_device": r.params_per_device,
            "comm_bytes_per_step": r.comm_bytes,
            "hlo_comm_bytes_per_step": r.hlo_comm_bytes,
            "hlo_collectives": r.hlo_collectives,
            "step_s": r.step_s,
            "final_loss": r.final_loss,
        }
        for r in results
    }
    summary["largest_max_abs_loss_diff"] = max(r.max_abs_loss_diff for r in results)
    if sweep:
        summary["bubble_sweep"] = sweep
        summary["bubble_plot"] = str(plot_bubble(run.path("bubble.png"), framework, sweep))
    return summary


def sweep_microbatches(schedule: str, stages: int) -> list[int]:
    """The m of SWEEP_MICROBATCHES a schedule can run: 1F1B needs m >= p (torch refuses fewer)."""
    return [m for m in SWEEP_MICROBATCHES if schedule != "pipeline_1f1b" or m >= stages]


def _short(collectives: str) -> str:
    names = {"all-reduce": "AR", "collective-permute": "CP", "all-gather": "AG",
             "reduce-scatter": "RS", "all-to-all": "A2A"}  # fmt: skip
    for name, short in names.items():
        collectives = collectives.replace(name, short)
    return collectives or "-"


def plot_bubble(path, framework: str, sweep: dict):
    """Measured bubble vs (p-1)/(m+p-1) as m grows and the memory each m needs (torch: stage 0's
    peak activation bytes; JAX: the temporary bytes XLA plans per device); `sweep` as
    sweep_result gives it."""
    m, p = list(SWEEP_MICROBATCHES), sweep["stages"]
    bubble = {f"formula (p-1)/(m+p-1), p={p}": (m, [bubble_formula(p, mi) for mi in m])}
    memory = {}
    for schedule in PIPELINE_SCHEDULES:
        if f"{schedule} bubble" in sweep:
            ms = sweep[f"{schedule} microbatches"]
            bubble[f"{framework} {schedule}, measured"] = (ms, sweep[f"{schedule} bubble"])
            if f"{schedule} activation bytes" in sweep:
                memory[f"{framework} {schedule}"] = (ms, sweep[f"{schedule} activation bytes"])
    panels = [report.Panel(bubble, "bubble fraction", styles={next(iter(bubble)): "k--"})]
    if memory:
        what = {"torch": "peak activation bytes, stage 0", "jax": "XLA temp bytes / device"}
        panels.append(report.Panel(memory, what[framework]))
    return report.plot_panels(
        path, panels, title=f"pipeline bubble ({framework})", xlabel="micro-batches m"
    )


def sweep_result(stages: int, timings: dict, activations: dict | None = None) -> dict:
    """The bubble sweep as the summary keeps it, per schedule: the m it ran
    (sweep_microbatches), the step seconds, the bubble measured from them next to the formula,
    and (if given) stage 0's activation bytes. timings/activations: {schedule: [per m]}."""
    sweep = {"stages": stages}
    for schedule, seconds in timings.items():
        ms = sweep_microbatches(schedule, stages)
        sweep[f"{schedule} microbatches"] = ms
        sweep[f"{schedule} seconds"] = list(seconds)
        if len(ms) >= 2:  # a slope needs two points
            sweep[f"{schedule} bubble"] = measured_bubble(ms, seconds)
        sweep[f"{schedule} formula"] = [bubble_formula(stages, m) for m in ms]
        if activations and schedule in activations:
            sweep[f"{schedule} activation bytes"] = list(activations[schedule])
    return sweep


# `week1 compare model_parallel --quick`: the default run, without the bubble sweep.
COMPARE_QUICK = {"steps": 200, "eval_every": 50, "warmup_steps": 20, "sweep": False}
# CI: a few steps of a smaller model (2 blocks, 2 stages: compiles and starts quickly)
COMPARE_TEST = {"steps": 12, "eval_every": 6, "warmup_steps": 3, "sweep": False, "n_layer": 2,
                "n_embd": 32, "n_head": 4, "n_hidden": 64, "block_size": 8, "batch_size": 16,
                "stages": 2, "microbatches": 2}  # fmt: skip


def compare_cases(cfg: Config) -> list[Case]:
    """JAX's compiler-placed tensor parallelism against torch's DTensor, and the two GPipe
    pipelines; from the same weights on the same batches (TRAJECTORY)."""
    return [
        Case("tensor_parallel", "val loss", TRAJECTORY),
        Case("pipeline_gpipe", "val loss", TRAJECTORY),
    ]


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "megatron_ops",
        hints=(
            (
                "Megatron's f and g around each split pair: f before the column-split matrices "
                "(identity forward, all-reduce of the gradient backward), g after the row-split "
                "matrix (all-reduce forward, identity backward)."
            ),
            (
                "jax: inside shard_map, f = lax.pcast(a, axis, to='varying') (its transpose is the "
                "psum), g = lax.psum(a, axis). torch: _ReduceFromModel.forward all-reduces a "
                "contiguous copy (dist.all_reduce), backward is the identity."
            ),
        ),
        jax=Part(
            "week1_jax/model_parallel.py::megatron_ops",
            "test_model_parallel.py::test_jax_mode_equals_single_device[tensor_parallel_shard_map]",
        ),
        torch=Part(
            "week1_torch/model_parallel.py::_ReduceFromModel.forward",
            "test_model_parallel.py::test_torch_mode_equals_single_device[tensor_parallel_all_reduce]",
        ),
    ),
)
