"""Lab: data parallelism, the training_loop lab's char MLP trained on several devices.

What it teaches
---------------
Data parallelism (DP) keeps a full copy of the parameters and optimizer state on
every device and splits each global batch of B rows into N equal shards of B/N.
Each device computes the loss and gradients of its shard; one all-reduce averages
the gradients; every device then applies the same update, so the copies never
drift apart. Because the loss is a mean, the average of N equal-size shard means
is the mean over the whole batch: DP training *is* single-device training on the
global batch, up to the order of float additions. That is what the parity tests
check, for the loss, every gradient tensor and a 20-step trajectory. (With
unequal shards the mean of means would weight rows unequally: hence the rule
that B must divide by N.)

JAX, three ways (week1_jax/data_parallel.py):
- `jax.pmap` with `lax.pmean`: the SPMD function runs once per device; the
  parameters carry a leading device axis (N copies) and the batch is reshaped
  to (N, B/N, ...). The oldest API; explicit, but the stacked copies show.
- `jax.jit` with a `Mesh` and `NamedSharding`: the step is the single-device
  step, unchanged. The batch is placed sharded over the mesh's `data` axis and
  the parameters replicated; XLA partitions the computation and inserts the
  all-reduce itself. The mesh uses Auto axes: with Explicit axes the model's
  embedding gather would have to name its output sharding, and the model code
  knows nothing about devices.
- `jax.shard_map`: per-device code again, on a mesh. Take the gradient of the
  *pmean'd* loss: with check_vma the transpose of pmean already sums the
  cotangents, so pmean'ing the gradients afterwards would be wrong (N times too big).

Torch (week1_torch/data_parallel.py): `DistributedDataParallel` in N processes,
launched by `torchrun` (gloo on CPU, nccl on GPU). Each process draws the same
global batch (batch k depends only on seed and k) and keeps rows
[rank*B/N, (rank+1)*B/N). DDP all-reduces (averages) gradients in buckets
during the backward pass, overlapping communication with computation.
`all_reduce_mean` writes that all-reduce out, one `dist.all_reduce` per tensor
after a plain backward, without buckets or overlap; the run checks it against
DDP's first-step gradients ("all-reduce by hand vs DDP" in the summary: float32
rounding at most; DDP divides each gradient by N before it sums, this after).

Past one machine
----------------
The same code runs across hosts on the real launchers, started by the same
`week1 run` on every machine (the launch settings are this lab's settings):

    # torch, on every node R = 0..N-1: torchrun's c10d rendezvous, hosted by node 0
    week1 run data_parallel --framework torch --nnodes=N --node_rank=R \
        --master_addr=$HOST0 --master_port=29500
    # JAX, on every host i = 0..P-1: jax.distributed.initialize(coordinator_address=
    # "HOST0:1234", num_processes=P, process_id=i), gloo collectives on CPUs
    week1 run data_parallel --framework jax --method=jit --coordinator=$HOST0:1234 \
        --num_processes=P --process_id=i

Inside a SLURM (or Open MPI) job of several tasks, leave the JAX three out:
`jax.distributed.initialize()` reads the job from the scheduler's environment
(scripts/slurm/ has a job script per framework).

After `jax.distributed.initialize` `jax.devices()` lists every host's devices; a
mesh over them and `jax.make_array_from_process_local_data` (each process gives
the rows of its own devices) make the jit version multi-host without change.
The test suite starts two "nodes" on 127.0.0.1 in each framework (two `week1
run` commands, one process each) and checks that their losses equal one
machine's run on the same global batch.

What DP costs on the wire
-------------------------
A ring all-reduce of G bytes over N devices sends 2 (N-1)/N G bytes per device
(reduce-scatter, then all-gather), whatever N is: see `allreduce_bytes`. With
P parameters and fp32 gradients G = 4P. For this lab's model (P = 73,243) that
is 0.5 MB per step on 8 devices: nothing. For a 7B model with bf16 gradients,
G = 14 GB, 24.5 GB per device per step on 8 GPUs. In one node NVLink moves
~450 GB/s per direction per H100: ~55 ms, hidden behind the backward pass. On
64 GPUs across 8 nodes the ring crosses the network, ~50 GB/s per GPU (400 Gb/s
InfiniBand): 2 * 63/64 * 14 GB / 50 GB/s = ~0.55 s per step, which the backward
pass of a modest batch no longer hides: hierarchical (in-node, then across
nodes) all-reduce, gradient accumulation (fewer all-reduces per sample) and
sharding (the fsdp lab) are the answers.

How to read the results
-----------------------
`week1 run data_parallel --framework jax` trains with each method in turn
(`--method=pmap|jit|shard_map`, default all) on `--devices` devices (0: all; 8
simulated host devices on a CPU) and prints each method's final loss next to
the single-device run's. `--framework torch` launches torchrun itself (2 gloo
processes on a CPU, one per GPU otherwise). `week1 bench data_parallel` times
a step vs device count: simulated CPU devices share the same cores, so on a
CPU these numbers check that the code runs, they are not a speed claim.

What to look for
----------------
`week1 parity data_parallel` compares every method with the training_loop lab's
own single-device loop: the first-step loss should match exactly and the
gradients to float32 rounding (around 1e-8, far inside the F32 tier); over 20
steps the losses drift apart only by accumulated rounding (1e-7 to 1e-6).
JAX DP against torch DDP differs by the frameworks' own rounding, a little
more. `week1 bench data_parallel` prints the step time per device count: on one
CPU, more (simulated) devices only add per-device overhead and collectives
through memory, so there the times say the code runs, not how it scales.

`week1 compare data_parallel` trains JAX jit on the mesh (`--method=pmap` or
`shard_map` for another) and torch DDP under torchrun, eager then torch.compile,
from torch's start weights on the same global batches: in the PNG the curves lie
on each other and the difference panel stays near 1e-6 (rounding, far inside
TRAJECTORY). On a CPU jit runs in as many processes as torch's ranks (one device
each, jax.distributed over gloo), so both sides send their gradients over the
same kind of wire; pmap and shard_map keep to one process's simulated devices.
Most of such a step is that all-reduce (`week1 bench data_parallel`: one process
against two), which compiling the model does not shorten.

History: docs/history.md#goyal-2017
"""

