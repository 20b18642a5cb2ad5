"""`week1 bench [lab ...] [--json PATH]`: each lab's workload timed in JAX jit, torch eager and
torch.compile, one table per lab.

Every figure comes from week1.timing.time_calls, the same method for both frameworks: `ms` is
the device time per call (calls queued back to back, one wait), `latency` one call and its
wait (dispatch and the host's round trip included); a row whose latency is far above its ms is
dispatch-bound. On a GPU, torch rows timed with a CUDA-event clock show it too.

Each (lab, framework) runs in a process of its own (`python -m week1.commands.bench LAB FW
OUT.json [--key=value ...]`):
- a crash there (a segfault, an abort in a torchrun child) becomes one failed row of its
  table, the other labs still run, and the exit status at the end is 1;
- JAX starts fresh with the flags the lab needs: the multi-device labs get their 8
  simulated CPU devices (XLA reads its flags once per process), so no row goes missing
  because an earlier lab had already started JAX with one device.
Ratios are against the first variant of the table, measured in the same command. With
`--json PATH`, every figure is written with the machine it was measured on.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

from week1 import catalog, report
from week1.config import UsageError, override
from week1.machine import thread_env
from week1.parallel import host_device_flags

WORKER_TIMEOUT_S = 1800


def labs_with_bench() -> list[str]:
    """Implemented labs whose framework modules define bench(cfg) (read from the source: the
    parent process imports no framework)."""
    return [
        lab.id
        for lab in catalog.LABS
        if lab.implemented
        and "\ndef bench(" in (catalog.ROOT / "week1_jax" / f"{lab.id}.py").read_text()
    ]


def machine() -> dict:
    """What the figures were measured on, framework-free (each worker adds its framework's)."""
    from week1.machine import machine_rows

    return dict(machine_rows())


def _worker_env(lab_id: str, framework: str, threads: int = 0) -> dict:
    # The worker's notes come back as whole lines (wide COLUMNS); this process wraps them.
    env = thread_env(dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="1000"), framework, threads)
    if framework == "jax" and getattr(catalog.spec(lab_id), "MULTI_DEVICE", False):
        flags = env.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            env["XLA_FLAGS"] = f"{flags} {host_device_flags()['XLA_FLAGS']}".strip()
    return env


def run_worker(lab_id: str, framework: str, overrides: list[str], threads: int = 0) -> dict:
    """One framework's bench of one lab in a fresh process: {"timings": {...}, "notes": [...],
    "device": ...} or {"error": one line}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "result.json"
        command = [sys.executable, "-m", "week1.commands.bench", lab_id, framework, str(out)]
        try:
            done = subprocess.run(
                [*command, *overrides],
                capture_output=True,
                text=True,
                env=_worker_env(lab_id, framework, threads),
                timeout=WORKER_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
        notes = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if done.returncode != 0 or not out.exists():
            last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            how = (
                f"killed by signal {-done.returncode}"
                if done.returncode < 0
                else f"exit {done.returncode}"
            )
            return {"error": f"{how}: {last[0].strip()[:200]}", "notes": notes}
        return {**json.loads(out.read_text()), "notes": notes}


def busy_note() -> str | None:
    """A warning when other work keeps the CPU busy (the load average past half the cores):
    torch's OpenMP threads then spin against each other and the times mean little."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores / 2:
        return (
            f"the machine is busy (load {load:.1f} on {cores} cores): times are unreliable, torch "
            "eager most of all (OpenMP threads spin); rerun on an idle machine or with --threads=1"
        )
    return None


def bench_labs(
    lab_ids: list[str], overrides: list[str], json_path: str | None = None, threads: int = 0
) -> int:
    """Bench each lab in both frameworks; print a table per lab; 1 if any row failed.

    threads > 0 sets OMP_NUM_THREADS (torch's intra-op pool) and XLA's CPU thread count to it in
    every worker, the same for both frameworks."""
    lab_ids = lab_ids or labs_with_bench()
    for lab_id in lab_ids:  # refuse bad input before anything runs
        override(catalog.spec(lab_id).Config(), overrides)
        if lab_id not in labs_with_bench():
            raise UsageError(
                f"lab {lab_id!r} has no bench workload; labs with one: "
                f"{', '.join(labs_with_bench())}"
            )
    if json_path is not None:
        json_path = pathlib.Path(json_path)
        if json_path.is_dir() or not json_path.parent.exists():
            raise UsageError(f"--json {str(json_path)!r}: not a writable file path")
    if threads < 0:
        raise UsageError(f"--threads={threads}: must be >= 0 (0: the frameworks' defaults)")
    note = busy_note()
    if note:
        report.console.print(f"[bold yellow]note:[/] {note}")
    results, failed = {}, False
    for lab_id in lab_ids:
        results[lab_id] = {
            fw: run_worker(lab_id, fw, overrides, threads) for fw in catalog.FRAMEWORKS
        }
        failed |= any("error" in r for r in results[lab_id].values())
        print_table(lab_id, results[lab_id])
    if json_path is not None:
        document = {
            "machine": machine(),
            "command": ["week1", "bench", *sys.argv[2:]],
            "labs": results,
        }
        json_path.write_text(json.dumps(document, indent=2))
        report.console.print(f"figures written to {json_path}")
    return 1 if failed else 0


def print_table(lab_id: str, by_framework: dict) -> None:
    """One table of every variant of a lab (80 columns: short names, one memory column)."""
    rows, base = [], None
    for framework, result in by_framework.items():
        if "error" in result:
            rows.append((f"{framework}: FAILED", "-", "-", "-", result["error"][:40]))
            continue
        for name, t in result["timings"].items():
            base = base or t["median_s"]
            memory = ", ".join(f"{k} {v / 2**20:.3g}M" for k, v in t["memory"].items())
            latency = t.get("latency_s")
            rows.append(
                (
                    name,
                    t["median_s"] * 1e3,
                    latency * 1e3 if latency else "-",
                    base / t["median_s"],
                    t["first_s"],
                    memory or "-",
                )
            )
    iters = next(
        (t["iters"] for r in by_framework.values() for t in r.get("timings", {}).values()), 0
    )
    report.table(
        f"{lab_id}: ms per call ({iters} queued, one wait); latency: each call waited for; "
        "speed vs row 1",
        ["variant", "ms", "latency", "speed", "first s", "memory"],
        rows,
    )
    events = [
        f"{name} {t['device_s'] * 1e3:.4g} ms"
        for r in by_framework.values()
        for name, t in r.get("timings", {}).items()
        if t.get("device_s")
    ]
    if events:
        report.console.print("  on CUDA events: " + "; ".join(events), highlight=False)
    for framework, result in by_framework.items():
        for note in result.get("notes", []):
            report.console.print(f"  {note}", highlight=False, markup=False)
        if "error" in result:
            report.console.print(
                f"  {framework} failed: {result['error']}", highlight=False, markup=False
            )


def worker(lab_id: str, framework: str, out: str, overrides: list[str]) -> None:
    """In the bench's child process: time the lab's bench(cfg), write the figures as JSON."""
    cfg = override(catalog.spec(lab_id).Config(), overrides)
    module = catalog.framework_module(lab_id, framework)
    timings = module.bench(cfg)
    document = {
        "device": framework_device(framework),
        "timings": {name: t.as_dict() for name, t in timings.items()},
    }
    pathlib.Path(out).write_text(json.dumps(document))


def framework_device(framework: str) -> str:
    if framework == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax {jax.__version__} {device.platform}:{device.device_kind} x{jax.device_count()}"
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return f"torch {torch.__version__} {name}, {torch.get_num_threads()} threads"


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
