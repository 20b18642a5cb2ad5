"""What the multi-device labs (data_parallel, fsdp) share, framework-free: one config for the
parallel model, the rules a device count and a batch must obey, and a config passed to workers.

The model, data and optimizer are the training_loop lab's; `loop_config` turns a
parallel config into that lab's config for the same run.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from week1 import charlm
from week1.config import require

CPU_HOST_DEVICES = 8  # simulated XLA devices when JAX runs on the CPU


def host_device_flags(n: int = CPU_HOST_DEVICES) -> dict[str, str]:
    """The environment that gives a *new* JAX process `n` CPU devices (XLA reads it once, at
    start-up).

    Nothing sets this as a side effect of an import: the CLI passes it to the
    subprocess it starts (or sets it before its own first `import jax`).
    """
    return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}


def use_host_devices(n: int = CPU_HOST_DEVICES) -> bool:
    """Ask for `n` simulated CPU devices in *this* process, if JAX has not started yet.

    Returns False when it is too late (jax already imported) and the flag is not
    set: the caller then runs the multi-device work in a subprocess, or says why not.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return True
    if "jax" in sys.modules:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {host_device_flags(n)['XLA_FLAGS']}".strip()
    return True


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """The training_loop model trained on several devices: the fields data_parallel and fsdp
    share."""

    steps: int = 200
    batch_size: int = 64  # the global batch, split evenly over the devices
    lr: float = 3e-3
    seed: int = 0
    devices: int = (
        0  # 0: every JAX device (8 simulated on a CPU); torch: 2 CPU processes or one per GPU
    )
    block_size: int = 8
    n_embd: int = 24
    n_hidden: int = 256
    weight_decay: float = 0.01
    warmup_steps: int = 20
    final_lr: float = 3e-4
    val_fraction: float = 0.1

    def check(self) -> None:
        loop_config(
            self
        ).check()  # the model, optimizer and data settings mean what they mean there
        require(self.devices >= 0, f"devices={self.devices}: must be >= 0 (0: all available)")
        if self.devices:
            check_batch_split(self.batch_size, self.devices)


def loop_config(cfg: ParallelConfig) -> charlm.Config:
    """The training_loop lab's config for the same model, data and optimizer (dropout off:
    per-device dropout masks would differ from a single device's)."""
    shared = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(charlm.Config)
        if hasattr(cfg, f.name)
    }
    return charlm.Config(**shared, dropout=0.0)


def check_device_count(requested: int, available: int) -> None:
    require(
        requested <= available,
        f"devices={requested}: only {available} available (set XLA_FLAGS="
        f"--xla_force_host_platform_device_count=N for more simulated CPU devices)",
    )


def check_batch_split(batch_size: int, devices: int) -> None:
    require(
        batch_size % devices == 0,
        f"batch_size={batch_size} does not split over {devices} devices: use a multiple of "
        f"{devices}",
    )


def counts_to_time(available: int, batch_size: int) -> tuple[list[int], str]:
    """The device counts a bench times (1, 2, 4, 8: those there are that divide the batch), and a
    sentence naming the ones left out and why ("" when none is)."""
    counts = [n for n in (1, 2, 4, 8) if n <= available and batch_size % n == 0]
    reasons = [
        f"x{n} left out ({f'only {available} devices' if n > available else f'batch {batch_size}'}"
        f"{'' if n > available else f' does not split {n} ways'})"
        for n in (1, 2, 4, 8)
        if n not in counts
    ]
    return counts, "; ".join(reasons)


def config_args(cfg) -> list[str]:
    """cfg as `--key=value` arguments, to hand a config to worker processes on their command
    line."""
    return [f"--{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg)]
