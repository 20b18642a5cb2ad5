"""`week1 env`: versions, devices, and which number formats the hardware runs fast.

Each framework is imported only here, at call time, and may be missing.
"""

from __future__ import annotations

import importlib.metadata
import platform


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def rows() -> list[tuple[str, str]]:
    out = [("python", platform.python_version()), ("platform", platform.platform())]
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
