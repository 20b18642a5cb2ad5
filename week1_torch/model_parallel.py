"""Model parallelism in torch: tensor parallelism (DTensor's parallelize_module; a hand-written
column/row linear pair with dist.all_reduce) and pipelines (torch.distributed.pipelining:
ScheduleGPipe, Schedule1F1B), in N processes under torchrun.

Read beside week1_jax/model_parallel.py. Worker processes (what `week1 run model_parallel
--framework torch` launches):
    torchrun --standalone --nproc-per-node=2 -m week1_torch.model_parallel --config=PATH
(a config.json from week1.parallel.worker_args: the settings, the mode
train|parity|compare|compare_compiled, the output folder).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    parallelize_module,
)

from labs import model_parallel as spec
from week1 import loop
from week1.comparison import Curves
from week1.parallel import load_start_weights, relayed_turn, save_record, worker_args
from week1_torch.lib import devices, optim, parallel, schedules
from week1_torch.lib import train as train_lib
from week1_torch.lib.models import set_weights

# The model is nn.Modules here (DTensor and PipelineStage take modules) and pure functions in
# JAX; torch's own hand-written tensor parallelism stands beside JAX's shard_map; JAX has no
# 1F1B (its pipeline is GPipe written as one SPMD program).
FRAMEWORK_ONLY = (
    "Attention",
    "MLP",
    "Block",
    "TinyLM",
    "CopyToModel",
    "ColumnLinear",
    "RowLinear",
    "tensor_parallel_all_reduce",
    "stage_module",
    "pipeline_1f1b",
    "full_grads",
    "ActivationBytes",
    "worker",
)


class Attention(nn.Module):
    """Causal multi-head attention over the heads whose Q, K, V rows this rank holds (all of
    them on one device): the head count is read from the projection's output width."""

    def __init__(self, n_embd: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        self.enter = nn.Identity()  # Megatron's f (hand-written tensor parallelism: CopyToModel)
        self.q, self.v, self.proj = (nn.Linear(n_embd, n_embd) for _ in range(3))
        self.k = nn.Linear(n_embd, n_embd, bias=False)  # no bias (spec.init_weights)

    def forward(self, x):
        x = self.enter(x)
        B, T, _ = x.shape
        q, k, v = (
            lin(x).view(B, T, -1, self.head_dim).transpose(1, 2) for lin in (self.q, self.k, self.v)
        )  # (B, H, T, D)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(B, T, -1)  # (B, T, H*D)
        return self.proj(out)


class MLP(nn.Module):
    """GELU(x A) B (Megatron-LM, Figure 3a: A split by columns, B by rows)."""

    def __init__(self, n_embd: int, n_hidden: int):
        super().__init__()
        self.enter = nn.Identity()
        self.fc1, self.fc2 = nn.Linear(n_embd, n_hidden), nn.Linear(n_hidden, n_embd)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.enter(x))))  # exact (erf) GELU, as in JAX


class Block(nn.Module):
    def __init__(self, cfg: spec.Config):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=spec.LN_EPS)
        self.attn = Attention(cfg.n_embd, cfg.n_embd // cfg.n_head)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=spec.LN_EPS)
        self.mlp = MLP(cfg.n_embd, cfg.n_hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """Embeddings, `n_layer` blocks (a ModuleDict: a pipeline stage keeps its blocks' names),
    final LayerNorm and head on the last position. A stage without the embeddings takes
    activations (B, T, C); one without the head returns them."""

    def __init__(self, cfg: spec.Config, vocab_size: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.n_layer)})
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=spec.LN_EPS)
        self.head = nn.Linear(cfg.n_embd, vocab_size)

    def forward(self, x):
        h = x if self.wte is None else self.wte(x) + self.wpe.weight[: x.shape[1]]  # (B, T, C)
        for block in self.blocks.values():
            h = block(h)
        return h if self.head is None else self.head(self.ln_f(h[:, -1]))  # (B, V)


def build_model(cfg: spec.Config, vocab_size: int, weights: dict | None = None) -> TinyLM:
    """The model on this rank's device, from `weights` (state_dict names, numpy; None:
    spec.init_weights from cfg.seed, the numbers JAX starts from too)."""
    model = TinyLM(cfg, vocab_size)
    set_weights(model, spec.init_weights(cfg, vocab_size) if weights is None else weights)
    return devices.place(model)


