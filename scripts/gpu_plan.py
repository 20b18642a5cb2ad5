"""The GPU check's plan: each stage's time limit on the GPU machine, and its estimate from a CPU
dry run (`bash scripts/gpu_check.sh --dry-run`), which this script reads back:

    python scripts/gpu_plan.py check [TOTAL_S]       the limits fit the total? (exit 2 if not)
    python scripts/gpu_plan.py estimate DRY_RUN_DIR  each stage's GPU estimate from the CPU
                                                     run in DRY_RUN_DIR; exit 2 if one does not
                                                     fit its limit, or the limits the total

How a stage is estimated (seconds on the GPU machine). Host work (imports, tracing, XLA and
inductor compiles, Python) is what the CPU run measures; it is scaled by HOST, the GPU
machine's host speed against this one: the env stage (imports and probes, nothing else) took
H200_ENV_S there on the first H200 run, so HOST = H200_ENV_S / this machine's env seconds
(the best of the dry run's three env stages; at most 1). Device work is counted, not
guessed: FLOPs of each timed call over the peak the first H200 run measured (torch, n=8192),
calls as week1.timing makes them. What neither can give is an allowance, named below with
its reason:
    CUDA_INIT_S        a process's CUDA context and cuBLAS handles
    GPU_TEST_S         one gpu-marked parity test (they skip on a CPU: no measurement)
    H200_LAB_S         one lab of the device sweep, the first H200 run's upper figure (the
                       sweep's CPU form computes GPU-sized work on the CPU: no proxy)
    GEMM_AUTOTUNE_S    XLA's autotuning of one GEMM shape and dtype (torch: cuBLAS heuristics)
    GPU_COMPILE        a compile for a GPU against the same compile for the CPU (autotuning)
    KERNEL_COMPILE_S   one Triton or Pallas kernel compiled for the GPU (interpreted on a CPU,
                       so the CPU run of gpu_kernels measures its imports, not its kernels)
The estimate is a model, printed with its basis per stage; the GPU run's stages.tsv is the
measurement that replaces it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOTAL_S = 420  # the whole default check: 7 minutes, compiles and autotuning included
# name -> limit on the GPU machine, seconds; the order is the script's
LIMITS = {
    "env": 20,
    "parity": 90,
    "devices": 80,
    "gpu_basics_jax": 30,
    "gpu_basics_torch": 30,
    "benchmark": 120,
    "gpu_kernels": 45,
}
GPU_WORKERS = 8  # pytest-xdist workers of the devices stage on the GPU machine (one GPU)

H200_ENV_S = 5.0  # the env stage on the first H200 run
H200_LAB_S = 15.0  # one lab of the device sweep there: 10-15 s (real sizes' compute, no watch)
H200_PEAK_TFLOPS = {"fp32": 50.9, "tf32": 403.0, "bf16": 778.0, "fp16": 778.0}  # torch, n=8192
CUDA_INIT_S = 5.0
GPU_TEST_S = 3.0
GEMM_AUTOTUNE_S = {"jax": 1.0, "torch": 0.1}
GPU_COMPILE = 1.5
DP_HABITS_S = 10.0  # the benchmark's data-parallel row (one GPU) and loop-habit rows
KERNEL_COMPILES, KERNEL_COMPILE_S = 8, 2.0  # gpu_kernels: Triton and Pallas kernels, compiled


@dataclasses.dataclass
class Estimate:
    stage: str
    limit: int
    cpu_s: float | None
    seconds: float
    basis: str

    @property
    def fits(self) -> bool:
        return self.seconds <= self.limit


def stages_tsv(out: pathlib.Path) -> dict[str, tuple[str, float]]:
    """stage -> (status, seconds) of a run's stages.tsv."""
    found = {}
    for line in (out / "stages.tsv").read_text().splitlines():
        name, status, seconds, *_ = line.split("\t")
        found[name] = (status, float(seconds))
    return found


def calls(warmup: int, iters: int) -> int:
    """Calls week1.timing.time_calls makes: the first, warm-up, latency, three queued batches."""
    return 1 + warmup + iters + 3 * iters


