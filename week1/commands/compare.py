"""`week1 compare <lab>`: both frameworks from the same initial weights on the same batches.

For each case of the lab (week1/comparison.py), torch initialises the model; those weights go,
as numpy arrays under torch's names, to the JAX run (converted through the lab's literal
weight map), the torch eager run and the torch.compile run, so all three start identical and
see the same numpy batches. The train-loss curves should overlap within the case's tier; the
speeds (JAX jit, torch eager, torch.compile) are measured in this one run, the three runs
taking turns on the machine (commands/interleave.py), and reported as ratios.

`week1 compare --all [--quick]` runs every such lab in its own process (a lab on simulated
JAX devices needs a fresh one), then prints one summary table and writes it as Markdown and
JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from week1 import catalog, report
from week1.commands.interleave import Interleaved
from week1.comparison import Case, Curves
from week1.tolerances import measure

JAX, TORCH, COMPILED = "jax (jit)", "torch (eager)", "torch.compile"
STYLES = {JAX: "-", TORCH: "--", COMPILED: ":"}


def comparable_labs() -> list[str]:
    """The implemented labs whose spec offers compare_cases, in catalogue order."""
    return [
        lab.id
        for lab in catalog.LABS
        if lab.implemented and hasattr(catalog.spec(lab.id), "compare_cases")
    ]


def lab_config(lab_id: str, overrides: list[str], quick: bool):
    """The lab's Config: its COMPARE_QUICK settings under --quick, then the user's."""
    from week1.config import override

    spec = _spec(lab_id)
    quick_args = [f"--{k}={v}" for k, v in spec.COMPARE_QUICK.items()] if quick else []
    return override(spec.Config(), [*quick_args, *overrides])


def _spec(lab_id: str):
    spec = catalog.spec(lab_id)
    if not hasattr(spec, "compare_cases"):
        raise catalog.UsageError(
            f"lab {lab_id!r} has no training run to compare; labs that do: "
            f"{', '.join(comparable_labs())}"
        )
    return spec


def compare(lab_id: str, cfg, runs_root="runs", compile: bool = True, json_path=None) -> list:
    """Every case of the lab in JAX, torch eager and (compile=True) torch.compile, each run in
    its own process and the three taking turns (commands/interleave.py); prints a table and
    writes a PNG per case into one run folder; returns the cases' summary rows (also written to
    `json_path` when given)."""
    from week1.runs import Run

    spec = _spec(lab_id)
    runs = {TORCH: ("torch", False), JAX: ("jax", False)}  # name -> (framework, compiled)
    if compile:
        runs[COMPILED] = ("torch", True)
    rows = []
    with (
        Run(lab_id, "compare", cfg, root=runs_root, tensorboard=False) as run,
        Interleaved(lab_id, cfg, runs) as workers,
    ):
        for case in spec.compare_cases(cfg):
            report.console.print(f"[bold]{lab_id} / {case.name}[/bold]")
            curves = workers.case(case.name)
            row = summarise(lab_id, case, curves)
            print_case(lab_id, case, curves, row)
            row["png"] = str(plot_case(run.path(f"{case.name}.png"), lab_id, case, curves).name)
            rows.append(row)
            _write_curves(run.path(f"{case.name}_curves.json"), curves)
        run.close(summary={"cases": rows})
    report.console.print(f"run folder: {run.final}")
    if json_path is not None:
        pathlib.Path(json_path).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return rows


def summarise(lab_id: str, case: Case, curves: dict[str, Curves]) -> dict:
    """One summary row: final metric per framework, the largest train-loss difference JAX vs
    torch eager (torch the reference) and its headroom under the case's tier, speed ratios."""
    jax_c, torch_c = curves[JAX], curves[TORCH]
    if jax_c.steps != torch_c.steps:
        raise RuntimeError(
            f"{lab_id}/{case.name}: JAX logged steps {jax_c.steps[:3]}..., torch "
            f"{torch_c.steps[:3]}...: the runs did not take the same steps"
        )
    diff = measure(jax_c.train_loss, torch_c.train_loss, case.tier, lab_id, case.name)
    compiled = curves.get(COMPILED)
    return {
        "lab": lab_id,
        "case": case.name,
        "metric": case.metric,
        "steps": len(torch_c.steps),
        "jax": jax_c.evals[-1] if jax_c.evals else float("nan"),
        "torch": torch_c.evals[-1] if torch_c.evals else float("nan"),
        "jax_train_loss": jax_c.train_loss[-1],
        "torch_train_loss": torch_c.train_loss[-1],
        "max_abs_loss_diff": diff.max_abs,
        "max_rel_loss_diff": diff.max_rel,
        "tier": case.tier.name,
        "headroom": None if case.differs else diff.headroom,
        "within_tier": True if case.differs else diff.ok,
        "differs": case.differs,
        "steps_per_s": {name: c.steps_per_s for name, c in curves.items()},
        "first_step_s": {name: c.first_step_s for name, c in curves.items()},
        "torch_vs_jax": _ratio(torch_c, jax_c),
        "compile_vs_jax": _ratio(compiled, jax_c) if compiled else None,
        "compile_vs_torch": _ratio(compiled, torch_c) if compiled else None,
    }