def loss_fn(model, x, y):
    return F.cross_entropy(model(x), y)


def make_optimizer(model: nn.Module, cfg: spec.Config):
    """The library's AdamW on warmup-cosine (decay on matrices only) and its LambdaLR."""
    optimizer = optim.AdamW(optim.param_groups(model, cfg.weight_decay))
    schedule = schedules.warmup_cosine(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.final_lr)
    return optimizer, schedules.lambda_lr(optimizer, schedule)


class Mode(NamedTuple):
    """One way to run the model on this rank."""

    forward_backward: Callable  # (x, y) -> loss, gradients accumulated, no update
    step: Callable  # (x, y) -> loss after one update (detached; the same on every rank)
    evaluate: Callable  # (x, y) -> loss, no gradients
    model: nn.Module  # what this rank holds
    optimizer: torch.optim.Optimizer
    devices: int
    comm_bytes: float  # sent per device per step, by the formula


def _mode(cfg, model, forward_backward, evaluate, n_devices: int, comm_bytes: float) -> Mode:
    optimizer, scheduler = make_optimizer(model, cfg)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = forward_backward(x, y)
        optimizer.step()
        scheduler.step()
        return loss

    return Mode(forward_backward, step, evaluate, model, optimizer, n_devices, comm_bytes)


def _whole_model(cfg, model, n_devices: int, comm_bytes: float) -> Mode:
    """A model every rank runs whole (on one device, or with its layers split inside)."""

    def forward_backward(x, y):
        loss = loss_fn(model, x, y)
        loss.backward()
        return loss.detach()

    @torch.no_grad()
    def evaluate(x, y):
        return loss_fn(model, x, y)

    return _mode(cfg, model, forward_backward, evaluate, n_devices, comm_bytes)


def single_device(cfg: spec.Config, model: TinyLM, device) -> Mode:
    """The reference: the whole model on this rank's device, no communication."""
    return _whole_model(cfg, model, 1, 0.0)


def tp_plan() -> dict:
    """Megatron's placement as DTensor styles: ColwiseParallel shards a Linear's weight rows
    (outputs) and leaves the output split; RowwiseParallel shards the columns (inputs) and
    all-reduces the output."""
    style = {spec.COLUMN: ColwiseParallel, spec.ROW: RowwiseParallel}
    return {module: style[role]() for module, role in spec.TP_SPLIT.items()}


def _tp_comm(cfg: spec.Config, model: nn.Module) -> float:
    held = sum(
        p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in model.parameters()
    )
    return spec.tensor_parallel_bytes(cfg, dist.get_world_size(), 1, held)


def tensor_parallel(cfg: spec.Config, model: TinyLM, device) -> Mode:
    """DTensor: parallelize_module on a 1-D 'model' mesh over every rank, each block's Linears
    placed by tp_plan; embeddings, norms and head stay whole (replicated) on every rank."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),), mesh_dim_names=("model",))
    for block in model.blocks.values():
        parallelize_module(block, mesh, tp_plan())
    return _whole_model(cfg, model, dist.get_world_size(), _tp_comm(cfg, model))


class _CopyToModel(torch.autograd.Function):
    """Megatron's f: identity forward; backward, the input's gradient summed over the ranks
    (each rank's column matrices saw the whole input and give part of its gradient)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class _ReduceFromModel(torch.autograd.Function):
    """Megatron's g: forward, the row matrix's partial products summed over the ranks;
    identity backward (every rank needs the whole output's gradient, and has it)."""

    @staticmethod
    def forward(ctx, x):
        x = x.contiguous().clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad


class CopyToModel(nn.Module):
    def forward(self, x):
        return _CopyToModel.apply(x)


class ColumnLinear(nn.Module):
    """This rank's share of a Linear's outputs: rows rank*out/t .. of its weight and bias."""

    def __init__(self, linear: nn.Linear, rank: int, world: int):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().chunk(world, dim=0)[rank].clone())
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().chunk(world)[rank].clone())

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)  # (..., out/t)


class RowLinear(nn.Module):
    """This rank's share of a Linear's inputs (weight columns); the partial products summed
    over the ranks (one all-reduce), then the whole bias, once."""

    def __init__(self, linear: nn.Linear, rank: int, world: int):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().chunk(world, dim=1)[rank].clone())
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def forward(self, x):  # x (..., in/t)
        return _ReduceFromModel.apply(F.linear(x, self.weight)) + self.bias


