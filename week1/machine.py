"""The machine a figure was measured on, framework-free: what labs, the benchmark's results
and every CLI report carry beside their numbers (CPU, cores, memory, load, NVIDIA GPUs).

These probes read the operating system only (/proc, os, nvidia-smi) and import no framework,
so a lab may use them (labs never import week1.commands); `week1 env`, the doctor, builds on
them. Tests replace them on week1.commands.env to stage a machine.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess

from week1.config import machine_memory_bytes


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


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="utf-8") as f:
            quota, period = f.read().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores or 1


def load_average() -> float:
    """The 1-minute load average (runnable processes), 0 where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs the machine has, whatever the frameworks see: nvidia-smi's names, or the
    kernel driver's /proc entries where nvidia-smi is missing."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout
            names = [line.strip() for line in out.splitlines() if line.strip()]
            if names:
                return [f"{n.split(',')[0]} (driver {n.split(',')[-1].strip()})" for n in names]
        except (OSError, subprocess.SubprocessError):
            pass
    names = []
    root = "/proc/driver/nvidia/gpus"
    for gpu in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            with open(os.path.join(root, gpu, "information"), encoding="utf-8") as f:
                model = next(
                    (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("Model")), ""
                )
        except OSError:
            model = ""
        names.append(model or f"NVIDIA GPU {gpu}")
    return names


def machine_rows() -> list[tuple[str, str]]:
    """The machine, without importing a framework: what a published figure must carry."""
    return [
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("cpu", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("memory", f"{machine_memory_bytes() / 2**30:.1f} GiB"),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")),
    ]


def thread_env(env: dict, framework: str, threads: int) -> dict:
    """A child process's environment `env` with the same CPU threads for either framework:
    OMP_NUM_THREADS=threads (torch's intra-op pool), and at 1 XLA's CPU thread pool off too
    (--xla_cpu_multi_thread_eigen=false: the one thread count XLA takes from a flag). threads
    0 leaves the frameworks' defaults. `week1 bench` and the benchmark lab start their children
    so."""
    env = dict(env)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if threads == 1 and framework == "jax":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    return env


def compilation_cache_env() -> dict[str, str]:
    """JAX's persistent compilation cache, for every process the `week1` command and the tests
    start: XLA's compiled programs kept on disk (~/.cache/week1/jax, at most 1 GiB, least
    recently used dropped first), so a step compiles once per machine rather than once per
    process (a compare's workers, a resume, a second run: a short long_range run took 34 s
    cold and 10 s warm, its LSTM steps' compilation the difference). torch's Inductor keeps its
    compiled kernels the same way, by default. The compile time a run reports (first_step_s)
    is then the cache's read. Set JAX_COMPILATION_CACHE_DIR to put it elsewhere."""
    return {
        "JAX_COMPILATION_CACHE_DIR": os.path.expanduser("~/.cache/week1/jax"),
        # Programs that compile in under 0.1 s (the single operations of eager code, hundreds
        # per test) cost more to write than to compile again.
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.1",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(2**30),
    }
