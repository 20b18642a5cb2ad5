"""Where torch work runs: the one place the torch labs take their device from.

Every lab puts its model (`place`), its batches (`to_device`) and therefore its
optimizer state on `default_device()`: the GPU when there is one. Model code
never names a device. Labs call these through the module
(`devices.default_device()`), never a copy imported by name, so a test can patch
the device in one place and see every lab follow (tests/test_devices.py).
"""

from __future__ import annotations

import numpy as np
import torch


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place(module: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
    """The module's parameters and buffers moved to `device` (default: default_device()), in
    place."""
    return module.to(device or default_device())


def to_device(
    *arrays: np.ndarray, dtype: torch.dtype | None = None, device: torch.device | None = None
):
    """numpy arrays as tensors on `device` (default: default_device()), optionally cast to `dtype`.

    Integer ids become int64 when dtype is torch.long (what nn.Embedding and
    cross_entropy take). Returns a tuple, one tensor per array.
    """
    target = device or default_device()
    return tuple(torch.from_numpy(np.asarray(a)).to(device=target, dtype=dtype) for a in arrays)


def sync(_result=None) -> None:
    """Wait for queued device work: kernels run asynchronously on a GPU; the CPU is synchronous
    already."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def event_clock():
    """A stopwatch on the device's own clock (a torch.cuda.Event pair), or None on a CPU:
    `stop = event_clock()()` records the start, `read = stop()` queues the end behind the work
    queued since, `read()` waits for it and returns the seconds between the two on the device.
    week1.timing.time_calls takes it as `clock`."""
    if not torch.cuda.is_available():
        return None

    def start():
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()

        def stop():
            end.record()

            def read() -> float:
                end.synchronize()
                return begin.elapsed_time(end) / 1e3  # elapsed_time is in ms

            return read

        return stop

    return start


def cache_flush(mib: int = 256):
    """A call that overwrites `mib` MiB on the default device, more than any L2 cache holds
    (triton.testing.do_bench zeroes 256 MB before each timed call); time_calls' `flush`."""
    buffer = torch.empty(mib * 2**20 // 4, dtype=torch.int32, device=default_device())
    return buffer.zero_
