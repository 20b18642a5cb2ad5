"""Lab: profiling a training step, with jax.profiler and torch.profiler.

What it teaches
---------------
Where a training step's time goes. The step is cut into phases, each ended by
a device sync so its time is its own (JAX and CUDA run asynchronously: without
the sync, a phase's work is billed to whichever later call waits for it):

    data              draw the numpy batch, move it to the device
    forward_backward  loss and gradients
    optimizer         the AdamW update

The first step also pays for compilation (jit traces and compiles on first
call; torch eager has nothing to compile), reported apart. Meanwhile the
framework's profiler records a trace: every phase is a named annotation
(`jax.profiler.TraceAnnotation`, `torch.profiler.record_function`), and inside
it the kernels / XLA operations that ran.

How to read the results
-----------------------
- The breakdown table: per phase the first-step time and the median and mean
  of the later steps; `sum of phases` should be the measured step time up to
  timer overhead (the tests hold it to 10%).
- The top-operations table: where forward_backward and optimizer spend their
  time, by operation (XLA fusions for JAX, aten ops for torch).
- The trace: open `trace/` in TensorBoard (`tensorboard --logdir <run>/trace`,
  with the profile plugin) or drop the .json(.gz) file on https://ui.perfetto.dev.

Run it:  week1 run profiling --framework jax           (the char LM's training step)
         week1 run profiling --framework torch --compile (forward_backward through torch.compile)
         week1 profile <lab> --framework torch          (any lab with a profile workload)

History: docs/history.md#frameworks-2016
"""

from __future__ import annotations

import dataclasses

from week1 import charlm
from week1.config import require
from week1.exercises import Exercise, Part
from week1.profiler import PROFILE_STEPS, TOP_OPS


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    profile_steps: int = (
        PROFILE_STEPS  # steps traced and timed (the first one includes compilation)
    )
    top_ops: int = TOP_OPS  # rows of the top-operations table
    checkpoint_every: int = 0

    def check(self) -> None:
        super().check()
        require(
            self.profile_steps >= 2,
            f"profile_steps={self.profile_steps}: must be >= 2 (1 compile + timed)",
        )
        require(self.top_ops > 0, f"top_ops={self.top_ops}: must be > 0")


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "grads_of",
        hints=(
            (
                "The forward-backward phase the profiler times: the loss and the gradients of the "
                "char LM's loss_fn, nothing else."
            ),
            (
                "jax: nnx.value_and_grad(base.loss_fn)(model, x, y). torch: zero the grads "
                "(set_to_none), loss = base.loss_fn(...), loss.backward(), return the loss."
            ),
        ),
        jax=Part(
            "week1_jax/profiling.py::grads_of",
            "test_profiling.py::test_trace_parses_and_breakdown_adds_up[jax]",
        ),
        torch=Part(
            "week1_torch/profiling.py::grads_of",
            "test_profiling.py::test_trace_parses_and_breakdown_adds_up[torch]",
        ),
    ),
)