def tensor_parallel_all_reduce(cfg: spec.Config, model: TinyLM, device) -> Mode:
    """The same split written by hand: each block's Linears replaced by this rank's
    ColumnLinear/RowLinear shards (spec.TP_SPLIT), CopyToModel before the column matrices."""
    rank, world = dist.get_rank(), dist.get_world_size()
    split = {spec.COLUMN: ColumnLinear, spec.ROW: RowLinear}
    for block in model.blocks.values():
        block.attn.enter, block.mlp.enter = CopyToModel(), CopyToModel()
        for name, role in spec.TP_SPLIT.items():
            parent, leaf = name.split(".")
            module = getattr(block, parent)
            setattr(module, leaf, split[role](getattr(module, leaf), rank, world))
    return _whole_model(cfg, devices.place(model, device), world, _tp_comm(cfg, model))


def stage_module(model: TinyLM, stage: int, stages: int) -> TinyLM:
    """The model cut to stage `stage` of `stages`, in place: its blocks only (names kept), the
    embeddings on the first stage, the final norm and head on the last."""
    model.blocks = nn.ModuleDict(
        {
            k: b
            for k, b in model.blocks.items()
            if spec.stage_of(f"blocks.{k}.", len(model.blocks), stages) == stage
        }
    )
    if stage > 0:
        model.wte = model.wpe = None
    if stage < stages - 1:
        model.ln_f = model.head = None
    return model


def _pipeline(cfg: spec.Config, model: TinyLM, device, schedule: str) -> Mode:
    """This rank's stage under torch.distributed.pipelining's `schedule` ("ScheduleGPipe",
    "Schedule1F1B") with cfg.microbatches micro-batches; the loss (the mean of the micro-batch
    means, the last stage's) is broadcast to every rank."""
    # Imported here: importing torch.distributed.pipelining sets TORCHINDUCTOR_CACHE_DIR.
    from torch.distributed import pipelining

    schedule_cls = getattr(pipelining, schedule)
    rank, stages = dist.get_rank(), dist.get_world_size()
    stage = stage_module(model, rank, stages)
    schedule = schedule_cls(
        pipelining.PipelineStage(stage, rank, stages, device),
        n_microbatches=cfg.microbatches,
        loss_fn=F.cross_entropy,
    )
    first, last = rank == 0, rank == stages - 1

    def through(run, x, y):
        losses = []
        run(*([x] if first else []), **({"target": y, "losses": losses} if last else {}))
        loss = torch.stack(losses).mean().detach() if last else torch.zeros((), device=device)
        dist.broadcast(loss, src=stages - 1)
        return loss

    def forward_backward(x, y):  # the schedule scales each micro-batch's gradient by 1/m
        return through(schedule.step, x, y)

    @torch.no_grad()
    def evaluate(x, y):
        return through(schedule.eval, x, y)

    comm = spec.pipeline_bytes(cfg, stages)
    return _mode(cfg, stage, forward_backward, evaluate, stages, comm)


def pipeline_gpipe(cfg: spec.Config, model: TinyLM, device) -> Mode:
    """GPipe: all m forwards, then all m backwards; stage s holds m micro-batches' activations."""
    return _pipeline(cfg, model, device, "ScheduleGPipe")


def pipeline_1f1b(cfg: spec.Config, model: TinyLM, device) -> Mode:
    """1F1B: after p - s warm-up forwards, stage s alternates one forward and one backward, so
    it holds at most p - s micro-batches' activations; the same bubble as GPipe."""
    return _pipeline(cfg, model, device, "Schedule1F1B")


MODES = {
    "single_device": single_device,
    "tensor_parallel": tensor_parallel,
    "tensor_parallel_all_reduce": tensor_parallel_all_reduce,
    "pipeline_gpipe": pipeline_gpipe,
    "pipeline_1f1b": pipeline_1f1b,
}


def setup(cfg: spec.Config, data, mode: str, device, weights: dict | None = None) -> Mode:
    """`mode` on this rank (every rank of the group takes part), from `weights` (state_dict
    names, numpy; None: spec.init_weights)."""
    return MODES[mode](cfg, build_model(cfg, data.vocab_size, weights), device)


