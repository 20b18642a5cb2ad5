"""Lab: mixed precision (bf16, fp16 with loss scaling) and the number formats under it.

What it teaches
---------------
The three formats differ in where their bits go (sign/exponent/mantissa):

    float32   1/8/23   max 3.4e38   smallest normal 1.2e-38   eps 1.2e-7
    float16   1/5/10   max 65504    smallest normal 6.1e-5    eps 9.8e-4
    bfloat16  1/8/7    max 3.4e38   smallest normal 1.2e-38   eps 7.8e-3

bf16 keeps fp32's range and gives up precision; fp16 keeps more precision but
overflows above 65504 and flushes gradients below ~6e-8 to zero. Mixed
precision keeps the parameters (master weights) and the optimizer in fp32,
runs the matmuls in bf16/fp16, and takes norms, softmax and the loss in fp32.

- JAX: a precision policy (week1_jax/precision.py) sets each Flax layer's
  `dtype` (compute) and `param_dtype` (storage); logits are cast to fp32.
- torch: `torch.autocast` picks the dtype per operation; params stay fp32.
- fp16 needs loss scaling: multiply the loss by S before the backward pass,
  divide the gradients by S, skip the step and halve S when they overflow, and
  double S after `growth_interval` good steps. torch's `GradScaler` does it; the
  JAX version is written out (DynamicLossScale), and the two produce the same
  scale sequence and skip the same steps.

How to read the results
-----------------------
- The number-format table comes from `jnp.finfo` / `torch.finfo`; the demos
  show 300*300 overflowing fp16, a 1e-8 gradient vanishing in fp16 and
  surviving when scaled by 2^16, and 1 + 2^-8 == 1 in bf16.
- The plot (mixed_precision.png in the run folder) overlays fp32, bf16 and
  fp16 training curves: on this small model they end within ~1e-3 nats of
  each other after 300 steps, and fp16 at the default scale skips no step. The
  lower panel draws each low precision's training loss minus fp32's, step by step.
- The table gives steps/s per precision and the ratio to fp32. On a CPU
  without native bf16/fp16 units the low precisions are often *slower*
  (conversions, no fast kernels); on a GPU with tensor cores they are faster.
  `week1 bench mixed_precision` adds memory: the bytes the backward pass keeps
  (activations), and the allocator's peak on a GPU.
- `week1 compare mixed_precision` trains each precision in both frameworks from torch's
  start on the same batches: fp32 overlaps to float32 rounding; bf16 and fp16 round in
  different places (XLA vs autocast kernels), so their curves drift apart by more, and are
  held to the BF16 tier (the difference panel shows how far).

Run it:  week1 run mixed_precision --framework jax   (or torch)
         week1 compare mixed_precision

History: docs/history.md#micikevicius-2018
"""

from __future__ import annotations

import dataclasses

from week1 import charlm, loop, report
from week1.comparison import Case
from week1.config import require
from week1.exercises import Exercise, Part
from week1.formats import FORMAT_COLUMNS, FORMATS
from week1.tolerances import BF16, TRAJECTORY

PRECISIONS = ("fp32", "bf16", "fp16")

# The demonstrations both frameworks compute, in each format: name -> what it shows.
DEMOS = {
    "300 * 300": "overflow: 90000 > fp16's max 65504 -> inf; bf16 has fp32's range",
    "gradient 1e-8": "underflow: below fp16's smallest subnormal (6e-8) -> 0",
    "1e-8 scaled by 2^16, unscaled in fp32": (
        "loss scaling: the scaled gradient is representable in fp16"
    ),
    "1 + 2^-8": "rounding: bf16's eps is 2^-7, so 1 + 2^-8 rounds to 1",
    "256 + 1": "rounding: bf16 keeps 8 significant bits, 257 needs 9",
}
LOSS_SCALE = 2.0**16  # the scale the demo uses (GradScaler's initial scale)


@dataclasses.dataclass(frozen=True)
class Config(charlm.Config):
    steps: int = 300
    eval_every: int = 100
    checkpoint_every: int = 0
    precisions: str = "fp32,bf16,fp16"  # which to train and bench, comma-separated
    init_scale: float = 2.0**16  # fp16 dynamic loss scaling (GradScaler's defaults)
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000

    def check(self) -> None:
        super().check()
        for name in self.precision_list:
            require(
                name in PRECISIONS,
                f"precisions={self.precisions!r}: {name!r} is not one of {', '.join(PRECISIONS)}",
            )
        require(self.init_scale > 0, f"init_scale={self.init_scale}: must be > 0")
        require(self.growth_factor > 1, f"growth_factor={self.growth_factor}: must be > 1")
        require(
            0 < self.backoff_factor < 1, f"backoff_factor={self.backoff_factor}: must be in (0, 1)"
        )
        require(self.growth_interval >= 1, f"growth_interval={self.growth_interval}: must be >= 1")

    @property
    def precision_list(self) -> list[str]:
        return [name.strip() for name in self.precisions.split(",") if name.strip()]

    @property
    def loss_scale(self) -> dict:
        """The dynamic loss-scaling settings, as keyword arguments for either framework's scaler."""
        return {
            "init_scale": self.init_scale,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
        }