def _ratio(c: Curves, base: Curves) -> float:
    return c.steps_per_s / base.steps_per_s if base.steps_per_s > 0 else float("nan")


def print_case(lab_id: str, case: Case, curves: dict[str, Curves], row: dict) -> None:
    base = curves[JAX].steps_per_s
    report.table(
        f"{lab_id} / {case.name}: {row['steps']} steps, same start and batches",
        ["framework", "final train loss", f"final {case.metric}", "steps/s", "vs JAX", "first s"],
        [
            (
                name,
                c.train_loss[-1],
                c.evals[-1] if c.evals else float("nan"),
                c.steps_per_s,
                c.steps_per_s / base if base > 0 else float("nan"),
                c.first_step_s,
            )
            for name, c in curves.items()
        ],
    )
    if case.differs:
        report.console.print(f"not the same start: {case.differs}")
    report.console.print(
        f"largest train-loss difference JAX vs torch over {row['steps']} steps: "
        f"{row['max_abs_loss_diff']:.3g} abs, {row['max_rel_loss_diff']:.3g} rel"
        + ("" if case.differs else f"; headroom {row['headroom']:.3g} of {case.tier.name}")
        + ("" if row["within_tier"] else " [bold red]OUTSIDE the tier[/bold red]")
    )


def plot_case(path, lab_id: str, case: Case, curves: dict[str, Curves]) -> pathlib.Path:
    """Three panels: train loss (smoothed), the case's metric, |loss - JAX loss| (log)."""
    steps = len(curves[JAX].steps)
    window = max(1, steps // 60)
    jax_loss = np.array(curves[JAX].train_loss)
    # Steps where the losses are bit-identical have no place on a log axis: left out (NaN).
    gap = {
        name: (c.steps, np.where(np.array(c.train_loss) == jax_loss, np.nan, np.abs(
            np.array(c.train_loss) - jax_loss)))
        for name, c in curves.items() if name != JAX
    }  # fmt: skip
    return report.plot_panels(
        path,
        [
            report.Panel(
                {n: (c.steps, report.smooth(c.train_loss, window)) for n, c in curves.items()},
                f"train loss (mean of {window})",
                styles=STYLES,
            ),
            report.Panel(
                {n: (c.eval_steps, c.evals) for n, c in curves.items()},
                case.metric,
                styles={n: s + "o" for n, s in STYLES.items()},
            ),
            report.Panel(
                gap, "|loss - JAX loss| (equal: not shown)", logy=True, styles={n: "." for n in gap}
            ),  # fmt: skip
        ],
        title=f"{lab_id} / {case.name}: JAX vs torch from the same weights"
        + (f" ({case.differs})" if case.differs else ""),
        xlabel="step",
    )


def _write_curves(path: pathlib.Path, curves: dict[str, Curves]) -> None:
    value = {name: dataclasses.asdict(c) for name, c in curves.items()}
    path.write_text(json.dumps(value) + "\n", encoding="utf-8")


# --- week1 compare --all ------------------------------------------------------------------------

SUMMARY_COLUMNS = ["lab / case", "metric", "JAX", "torch", "max |dloss|", "headroom", "torch/JAX",
                   "compile/JAX", "compile/torch"]  # fmt: skip


def compare_all(
    labs=None,
    quick: bool = False,
    runs_root="runs",
    compile: bool = True,
    markdown=None,
    json_path=None,
) -> int:
    """Each lab's compare in its own process, then one summary table; writes it as Markdown and
    JSON (default: compare_all.md / .json in the runs directory). Returns 0 when every lab ran
    and every case is within its tier, else 1."""
    labs = labs or comparable_labs()
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for lab_id in labs:
            out = pathlib.Path(tmp) / f"{lab_id}.json"
            command = [sys.executable, "-m", "week1", "compare", lab_id, f"--runs-dir={runs_root}",
                       f"--json={out}", *(["--quick"] if quick else []),
                       *([] if compile else ["--no-compile"])]  # fmt: skip
            report.console.rule(f"week1 compare {lab_id}")
            code = subprocess.run(command, env=dict(os.environ)).returncode
            if out.exists():
                rows.extend(json.loads(out.read_text(encoding="utf-8")))
            if code != 0:
                failed.append((lab_id, code))
    report.console.rule("summary")
    print_summary(rows, failed, quick)
    root = pathlib.Path(runs_root)
    markdown = pathlib.Path(markdown) if markdown else root / "compare_all.md"
    json_path = pathlib.Path(json_path) if json_path else root / "compare_all.json"
    markdown.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(summary_markdown(rows, failed, quick), encoding="utf-8")
    json_path.write_text(
        json.dumps({"quick": quick, "machine": _machine(), "cases": rows,
                    "failed": [{"lab": lab, "exit": code} for lab, code in failed]}, indent=1)
        + "\n", encoding="utf-8")  # fmt: skip
    report.console.print(f"summary: {markdown}, {json_path}")
    return 1 if failed or not all(r["within_tier"] for r in rows) else 0


def summary_rows(rows: list[dict]) -> list[list[str]]:
    """The summary's cells, formatted the same for the terminal and the Markdown file."""

    def num(v, spec=".4g"):
        return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)

    return [
        [
            f"{r['lab']} / {r['case']}",
            r["metric"],
            num(r["jax"]),
            num(r["torch"]),
            num(r["max_abs_loss_diff"], ".2g"),
            ("differs" if r["differs"] else num(r["headroom"], ".2g") + f" {r['tier']}")
            + ("" if r["within_tier"] else " OUT"),
            num(r["torch_vs_jax"], ".2f"),
            num(r["compile_vs_jax"], ".2f"),
            num(r["compile_vs_torch"], ".2f"),
        ]
        for r in rows
    ]