def full_grads(model: nn.Module) -> dict[str, np.ndarray]:
    """Every gradient, whole, by state_dict name, on every rank: DTensor shards gathered, the
    hand-written shards all-gathered along their split, pipeline stages' merged."""
    world = dist.get_world_size()

    def gather(g, dim):
        parts = [torch.empty_like(g) for _ in range(world)]
        dist.all_gather(parts, g.contiguous())
        return torch.cat(parts, dim=dim)

    grads = {}
    for prefix, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            g = p.grad
            if isinstance(g, DTensor):
                g = g.full_tensor()
            elif isinstance(module, ColumnLinear):
                g = gather(g, 0)
            elif isinstance(module, RowLinear) and name == "weight":
                g = gather(g, 1)
            grads[f"{prefix}.{name}".lstrip(".")] = g.detach().cpu().numpy()
    held = [None] * world
    dist.all_gather_object(held, grads)  # a pipeline stage has its own blocks' gradients only
    return {k: v for part in held for k, v in part.items()}


def _tensors(x: np.ndarray, y: np.ndarray, device):
    return devices.to_device(x, y, dtype=torch.long, device=device)


def train(
    cfg: spec.Config,
    data,
    mode: str,
    device,
    weights=None,
    ctx=None,
    history=None,
    compile: bool = False,
):
    """cfg.steps steps of `mode` through the shared loop (week1/loop.py); returns (History,
    Mode, step 1's gradients: whole, by state_dict name, on every rank). compile: each block
    this rank holds through torch.compile (torchtitan's per-block compilation)."""
    placed = setup(cfg, data, mode, device, weights)
    if compile:
        for block in placed.model.blocks.values():
            block.compile()
    val = [_tensors(x, y, device) for x, y in spec.val_batches(data, cfg)]

    first_grads = {}

    def one(i: int):
        loss = placed.step(*_tensors(*spec.train_batch(data, cfg, i), device))
        if i == 1:  # the update leaves the gradients in place until the next step
            first_grads.update(full_grads(placed.model))
        return loss

    def evaluate() -> dict:
        return {"val_loss": float(torch.stack([placed.evaluate(x, y) for x, y in val]).mean())}

    cadence = loop.Cadence(cfg.steps, cfg.eval_every)
    history = loop.drive(
        cadence,
        ctx or loop.Context(),
        start=0,
        step=one,
        read=train_lib.read,
        evaluate=evaluate,
        label=f"torch {mode}",
        history=history,
    )
    return history, placed, first_grads


class _Saved:
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


class ActivationBytes:
    """The peak bytes of tensors autograd keeps for the backward pass (the activations), while
    inside: saved_tensors_hooks count each saved tensor until its graph is freed; the
    parameters' own storage is not counted."""

    def __init__(self, model: nn.Module):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.live = self.peak = 0

    def _pack(self, t):
        if t.untyped_storage().data_ptr() in self.params:
            return t
        box = _Saved(t)  # freed with the graph that holds it
        self.live += t.nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(box, self._free, t.nbytes)
        return box

    def _free(self, nbytes):
        self.live -= nbytes

    def __enter__(self):
        self.hooks = torch.autograd.graph.saved_tensors_hooks(
            self._pack, lambda box: box.tensor if isinstance(box, _Saved) else box
        )
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)


def bubble_sweep(cfg: spec.Config, data, device) -> dict:
    """GPipe and 1F1B forward-backward timed (the fastest of 10) for m = 1, 2, 4, 8
    micro-batches of the same size (cfg.sweep_rows), and the peak activation bytes this rank's
    stage kept for each."""
    rows = cfg.sweep_rows
    seconds, activations = {}, {}
    for schedule in spec.PIPELINE_SCHEDULES:
        for m in spec.sweep_microbatches(schedule, dist.get_world_size()):
            cfg_m = dataclasses.replace(cfg, batch_size=rows * m, microbatches=m)
            placed = setup(cfg_m, data, schedule, device)
            x, y = _tensors(*spec.train_batch(data, cfg_m, 1), device)
            fastest = spec.fastest(lambda: placed.forward_backward(x, y), devices.sync)
            with ActivationBytes(placed.model) as watch:
                placed.forward_backward(x, y)
            seconds.setdefault(schedule, []).append(fastest)
            activations.setdefault(schedule, []).append(watch.peak)
    return spec.sweep_result(dist.get_world_size(), seconds, activations)