# `week1 compare mixed_precision --quick`: a short run per precision.
COMPARE_QUICK = {"steps": 300, "eval_every": 100, "warmup_steps": 30}
COMPARE_TEST = {"steps": 20, "eval_every": 10, "warmup_steps": 5}  # CI: a few steps


def compare_cases(cfg: Config) -> list[Case]:
    """One case per precision of cfg.precisions, its validation loss: fp32 curves after many
    steps (TRAJECTORY); bf16 and fp16 under the BF16 tier (no tighter one exists for fp16: its
    10 mantissa bits round less than bf16's 7, so BF16 bounds it too)."""
    return [
        Case(name, "val loss", TRAJECTORY if name == "fp32" else BF16)
        for name in cfg.precision_list
    ]


def loss_scaling(history) -> dict:
    """fp16's loss scaling as a run saw it: {"scale": the scale after each step, "skipped":
    the steps whose gradients overflowed (not applied)}, from the numbers each fp16 step returns
    beside its loss (history.per_step); empty lists for the other precisions."""
    if "finite" not in history.per_step:
        return {"scale": [], "skipped": []}
    finite = history.per_step["finite"]
    return {
        "scale": list(history.per_step["scale"]),
        "skipped": [s for s, ok in zip(history.steps, finite, strict=True) if not ok],
    }


def summarise(run, framework: str, histories: dict, scaling: dict | None) -> dict:
    """Plot the training curves into the run folder; the summary: per precision, losses, speed,
    step time relative to fp32, and for fp16 the loss-scale outcome."""
    series = {f"{name} train": (h.steps, h.train_loss) for name, h in histories.items()}
    series.update({f"{name} val": (h.val_steps, h.val_loss) for name, h in histories.items()})
    panels = [
        report.Panel(series, "cross-entropy (nats)", styles={f"{n} val": "o--" for n in histories})
    ]
    if "fp32" in histories:  # the curves lie on top of each other: their differences from fp32
        base = dict(zip(histories["fp32"].steps, histories["fp32"].train_loss, strict=True))
        diffs = {}
        for name, h in histories.items():
            if name != "fp32" and all(s in base for s in h.steps):  # (a stopped run: fewer)
                diff = [v - base[s] for s, v in zip(h.steps, h.train_loss, strict=True)]
                diffs[f"{name} - fp32 train"] = (h.steps, diff)
        panels.append(report.Panel(diffs, "difference from fp32 (nats)"))
    title = f"{framework}: fp32 vs bf16 vs fp16"
    report.plot_panels(run.path("mixed_precision.png"), panels, title=title, xlabel="step")
    summary = {}
    for name, h in histories.items():
        summary.update({f"{name}/{k}": v for k, v in h.summary().items()})
        if "fp32" in histories and h.steps_per_s:
            summary[f"{name}/step time vs fp32"] = histories["fp32"].steps_per_s / h.steps_per_s
    if scaling is not None:
        summary["fp16/skipped steps"] = len(scaling["skipped"])
        summary["fp16/final loss scale"] = scaling["scale"][-1]
        summary["fp16/steps skipped"] = ", ".join(map(str, scaling["skipped"])) or "none"
    return summary


def run(
    cfg: Config, run, lab, number_formats, framework: str, arrays: str, compile: bool = False
) -> dict:
    """`week1 run mixed_precision` with the framework's module `lab` (its demos() and train())
    and lib/precision's number_formats: formats, demos, then the training curves in each of
    cfg.precisions. framework: the plot's name; arrays: whose numbers the tables show ("jnp",
    "torch"); compile: torch only."""
    report.table(f"number formats ({arrays}.finfo)", FORMAT_COLUMNS, number_formats(FORMATS))
    shown = lab.demos()
    report.table(
        f"demos ({arrays})",
        ["demo", *FORMATS, "what it shows"],
        [(demo, *(shown[demo][f] for f in FORMATS), why) for demo, why in DEMOS.items()],
    )
    data = charlm.load_data(cfg)
    ctx = loop.Context.of_run(run, compile)
    results = {name: lab.train(cfg, data, name, ctx=ctx.part(name)) for name in cfg.precision_list}
    return summarise(
        run,
        framework,
        {name: r[1] for name, r in results.items()},
        results["fp16"][2] if "fp16" in results else None,
    )


# Learner mode: the functions `week1 exercise` stubs, in the order to write them; `week1 check`
# grades each with the parity tests named.
EXERCISES = (
    Exercise(
        "loss_scaling",
        hints=(
            (
                "Dynamic loss scaling as torch's GradScaler: after an overflow halve the scale and "
                "reset the count of good steps; after growth_interval good steps in a row double "
                "it."
            ),
            (
                "jax (DynamicLossScale.update): everything with jnp.where on `finite`, no Python "
                "if. torch (train_step_scaled): scaler.scale(loss).backward(), "
                "scaler.step(optimizer), scaler.update(); step the scheduler only when the step was"
                " not skipped (the scale did not fall)."
            ),
        ),
        jax=Part(
            "week1_jax/lib/precision.py::DynamicLossScale.update",
            "test_mixed_precision.py::test_loss_scaler_follows_grad_scaler",
        ),
        torch=Part(
            "week1_torch/mixed_precision.py::train_step_scaled",
            "test_mixed_precision.py::test_fp16_overflow_skips_the_step_in_both",
        ),
    ),
)