def print_summary(rows: list[dict], failed: list, quick: bool) -> None:
    report.compact_table(
        f"week1 compare --all{' --quick' if quick else ''}: final metric, largest train-loss "
        "difference, speed vs JAX",
        SUMMARY_COLUMNS,
        summary_rows(rows),
        caption="headroom: the worst |dloss| / (atol + rtol |loss|) of the tier; over 1 is OUT",
    )
    for r in rows:
        if r["differs"]:
            report.console.print(f"{r['lab']} / {r['case']}: not the same start: {r['differs']}")
    for lab_id, code in failed:
        report.console.print(f"[bold red]{lab_id}: compare failed (exit {code})[/bold red]")


def summary_markdown(rows: list[dict], failed: list, quick: bool) -> str:
    machine = _machine()
    lines = [
        f"# week1 compare --all{' --quick' if quick else ''}",
        "",
        f"Generated by `week1 compare --all{' --quick' if quick else ''}` on {machine['cpu']} "
        f"({machine['cores']} cores); each lab's JAX, torch eager and torch.compile runs start "
        "from the same weights and see the same batches. JAX and torch columns: the case's "
        "metric at the end; max |dloss|: the largest train-loss difference JAX vs torch eager "
        "over the run; headroom: that difference against the case's tier (over 1 fails); the "
        "last three columns are ratios of steps/s from the same run: torch eager and "
        "torch.compile to JAX, then torch.compile to torch eager. The three runs of a case, "
        "each in its own process, take turns on the machine (0.15 s or one read window each), so a "
        "slowdown of the machine part-way through falls on all three alike "
        "(week1/commands/interleave.py); data_parallel, fsdp and model_parallel time torch "
        "inside torchrun's ranks, and on a CPU all three time JAX in as many "
        "processes (one device each, jax.distributed over gloo: the same wire as torch's, where "
        "simulated devices in one process would trade arrays through memory); their process 0 "
        "takes the run's turns and the others wait for it in their next collective. "
        "Each loop queues its steps "
        "and reads the losses back once per log interval (on a GPU steps/s is device time, not "
        "one host round trip per step); steps/s is 1 / the step time of the fastest of those "
        "intervals after the first step: other work on the machine only adds time, and on a "
        "shared machine it can cover half of a short run (week1/loop.py, History.steps_per_s).",
        "",
        *report.markdown_table(SUMMARY_COLUMNS, summary_rows(rows)),
    ]
    lines += [f"- {r['lab']} / {r['case']}: not the same start: {r['differs']}"
              for r in rows if r["differs"]]  # fmt: skip
    lines += [f"- {lab_id}: compare failed (exit {code})" for lab_id, code in failed]
    return "\n".join(lines).rstrip() + "\n"


def _machine() -> dict:
    from week1.machine import machine_rows

    return dict(machine_rows())