from __future__ import annotations

import dataclasses

from week1.comparison import Case
from week1.config import require
from week1.exercises import Exercise, Part
from week1.parallel import ParallelConfig
from week1.tolerances import TRAJECTORY

METHODS = ("pmap", "jit", "shard_map")

MULTI_DEVICE = (
    True  # the CLI gives JAX simulated host devices on a CPU (week1.parallel.use_host_devices)
)


@dataclasses.dataclass(frozen=True)
class Config(ParallelConfig):
    method: str = "all"  # JAX only: pmap, jit, shard_map or all
    eval_every: int = 20  # `week1 compare`: validation loss every this many steps, and the last

    def check(self) -> None:
        super().check()
        require(
            self.method in METHODS + ("all",),
            f"method={self.method!r}: allowed {', '.join(METHODS)}, all",
        )


def allreduce_bytes(n_params: int, n_devices: int, bytes_per_value: int = 4) -> float:
    """Bytes each device sends in one ring all-reduce of the gradients: 2 (N-1)/N * P * bytes."""
    return 2 * (n_devices - 1) / n_devices * n_params * bytes_per_value


# `week1 compare data_parallel --quick`: long enough for the loss to fall well below its start.
COMPARE_QUICK = {"steps": 300, "eval_every": 50, "warmup_steps": 20}
COMPARE_TEST = {"steps": 20, "eval_every": 10, "warmup_steps": 5}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case: the JAX method (cfg.method; jit for all) against torch DDP, from the same start
    on the same global batches; F32 curves over many steps (TRAJECTORY)."""
    return [Case("jit" if cfg.method == "all" else cfg.method, "val loss", TRAJECTORY)]


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "pmap_step",
        hints=(
            (
                "Data parallelism on N devices: each computes loss and gradients on its B/N rows; "
                "one all-reduce makes every replica's gradients the global mean; each applies the "
                "same update."
            ),
            (
                "Inside jax.pmap(step, axis_name='data'): lax.pmean((loss, grads), 'data') between "
                "parallel.loss_and_grads and parallel.apply_update (equal shards: the mean of the "
                "means is the global mean)."
            ),
        ),
        jax=Part(
            "week1_jax/data_parallel.py::pmap_strategy.step",
            "test_data_parallel.py::test_jax_data_parallel_equals_single_device[pmap]",
        ),
    ),
    Exercise(
        "all_reduce_mean",
        hints=(
            (
                "What DDP does in backward: after each rank's backward on its B/N rows, every "
                "rank's gradients become the mean over the ranks."
            ),
            (
                "torch.distributed: dist.all_reduce(g, op=dist.ReduceOp.SUM) sums a tensor over the"
                " ranks in place; then divide by dist.get_world_size()."
            ),
        ),
        torch=Part(
            "week1_torch/data_parallel.py::all_reduce_mean",
            "test_data_parallel.py::test_torch_hand_all_reduce_equals_ddp",
        ),
    ),
)
