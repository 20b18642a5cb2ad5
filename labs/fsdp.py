"""Lab: fully sharded data parallelism (FSDP, ZeRO-3), on the training_loop lab's char MLP.

What it teaches
---------------
Data parallelism (the data_parallel lab) keeps N full copies of the parameters,
gradients and AdamW moments: 16 bytes per parameter per device in fp32, however
many devices there are. FSDP keeps 1/N of each on every device. Before a layer
runs, its parameters are all-gathered; after the backward pass its gradients
are reduce-scattered, so each device receives the summed gradient of only its
own shard, and updates only that shard of the parameters and of the optimizer
state. The maths is that of single-device training on the global batch: the
parity tests check the loss, the gradients and 20-step trajectories (F32), and
the bf16 policy within the BF16 tier.

Torch (week1_torch/fsdp.py): FSDP2, `fully_shard`, parameters as DTensors
sharded on dim 0 (`shard_rows` writes out which rows each rank keeps; the run
checks it against every rank's local shards: "shard_rows == fully_shard's local
shards" and the head's rows per rank in the summary). It is called per block,
then on the root: each call makes one unit whose parameters are all-gathered
together just before that unit runs and freed after, so at most one block is
whole at a time. A transformer calls it on every block; the char MLP has no
blocks, so its two large layers, `fc1` and `head`, play their part, and the root
call takes what is left (the embedding, the LayerNorm). `--mixed_precision=true`
adds `MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`: the gathered
copies are bf16 (half the traffic), the sharded fp32 master weights are what the
optimizer updates, and gradients are reduced in fp32.

JAX (week1_jax/fsdp.py): the same idea with no wrapper. Every parameter gets a
`NamedSharding` over the mesh's `fsdp` axis (its first dimension that divides
evenly; a vector that divides by nothing, like the 83 head biases, stays
replicated), the optimizer moments get the same shardings as their parameters,
and the batch is sharded over all devices. `jax.jit` with those in/out
shardings partitions the step, and XLA inserts the collectives. Left to itself,
XLA gathers a parameter where it is used and keeps the whole copy until the
backward pass: less traffic, but the memory FSDP exists to save. So
`regathered_loss_and_grads` writes the gather out (a sharding constraint to
replicated) inside a function that `jax.checkpoint` recomputes for the backward
pass: the parameters are gathered for the forward pass and again for the
backward pass, as FSDP2 does. `week1 run fsdp --framework jax` reads the
compiled step's collectives from its HLO and prints their bytes against the
sharded parameters': look for 2 on the all-gather row. On a CPU look also for
0 on the reduce-scatter row and 1 on the all-reduce row: the CPU compiler
reduces the gradients with one fused all-reduce and each device keeps its
slice, where a reduce-scatter would move half the bytes.

A 2-D (`data`, `fsdp`) mesh (`--data_axis=D`) shards the parameters over the
fsdp axis only and replicates them across the data axis (HSDP: full sharding
inside a group of N/D devices, plain DP between groups, so the large gathers
stay on the fast links of one node).

Memory
------
`week1 run fsdp` prints the bytes per device, summed over the arrays' actual
shards (`addressable_shards`, DTensor `to_local()`), replicated next to
sharded. Look for a ratio close to N (the device count): the little that is
left over is the pieces that do not divide evenly (the 83-long head bias in
JAX; torch gives rank 0 the extra row of an odd dim 0). AdamW state is two
moments per parameter, plus one int32 step count in JAX and a float64 step per
tensor in torch.

Checkpoints
-----------
Sharded checkpoints: every device writes its own shards (orbax for JAX,
`torch.distributed.checkpoint` for torch), with metadata that says how they
tile each array. Restoring onto another device count reads the pieces each
new device needs: the tests save on 8 JAX devices and continue on 4, save
on 2 torch ranks and continue on 1, with the same losses as the uninterrupted
run. A checkpoint that does not fit the model stops with one line naming the
tensor and both shapes.

What FSDP costs on the wire
---------------------------
Per step and device, for P parameters of b bytes over N devices (ring
collectives): DP all-reduces the gradients, 2 (N-1)/N P b. FSDP all-gathers
the parameters for the forward pass, again for the backward pass (they were
freed in between), and reduce-scatters the gradients: 3 (N-1)/N P b, 1.5x
DP's traffic, in exchange for 1/N of the memory (`step_bytes`). For a 7B model
in bf16 (P b = 14 GB): DP 24.5 GB, FSDP 36.75 GB per device per step on 8
GPUs, ~80 ms over NVLink (~450 GB/s), which the compute of a real batch
hides. On 64 GPUs across 8 nodes the gathers cross the network (~50 GB/s
per GPU): 3 * 63/64 * 14 GB / 50 GB/s = ~0.83 s per step, which is why large
runs shard inside a node and replicate across nodes (the 2-D mesh above), and
prefetch the next unit's all-gather while the current one computes.

How to read the results
-----------------------
`week1 run fsdp --framework jax|torch` trains on N devices (JAX: 8 simulated
host devices on a CPU; torch: 2 gloo processes started by torchrun, or one per
GPU), saves a sharded checkpoint half way, continues, then restores that
checkpoint onto N/2 devices and continues again, and prints the final losses
of both next to single-device training, with the memory figures above.
`week1 bench fsdp` times a step vs device count; simulated CPU devices share
the same cores, so on a CPU it checks that the code runs, it is no speed claim.

Past one machine: the same settings as the data_parallel lab (`--nnodes
--node_rank --master_addr --master_port` for torch's c10d rendezvous,
`--coordinator --num_processes --process_id` or a SLURM job for JAX); the
training then spans the machines, and the checkpoint-and-resume-on-fewer part
is left out (each machine's shards would lie on its own disk).

What to look for
----------------
`week1 parity fsdp` compares each sharded run with one device: gradients equal
to float32 rounding, 20-step losses within accumulated rounding, the same after
a checkpoint written on N devices is restored on fewer, and the bf16
MixedPrecisionPolicy within the BF16 tier. `week1 bench fsdp` prints the step
time and the parameter + AdamW bytes per device for each device count: the
bytes fall as 1/N; the time, on a CPU, rises (FSDP2 pays Python-side hooks and
collectives on every unit per step, which on a model this small outweighs the
arithmetic).

`week1 compare fsdp` trains JAX FSDP on the mesh and torch FSDP2 under torchrun,
eager then torch.compile, from torch's start weights on the same global batches:
the curves lie on each other, the difference panel near 1e-6 (TRAJECTORY). On a
CPU JAX runs in as many processes as torch's ranks, one device each, joined by
jax.distributed over gloo: the same wire as torch's, so the speed ratio compares
the frameworks, not memory copies against sockets (8 simulated devices in one
process trade shards through memory). With
`--mixed_precision=true` torch gathers bf16 copies while JAX stays fp32: the gap
grows to around 1e-2, held to the BF16 tier.

History: docs/history.md#rajbhandari-2020
"""

