"""What is applied to a model or a step from outside it: compilation, DDP and FSDP2, in
torchtitan's manner (`apply_compile`, `apply_ddp`, `apply_fsdp`). Model code knows nothing of
devices, precision or parallelism; a lab builds its model, then applies these.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def apply_compile(step: Callable, dynamic: bool | None = None) -> Callable:
    """`step` through torch.compile, traced whole: forward, `loss.backward()` and the optimizer
    update in one graph (Dynamo's trace_autograd_ops turns the backward into an
    autograd.grad in the graph and accumulates into .grad as eager does). Without it Dynamo
    breaks the graph at every backward(), and a step of k micro-batches became 2k + 1
    graphs with Python between them: grad_accumulation's k = 4 step took 2.7 ms compiled
    against 0.74 ms traced whole, on this CPU.

    Recompiling every step would be slower than eager; the step's inputs keep their shapes
    and the learning rate is a tensor (schedules.lambda_lr), so one compilation serves the
    run. A lab whose shapes do vary (the padded classifiers) is compiled with dynamic shapes
    after the first recompile, Dynamo's default; dynamic=True compiles with dynamic shapes
    from the first call, for a step whose shapes vary from its second call on (word2vec's
    batches), so no recompilation lands inside the timed steps.

    Not for a step over an FSDP2 model (check_whole_step): the backward traced into the graph
    leaves FSDP2's hooks out, the reduce-scatter of the gradients with them. Measured on the
    fsdp lab's model, 2 ranks, 50 steps on one batch: the loss went to 0.003 eager and stayed
    at 4.5 compiled whole, at a quarter of the step time. The fsdp lab compiles the model only.
    """
    compiled = torch.compile(step, dynamic=dynamic)
    return torch._dynamo.config.patch(trace_autograd_ops=True)(compiled)


def check_whole_step(model: torch.nn.Module) -> None:
    """Refuse, in one line, to compile a whole step over a model sharded by FSDP2 (see
    apply_compile). FSDP2 is looked up only if something imported it: otherwise no model is
    sharded."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    if fsdp is not None and any(isinstance(m, fsdp.FSDPModule) for m in model.modules()):
        raise ValueError(
            f"{type(model).__name__} is sharded by FSDP2: compiling the whole step would leave "
            "its gradient reduce-scatter out; compile the model (torch.compile(model)) instead"
        )


def apply_ddp(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """`model` (on `device`) wrapped in DistributedDataParallel: every rank keeps a whole copy,
    and backward all-reduces (averages) the gradients over the process group, bucket by bucket
    while the backward pass goes on (Li et al. 2020, "PyTorch Distributed")."""
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def apply_fsdp(
    model: torch.nn.Module,
    device: torch.device,
    units: Iterable[torch.nn.Module],
    mixed_precision: bool = False,
) -> torch.nn.Module:
    """FSDP2's fully_shard on each of `units` (each gathered for its own forward and backward,
    then freed), then on the root, which takes the rest; in place, returned. Parameters become
    DTensors sharded on dim 0 over every rank. mixed_precision: compute in bf16, reduce
    gradients in fp32 (MixedPrecisionPolicy), the master weights staying fp32."""
    # Imported here: FSDP2 brings DTensor's operator tables, half a second of the start of
    # every torch process, and only the fsdp lab shards.
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if mixed_precision
        else MixedPrecisionPolicy()
    )
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model