def gpu_basics_device_s(framework: str) -> tuple[float, int]:
    """(seconds of compiles and timed calls, points) of gpu_basics' default GPU sweep."""
    from labs import gpu_basics as spec

    cfg = spec.Config()
    points = [(d, n) for d in cfg.dtype_list for n in cfg.size_list(on_gpu=True)]
    work = sum(
        calls(cfg.warmup, cfg.iters) * spec.matmul_flops(n) / (H200_PEAK_TFLOPS[d] * 1e12)
        for d, n in points
    )
    n_mib = cfg.bandwidth_mib * 2**20
    work += calls(cfg.warmup, cfg.iters) * 2 * n_mib / 4.3e12  # the in-place 2y
    return work + len(points) * GEMM_AUTOTUNE_S[framework], len(points)


def benchmark_estimate(out: pathlib.Path, host: float) -> tuple[float, str]:
    """The quick GPU sweep: every measurement's compile (the same workload's compile in the CPU
    run, scaled) and timed calls, two child processes, the DP and habit rows."""
    from labs import benchmark as spec

    rows = json.loads((out / "benchmark_results.json").read_text())["rows"]
    compile_cpu: dict[tuple, float] = {}
    for r in rows:
        if "median_s" not in r:
            continue
        key = (r["workload"], r["variant"])
        seconds = r.get("compile_s") or (r["first_s"] if r["variant"] == "torch.compile" else 0)
        compile_cpu[key] = max(compile_cpu.get(key, 0.0), seconds)
    cfg = spec.Config(quick=True)
    total, missing = 0.0, set()
    for point, precision, with_compile in spec.plan(cfg, on_gpu=True):
        variants = ["jax jit", "torch eager"] + (["torch.compile"] if with_compile else [])
        for variant in variants:
            if (point.workload, variant) not in compile_cpu and variant != "torch eager":
                missing.add((point.workload, variant))
            compile_s = compile_cpu.get((point.workload, variant), 0.0) * host * GPU_COMPILE
            step_s = point.flops / (H200_PEAK_TFLOPS[precision] * 1e12)
            warmup, iters = spec.repeats(cfg, step_s)
            total += compile_s + calls(warmup, iters) * step_s
    if missing:
        raise SystemExit(
            f"the CPU run measured no compile for {sorted(missing)}: rerun the dry run"
        )
    basis = (
        f"{len(spec.plan(cfg, on_gpu=True))} points: CPU compiles x {host:.2f} x {GPU_COMPILE}, "
        f"FLOPs / H200 peaks; + 2 processes, DP and habit rows"
    )
    return total + DP_HABITS_S, basis


def estimate(out: pathlib.Path) -> list[Estimate]:
    measured = stages_tsv(out)
    failed = [n for n, (status, _) in measured.items() if n in LIMITS and status != "pass"]
    if failed:
        raise SystemExit(f"the CPU run did not pass {failed}: no estimate from a failed stage")
    cpu = {name: seconds for name, (_, seconds) in measured.items()}
    env_s = min(seconds for name, seconds in cpu.items() if name.startswith("env"))
    host = min(1.0, H200_ENV_S / env_s)  # the best of the dry run's env stages (a busy machine)
    from week1 import catalog

    labs = sum(lab.implemented for lab in catalog.LABS)  # the sweep's cases, one per lab
    text = (out / "parity.txt").read_text()
    skipped = int(m.group(1)) if (m := re.search(r"(\d+) skipped", text)) else 0
    out_list = [
        Estimate("env", LIMITS["env"], cpu["env"], H200_ENV_S, "measured on the first H200 run"),
        Estimate(
            "parity",
            LIMITS["parity"],
            cpu["parity"],
            cpu["parity"] * host + CUDA_INIT_S + skipped * GPU_TEST_S,
            f"CPU run x {host:.2f} + CUDA init + {skipped} GPU tests x {GPU_TEST_S} s",
        ),
        Estimate(
            "devices",
            LIMITS["devices"],
            cpu["devices"],
            labs * H200_LAB_S / GPU_WORKERS + CUDA_INIT_S,
            f"{labs} labs x {H200_LAB_S} s (H200) / {GPU_WORKERS} workers + CUDA init",
        ),
    ]
    for fw in ("jax", "torch"):
        device_s, points = gpu_basics_device_s(fw)
        name = f"gpu_basics_{fw}"
        out_list.append(
            Estimate(
                name,
                LIMITS[name],
                cpu[name],
                cpu[name] * host + CUDA_INIT_S + device_s,
                f"CPU run x {host:.2f} + CUDA init + {points} points: autotuning "
                f"{GEMM_AUTOTUNE_S[fw]} s each, FLOPs / H200 peaks",
            )
        )
    seconds, basis = benchmark_estimate(out, host)
    seconds += 2 * (env_s * host + CUDA_INIT_S)  # each framework's child process starts
    out_list.append(Estimate("benchmark", LIMITS["benchmark"], cpu["benchmark"], seconds, basis))
    if "gpu_kernels" in cpu:
        start = 2 * (env_s * host + CUDA_INIT_S)  # `week1 bench`: a process per framework
        out_list.append(
            Estimate(
                "gpu_kernels",
                LIMITS["gpu_kernels"],
                cpu["gpu_kernels"],
                start + KERNEL_COMPILES * KERNEL_COMPILE_S,
                f"2 processes (imports x {host:.2f} + CUDA init) + {KERNEL_COMPILES} kernel "
                f"compiles x {KERNEL_COMPILE_S} s",
            )
        )
    return out_list