from __future__ import annotations

import dataclasses

from week1.comparison import Case
from week1.config import UsageError, require
from week1.exercises import Exercise, Part
from week1.parallel import ParallelConfig
from week1.tolerances import BF16, TRAJECTORY

MULTI_DEVICE = (
    True  # the CLI gives JAX simulated host devices on a CPU (week1.parallel.use_host_devices)
)


@dataclasses.dataclass(frozen=True)
class Config(ParallelConfig):
    steps: int = 40
    warmup_steps: int = 10
    eval_every: int = 20  # `week1 compare`: validation loss every this many steps, and the last
    data_axis: int = 1  # JAX: size of the `data` axis of the (data, fsdp) mesh; 1: plain FSDP
    mixed_precision: bool = (
        False  # torch: MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)
    )

    def check(self) -> None:
        super().check()
        require(self.data_axis > 0, f"data_axis={self.data_axis}: must be > 0")
        require(
            self.steps >= 2, f"steps={self.steps}: must be >= 2 (a checkpoint is saved half way)"
        )
        if self.devices:
            check_mesh(self.devices, self.data_axis)


def checkpoint_step(cfg: Config) -> int:
    """The step at which runs save their sharded checkpoint (half way)."""
    return cfg.steps // 2


def check_mesh(devices: int, data_axis: int) -> None:
    require(
        devices % data_axis == 0,
        f"data_axis={data_axis} does not divide {devices} devices: the mesh is (data, fsdp) = "
        f"({data_axis}, {devices}/{data_axis})",
    )


def check_checkpoint_shapes(saved: dict, wanted: dict) -> None:
    """One line naming the first tensor whose saved shape differs from the model's (name -> shape
    dicts)."""
    for name in sorted(wanted):
        if name not in saved:
            raise UsageError(
                f"checkpoint does not fit the model: it has no {name!r} "
                f"(it holds {len(saved)} tensors: {', '.join(sorted(saved)[:4])}, ...)"
            )
        if tuple(saved[name]) != tuple(wanted[name]):
            raise UsageError(
                f"checkpoint does not fit the model: {name} is {tuple(saved[name])} there, "
                f"the model wants {tuple(wanted[name])}"
            )


def step_bytes(n_params: int, n_devices: int, bytes_per_value: int = 4) -> dict[str, float]:
    """Bytes each device sends per step: DP's gradient all-reduce vs FSDP's 2 all-gathers + 1
    reduce-scatter."""
    one_pass = (
        (n_devices - 1) / n_devices * n_params * bytes_per_value
    )  # one all-gather or reduce-scatter
    return {"data_parallel": 2 * one_pass, "fsdp": 3 * one_pass}


# `week1 compare fsdp --quick`: long enough for the loss to fall well below its start.
COMPARE_QUICK = {"steps": 300, "eval_every": 50, "warmup_steps": 20}
COMPARE_TEST = {"steps": 20, "eval_every": 10, "warmup_steps": 5}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case: JAX FSDP against torch FSDP2, from the same start on the same global batches;
    F32 curves over many steps (TRAJECTORY). Under --mixed_precision=true torch gathers bf16
    copies of the parameters and JAX stays fp32 (its reference): the BF16 tier."""
    return [Case("bf16", "val loss", BF16) if cfg.mixed_precision
            else Case("fp32", "val loss", TRAJECTORY)]  # fmt: skip


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "param_spec",
        hints=(
            (
                "FSDP shards every parameter (and its optimizer moments) over the devices: the "
                "first dimension the device count divides is split over the 'fsdp' mesh axis."
            ),
            (
                "Return P(None, ..., None, 'fsdp') with the axis at that dimension; P() "
                "(replicated) when no dimension divides."
            ),
        ),
        jax=Part(
            "week1_jax/fsdp.py::param_spec",
            (
                "test_fsdp.py::test_jax_fsdp_equals_single_device",
                "test_fsdp.py::test_jax_memory_per_device_is_about_1_over_n",
            ),
        ),
    ),
    Exercise(
        "shard_rows",
        hints=(
            (
                "FSDP2 keeps 1/N of every parameter on each rank, cut along dim 0; the forward "
                "all-gathers the N pieces back into the whole parameter."
            ),
            (
                "torch.chunk's rule: chunks of ceil(d0 / N) rows, so the last ranks' shards are "
                "shorter or empty; rank r keeps rows [r c, (r + 1) c)."
            ),
        ),
        torch=Part(
            "week1_torch/fsdp.py::shard_rows",
            "test_fsdp.py::test_torch_shards_are_dim0_chunks",
        ),
    ),
)