def _largest(value: float) -> float:
    """The largest of this value over the ranks."""
    t = torch.tensor(float(value), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def _train_all(cfg: spec.Config, data, device) -> dict:
    """What `run` shows: every mode trained from the same start (single_device first), a row
    each, the losses, and the bubble sweep."""
    rows, losses = [], {}
    for mode in ("single_device", *spec.modes(cfg, "torch")):
        history, placed, _ = train(cfg, data, mode, device)
        losses[mode] = history.train_loss
        held = parallel.state_bytes(placed.model, placed.optimizer)
        rows.append(
            dataclasses.asdict(
                spec.ModeResult(
                    mode,
                    placed.devices,
                    int(_largest(held["params"]) // 4),
                    int(_largest(held["params"] + held["optimizer"])),
                    placed.comm_bytes,
                    None,
                    "",
                    *spec.loss_diffs(history.train_loss, losses["single_device"]),
                    1 / max(history.steps_per_s, 1e-9),
                    history.train_loss[-1],
                )
            )
        )
    sweep = bubble_sweep(cfg, data, device) if cfg.sweep else None
    return {"rows": rows, "losses": losses, "sweep": sweep}


def worker(cfg: spec.Config, out_dir, mode: str = "train") -> None:
    """One rank started by torchrun. train: `run`'s work; parity: per mode step 1's loss and
    gradients and the cfg.steps losses; compare*: cfg.strategy trained from the start weights in
    out_dir. Rank 0 writes the results."""
    with parallel.process_group() as device:
        data = spec.load_data(cfg)
        out = pathlib.Path(out_dir)
        if mode == "train":
            result = _train_all(cfg, data, device)
            if dist.get_rank() == 0:
                (out / "train").mkdir(parents=True, exist_ok=True)
                (out / "train" / "result.json").write_text(json.dumps(result))
        elif mode == "parity":
            for name in ("single_device", *spec.modes(cfg, "torch")):
                history, _, grads = train(cfg, data, name, device)
                if dist.get_rank() == 0:
                    parallel.save_result(out / name, history.train_loss, grads)
        else:
            history = loop.History()
            weights = load_start_weights(out_dir)
            train(
                cfg,
                data,
                cfg.strategy,
                device,
                weights,
                ctx=loop.Context(turn=relayed_turn()),  # the compare's turns, on rank 0
                history=history,
                compile=parallel.COMPARE_MODES[mode],
            )
            if dist.get_rank() == 0:
                save_record(out_dir, history)


def _ranks(cfg: spec.Config) -> int:
    n = parallel.default_world_size(cfg.devices)
    spec.check_splits(cfg, n, n)
    return n


def run(cfg: spec.Config, run) -> dict:
    """`week1 run model_parallel --framework torch`: torchrun N ranks (TP over all of them, one
    pipeline stage each), every mode and one device from the same start; table, sweep, plot."""
    n = _ranks(cfg)
    out = run.path("ranks")
    parallel.torchrun("week1_torch.model_parallel", n, worker_args(cfg, out, "train"),
                      timeout_s=600 + 5 * cfg.steps, log_path=run.path("torchrun.log"))  # fmt: skip
    result = json.loads((out / "train" / "result.json").read_text())
    for mode, losses in result["losses"].items():
        for step, loss in enumerate(losses, start=1):
            run.log(step, **{f"{mode}_train_loss": loss})
    rows = [spec.ModeResult(**row) for row in result["rows"]]
    return spec.summarise("torch", rows, result["sweep"], run)


def start_weights(cfg: spec.Config, case: str) -> dict:
    """The weights `week1 compare` starts `case` from in every run: spec.init_weights, the start
    both frameworks build, numpy arrays under state_dict names."""
    return spec.init_weights(cfg, spec.load_data(cfg).vocab_size)


def compare_run(cfg: spec.Config, case: str, weights: dict, ctx=loop.BARE):
    """`week1 compare model_parallel`: the case's mode in N torchrun ranks from `weights`
    (state_dict names, numpy); returns its Curves. The ranks print nothing here (ctx.show_progress
    is not used)."""
    _ranks(cfg)
    history = parallel.compare_in_processes(
        "week1_torch.model_parallel", dataclasses.replace(cfg, strategy=case), weights, ctx
    )
    return Curves.of(history)


if __name__ == "__main__":
    parallel.worker_main(worker, spec.Config, sys.argv[1:])
