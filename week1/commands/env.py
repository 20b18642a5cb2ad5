"""`week1 env`: versions, devices, and which number formats the hardware runs fast.

Each framework is imported only here, at call time, and may be missing.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_rows() -> list[tuple[str, str]]:
    """The machine, without importing a framework: what a published figure must carry."""
    from week1.config import machine_memory_bytes

    return [
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("cpu", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("memory", f"{machine_memory_bytes() / 2**30:.1f} GiB"),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")),
    ]


def rows() -> list[tuple[str, str]]:
    out = machine_rows()
    for dist in (
        "numpy",
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "orbax-checkpoint",
        "chex",
        "torch",
        "tokenizers",
    ):
        out.append((dist, _version(dist)))
    try:
        import jax

        out.append(
            ("jax devices", ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices()))
        )
    except ImportError:
        pass
    try:
        import torch

        out.append(("torch threads", str(torch.get_num_threads())))
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            out += [
                ("cuda device", torch.cuda.get_device_name()),
                ("compute capability", f"{major}.{minor}"),
                ("bf16 supported", str(torch.cuda.is_bf16_supported())),
                ("TF32 tensor cores", "yes" if major >= 8 else "no (needs sm_80+)"),
                ("TF32 matmul on (torch)", str(torch.backends.cuda.matmul.allow_tf32)),
            ]
        else:
            out += [
                ("cuda device", "none (CPU)"),
                ("bf16 on CPU", "emulated or AVX512-BF16/AMX where present"),
            ]
    except ImportError:
        pass
    return out