def limits_fit(total_s: int = TOTAL_S) -> str | None:
    """Why the stage limits cannot fit `total_s`, or None."""
    total = sum(LIMITS.values())
    if total > total_s:
        return f"the stage limits add up to {total} s, more than the {total_s} s total"
    return None


def summary(out: pathlib.Path, mode: str, seconds: int) -> int:
    """summary.json and summary.md from stages.tsv, written after every stage (a check killed
    mid-way still leaves its report); 0 if every stage so far passed or was skipped, else 1."""
    stages = []
    for line in (out / "stages.tsv").read_text().splitlines():
        name, status, secs, note = line.split("\t")
        stages.append({"stage": name, "status": status, "seconds": int(float(secs)),
                       "limit_s": LIMITS.get(name), "note": note,
                       "output": f"{name}.txt" if status != "skipped" else None})  # fmt: skip
    ok = all(s["status"] in ("pass", "skipped") for s in stages)
    doc = {"status": "pass" if ok else "FAIL", "mode": mode, "seconds": seconds,
           "total_s": TOTAL_S, "stages": stages, "parity": "parity.json",
           "benchmark": "benchmark_results.json", "results": "results.md"}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# gpu_check: {doc['status']} ({mode}, {seconds} s)", ""]
    lines += [f"- {s['stage']}: {s['status']} ({s['seconds']} s; {s['note']})" for s in stages]
    lines += [
        "",
        "Outputs: <stage>.txt per stage; parity.json (`week1 parity --from` / `--gpu`);",
        "benchmark_results.json, results.md and the benchmark's PNGs; plan.json (dry run).",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["limits"]:  # for the shell script: name limit, one a line
        print("\n".join(f"{name} {limit}" for name, limit in LIMITS.items()))
        return 0
    if argv[:1] == ["summary"]:
        return summary(pathlib.Path(argv[1]), argv[2], int(argv[3]))
    if argv[:1] == ["check"]:
        total = int(argv[1]) if len(argv) > 1 else TOTAL_S
        why = limits_fit(total)
        print(why or f"plan: {sum(LIMITS.values())} s of stage limits in a {total} s total")
        return 2 if why else 0
    if argv[:1] != ["estimate"] or len(argv) != 2:
        print("\n".join(__doc__.splitlines()[2:7]), file=sys.stderr)
        return 2
    out = pathlib.Path(argv[1])
    estimates = estimate(out)
    lines = [f"{'stage':<17} {'limit s':>7} {'CPU s':>7} {'GPU est s':>9}  basis"]
    for e in estimates:
        mark = "" if e.fits else "  OVER ITS LIMIT"
        lines.append(
            f"{e.stage:<17} {e.limit:>7} {e.cpu_s:>7.1f} {e.seconds:>9.1f}  {e.basis}{mark}"
        )
    total = sum(e.seconds for e in estimates)
    lines.append(f"{'total':<17} {sum(LIMITS.values()):>7} {'':>7} {total:>9.1f}  of {TOTAL_S} s")
    why = limits_fit() or next(
        (f"{e.stage}: estimated {e.seconds:.0f} s over its {e.limit} s" for e in estimates
         if not e.fits), None)  # fmt: skip
    lines.append(f"plan refused: {why}" if why else "plan fits")
    print("\n".join(lines))
    (out / "plan.json").write_text(
        json.dumps(
            {
                "total_s": TOTAL_S,
                "fits": why is None,
                "refused": why,
                "stages": [dict(dataclasses.asdict(e), fits=e.fits) for e in estimates],
            },
            indent=1,
        )  # fmt: skip
        + "\n"
    )
    return 2 if why else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
