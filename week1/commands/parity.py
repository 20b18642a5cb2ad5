"""`week1 parity [lab]`: run the parity tests, then report every recorded comparison.

Where the numbers come from. Each parity test compares through
week1.tolerances.assert_close, which appends one JSON line per tensor to the file
named by $WEEK1_PARITY_REPORT: check, tensor, tier, rtol, atol, max_abs, max_rel,
headroom, ok, lab, test. This command sets the variable, runs pytest in a subprocess
with this module loaded as a plugin (`-p week1.commands.parity`: at the end of the
session it appends one line {"devices": {...}} naming the devices the tests ran
on), and reads the file back.

What it prints. By default one row per lab and check family (the checks of one test
function and tier whose names share a shape, "jax jit x8 ..." and "jax pmap x8 ...",
"... step 1" and "... step 51", are one family; the EXACT checks of a lab that all
passed are one row, "equal: ..."), with the worst max abs, max rel and headroom: the
worst |a - b| / (atol + rtol * |b|) under the row's own tier, the very quantity its
assert compares (1.0 = at the limit, above 1 fails). Labs and rows are sorted by
headroom, the closest to failing first, and coloured. `--detail [LAB]` prints the
per-tensor rows; `--json PATH` writes the document below (also when the run is stopped, by
SIGTERM at a time limit or Ctrl-C: what was recorded until then, exit status 128 + the
signal's number); `--markdown PATH` writes a
report for docs/ with its provenance and a PNG of headroom per lab and tier beside it
(PATH's stem + "_headroom.png"); `--from PATH` reports a saved document instead of
running the tests. Arguments for pytest go last, after `--`, with the options before
LAB (argparse fills positionals once): `week1 parity --json out.json adamw -- -k optax`.

The JSON document (FORMAT below; read back by --from and --gpu):
    {"format": "week1-parity/1", "command": "week1 parity ...", "date": ISO 8601 UTC,
     "exit_status": pytest's, "device": "CPU" or the GPU's name,
     "devices": {"jax": "gpu:NVIDIA H200 x1", "torch": "NVIDIA H200"},
     "machine": {"cpu": ..., "cores": ..., ...}, "versions": {"jax": ..., ...},
     "comparisons": [one record as above, ...]}

The GPU column. `week1 parity --gpu --json PATH` (no PATH after --gpu) runs the whole
suite, slow cases included, on a machine with an NVIDIA GPU: JAX and torch both on the GPU
(TF32 off on both sides, as parity_tests/conftest.py pins it; the bf16 cases in the BF16
tier), XLA_PYTHON_CLIENT_PREALLOCATE=false so that the two frameworks share the device's
memory in one process; it fails (exit 1) if either framework ran elsewhere. scripts/
gpu_check.sh runs it as its optional stage `parity_gpu` (GPU_CHECK_PARITY_GPU=1), which
writes gpu_report/parity_gpu.json. The summary looks for a GPU document at
gpu_report/parity_gpu.json, then gpu_report/parity.json in the checkout (GPU_RESULTS;
`--gpu PATH` names another, e.g. a copy kept in docs/); the column shows each family's
headroom on that device, matched by lab, family and tier. Until such a file exists the
column says there is no GPU run yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import tempfile

from week1 import catalog, report
from week1.config import UsageError
from week1.tolerances import REPORT_ENV

FORMAT = "week1-parity/1"
# Relative to the checkout (gpu_check.sh's default OUT): the full GPU run, then the gpu-marked one.
GPU_RESULTS = ("gpu_report/parity_gpu.json", "gpu_report/parity.json")
RUN_ON_GPU = "run"  # what `--gpu` without a PATH stands for
VERSIONS = ("numpy", "jax", "jaxlib", "flax", "optax", "torch", "transformers", "tokenizers")
NO_GPU = "pending: no GPU run yet"
NO_GPU_CELL = "pending"  # the GPU column's cells until a GPU run exists


# ---------------------------------------------------------------- running the suite


def run_parity(
    lab_id: str | None,
    pytest_args: list[str],
    *,
    detail: str | None = None,
    json_path: str | None = None,
    markdown_path: str | None = None,
    gpu_path: str | None = None,
    from_path: str | None = None,
) -> int:
    """Run (or load) the parity comparisons and report them; returns pytest's exit status."""
    if detail not in (None, "all"):
        catalog.require_implemented(detail)
        lab_id = lab_id or detail  # `--detail adamw` alone runs adamw's tests only
    on_gpu = gpu_path == RUN_ON_GPU
    if on_gpu:
        _require_gpu(from_path)
        if "-m" not in pytest_args:  # the whole suite: the slow cases too
            pytest_args = ["-m", "slow or not slow", *pytest_args]
    if from_path is not None:
        doc = load(from_path)
        code = 0
    else:
        command = ["week1", "parity", *([lab_id] if lab_id else [])]
        command += _flag("--detail", detail) + _flag("--json", json_path)
        command += _flag("--markdown", markdown_path)
        command += ["--gpu"] if on_gpu else _flag("--gpu", gpu_path)
        command += ["--", *pytest_args] if pytest_args else []
        env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if on_gpu else {}
        code, doc = run_tests(lab_id, pytest_args, shlex.join(command), env)
    if on_gpu:
        gpu, elsewhere = doc, off_the_gpu(doc["devices"])
        if elsewhere:
            report.console.print(f"[bold red]--gpu:[/] {elsewhere}")
            code = code or 1
    else:
        gpu = load(gpu_path) if gpu_path else _default_gpu()
    if lab_id:  # one lab's report (a saved or GPU document holds every lab)
        doc, gpu = _only(doc, lab_id), gpu and _only(gpu, lab_id)
    rows = merge(families(doc["comparisons"]), families(gpu["comparisons"]) if gpu else [])
    if detail:
        print_detail(doc, None if detail == "all" else detail)
    else:
        print_summary(doc, rows, gpu)
    if json_path:
        _write(json_path, json.dumps(doc, indent=1) + "\n")
        report.console.print(f"wrote {json_path}", highlight=False)
    if markdown_path:
        png = pathlib.Path(markdown_path).with_name(pathlib.Path(markdown_path).stem + "_headroom")
        png = plot_headroom(png.with_suffix(".png"), rows, doc, gpu)
        _write(markdown_path, markdown(doc, rows, gpu, png.name))
        report.console.print(f"wrote {markdown_path} and {png}", highlight=False)
    return code


def _require_gpu(from_path: str | None) -> None:
    """`--gpu` runs the suite: refused (exit 2) with --from, or where there is no NVIDIA GPU."""
    from week1.machine import nvidia_gpus

    if from_path is not None:
        raise UsageError("--gpu without a PATH runs the suite on the GPU; with --from, name the "
                         "GPU document: --gpu PATH")  # fmt: skip
    if not nvidia_gpus():
        raise UsageError("--gpu: this machine has no NVIDIA GPU (nvidia-smi and the driver "
                         "find none); --gpu PATH reads a GPU run's --json")  # fmt: skip


def off_the_gpu(devices: dict) -> str | None:
    """Why a --gpu run does not count as one (a framework missing or on the CPU), or None."""
    wrong = [f"{fw} ran on {devices.get(fw, 'nothing')}" for fw in ("jax", "torch")
             if devices.get(fw, "cpu").lower().startswith("cpu")]  # fmt: skip
    return "; ".join(wrong) + " (not the GPU)" if wrong else None


def _only(doc: dict, lab: str) -> dict:
    return {**doc, "comparisons": [c for c in doc["comparisons"] if lab_of(c) == lab]}


def _flag(name: str, value: str | None) -> list[str]:
    return [] if value is None else [name] if value == "all" else [name, value]


def run_tests(
    lab_id: str | None, pytest_args: list[str], command: str, env: dict | None = None
) -> tuple[int, dict]:
    """pytest over parity_tests/ (or one lab's file) in a subprocess (`env` added to its
    environment); its records as a document."""
    target = os.path.join(str(catalog.ROOT), "parity_tests")
    if lab_id is not None:
        catalog.require_implemented(lab_id)
        target = os.path.join(target, f"test_{lab_id}.py")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "parity.jsonl")
        try:
            code = subprocess.call(
                [sys.executable, "-m", "pytest", "-q", "-p", __name__, target, *pytest_args],
                env=dict(os.environ, **(env or {}), **{REPORT_ENV: path}),
                cwd=str(catalog.ROOT),
            )
        except KeyboardInterrupt as stop:  # SIGTERM (a time limit) or Ctrl-C: pytest is gone;
            code = 128 + getattr(stop, "signum", signal.SIGINT)  # keep what it recorded
        lines = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    with contextlib.suppress(json.JSONDecodeError):  # a line cut by the stop
                        lines.append(json.loads(line))
    devices = {}
    for line in lines:
        devices.update(line.get("devices", {}))
    return code, document([line for line in lines if "check" in line], devices, command, date, code)


def document(comparisons: list[dict], devices: dict, command: str, date: str, code: int) -> dict:
    """The JSON document of one parity run (the module docstring's format)."""
    from week1.machine import machine_rows

    versions = {}
    for dist in VERSIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    gpus = [name for name in devices.values() if not name.startswith("cpu")]
    return {
        "format": FORMAT,
        "command": command,
        "date": date,
        "exit_status": code,
        "device": gpus[0].split(":", 1)[-1].split(" x")[0] if gpus else "CPU",
        "devices": devices,
        "machine": dict(machine_rows()),
        "versions": versions,
        "comparisons": comparisons,
    }


def pytest_sessionfinish(session) -> None:
    """Plugin hook (in the pytest subprocess): record the devices the tests ran on."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"devices": _devices()}) + "\n")


def _devices() -> dict:
    """Each framework the tests imported: its default device ("cpu:cpu x8", "NVIDIA H200")."""
    found = {}
    if "jax" in sys.modules:
        import jax

        device = jax.devices()[0]
        found["jax"] = f"{device.platform}:{device.device_kind} x{jax.device_count()}"
    if "torch" in sys.modules:
        import torch

        from week1_torch.lib import devices

        device = devices.default_device()
        found["torch"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return found


def load(path: str) -> dict:
    """A document written by --json (this machine's or a GPU machine's)."""
    try:
        doc = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable parity document ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"{path}: not a {FORMAT} document (write one with week1 parity --json)")
    return doc


def _default_gpu() -> dict | None:
    found = [catalog.ROOT / p for p in GPU_RESULTS if (catalog.ROOT / p).exists()]
    return load(str(found[0])) if found else None


def _write(path: str, text: str) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- families


@dataclasses.dataclass(frozen=True)
class Family:
    """The worst of a group of comparisons: one row of the summary."""

    lab: str
    test: str  # the test function ("" for a lab's folded equality checks)
    compared: str
    tier: str
    n: int
    max_abs: float
    max_rel: float
    headroom: float
    failed: int

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What a CPU row and a GPU row must share to be one line."""
        return (self.lab, self.tier, self.test, self.compared)


@dataclasses.dataclass(frozen=True)
class Row:
    """A summary line: the family measured here (cpu) and on the GPU run, either may be None."""

    cpu: Family | None
    gpu: Family | None

    @property
    def any(self) -> Family:
        return self.cpu or self.gpu

    @property
    def worst(self) -> float:
        return max(_order(f.headroom) for f in (self.cpu, self.gpu) if f is not None)


def lab_of(comparison: dict) -> str:
    """The record's lab (its test file); records without one: the check's first word."""
    return comparison.get("lab") or comparison["check"].split(" ", 1)[0]


def families(comparisons: list[dict]) -> list[Family]:
    """Group comparisons into families: same lab, tier and test function, and check names of
    one shape (as many words, with the same separators between them) that agree in at least
    half their words (see _split): the cases of one parametrised check.

    The check's leading lab name is dropped (the lab is a column). Where a family's names
    differ, the label shows the alternatives: numbers read N ("step N"), up to three words
    a/b/c ("jax jit/pmap/shard_map x8"), more *. A lab's EXACT families that all passed
    become one row "equal: a, b, ...": equality has no headroom to show, and --detail
    lists them.
    """
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for c in comparisons:
        lab = lab_of(c)
        c = {**c, "check": c["check"].removeprefix(lab + " ").strip() or c["check"]}
        test = c.get("test", "").split("::")[-1].split("[")[0]
        shape = re.sub(r"\w+", "w", c["check"])  # "jax jit x8 vs 1 device": "w w w w w w"
        groups.setdefault((lab, c["tier"], test, shape), []).append(c)
    out, equal = [], {}
    for (lab, tier, test, _), shaped in groups.items():
        for group in _split(shaped):
            if tier == "EXACT" and all(c["ok"] for c in group):
                equal.setdefault(lab, []).append((_label(group), group))
            else:
                out.append(_family(lab, test, tier, _label(group), group))
    for lab, parts in equal.items():
        names = ", ".join(sorted({name for name, _ in parts}))
        out.append(_family(lab, "", "EXACT", "equal: " + names, [c for _, g in parts for c in g]))
    return out


def _split(group: list[dict]) -> list[list[dict]]:
    """One family if at least half the words agree place by place (numbers always agree): the
    cases of one parametrised check. Otherwise different checks that share a shape ("jax vs
    torch norm", "ratio jax vs torch"): one family per name up to its numbers."""
    words = [re.findall(r"\w+", c["check"]) for c in group]
    agree = sum(
        len(set(ws)) == 1 or all(w.isdigit() for w in ws) for ws in zip(*words, strict=True)
    )
    if 2 * agree >= len(words[0]):
        return [group]
    parts: dict[str, list[dict]] = {}
    for c in group:
        parts.setdefault(re.sub(r"\d+", "#", c["check"]), []).append(c)
    return list(parts.values())


def _label(group: list[dict]) -> str:
    """The checks' name with its alternatives: numbers that differ N, other words a/b/c or *."""
    tokens = [re.findall(r"\w+|\W+", c["check"]) for c in group]
    label = []
    for values in zip(*tokens, strict=True):
        distinct = list(dict.fromkeys(values))  # in order of appearance
        if len(distinct) == 1:
            label.append(distinct[0])
        elif all(v.isdigit() for v in distinct):
            label.append("N")
        else:
            label.append("/".join(distinct) if len(distinct) <= 3 else "*")
    return "".join(label)


def _family(lab: str, test: str, tier: str, compared: str, group: list[dict]) -> Family:
    """The worst max abs, max rel and headroom of a group (an unknown value counts as worst)."""
    worst = [
        max((_float(c.get(k)) for c in group), key=_order)
        for k in ("max_abs", "max_rel", "headroom")
    ]
    failed = sum(not c["ok"] for c in group)
    return Family(lab, test, compared, tier, len(group), *worst, failed)


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _order(x: float) -> float:
    return math.inf if math.isnan(x) else x  # NaN (unknown) sorts as the worst


def merge(cpu: list[Family], gpu: list[Family]) -> list[Row]:
    """Rows of both runs matched by Family.key, the closest to failing first (labs grouped,
    the lab with the worst row first)."""
    by_key = {f.key: Row(f, None) for f in cpu}
    for f in gpu:
        row = by_key.get(f.key)
        by_key[f.key] = Row(row.cpu if row else None, f)
    lab_worst: dict[str, float] = {}
    for row in by_key.values():
        lab_worst[row.any.lab] = max(lab_worst.get(row.any.lab, -1.0), row.worst)
    return sorted(
        by_key.values(),
        key=lambda r: (-lab_worst[r.any.lab], r.any.lab, -r.worst, r.any.compared),
    )


# ---------------------------------------------------------------- formatting


def fmt(x: float | None) -> str:
    """A difference in at most 6 characters: 0, 0.33, 9.8e-4, 6e-15, inf."""
    if x is None or math.isnan(x):
        return "?"
    if x == 0 or math.isinf(x):
        return "0" if x == 0 else "inf"
    if 10 <= x < 1e4:
        return f"{x:.0f}"
    if 1e-3 <= x < 10:
        return f"{x:.2g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    text = f"{mantissa}e{int(exponent)}"
    return text if len(text) <= 6 else f"{float(mantissa):.0f}e{int(exponent)}"


def fmt_headroom(h: float | None) -> str:
    if h is not None and 0.01 <= h < 10:
        return f"{h:.2f}"
    return fmt(h)


def style(h: float | None) -> str:
    """Colour by how close to the limit: failed, within 2x, within 10x, comfortable."""
    if h is None or math.isnan(h) or h > 1:
        return "bold white on red"
    return "bold red" if h >= 0.5 else "yellow" if h >= 0.1 else "green"


def _cut(text: str, emphasis: str = ""):
    """A cell that never wraps: in a column too narrow for it, it ends in an ellipsis."""
    from rich.text import Text

    return Text(text, style=emphasis, no_wrap=True, overflow="ellipsis")


def summary_table(rows: list[Row], gpu: dict | None):
    """The summary as a rich Table that fits 80 columns: labs as bold section lines, one line
    per family (long names end in an ellipsis rather than wrap)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)
    t.add_column("lab / compared", min_width=12)  # the one column that gives way: "..."
    t.add_column("tier", no_wrap=True)
    for name in ("n", "max\nabs", "max\nrel", "head-\nroom"):
        t.add_column(name, justify="right", no_wrap=True)
    header = "GPU\n" + gpu["device"].removeprefix("NVIDIA ")[:8] if gpu else "no GPU\nrun yet"
    t.add_column(header, justify="right", no_wrap=True)
    lab = None
    for row in rows:
        f = row.any
        if f.lab != lab:
            lab = f.lab
            t.add_row(_cut(lab, "bold"))
        cpu = row.cpu
        t.add_row(
            _cut("  " + f.compared),
            f.tier,
            str(cpu.n) if cpu else "-",
            fmt(cpu.max_abs) if cpu else "-",
            fmt(cpu.max_rel) if cpu else "-",
            Text(fmt_headroom(cpu.headroom), style=style(cpu.headroom)) if cpu else "-",
            Text(fmt_headroom(row.gpu.headroom), style=style(row.gpu.headroom))
            if row.gpu
            else ("-" if gpu else ""),
        )
    return t


def summary_lines(doc: dict, rows: list[Row], gpu: dict | None) -> list[str]:
    """The lines printed under the summary: totals, the closest row, what headroom is."""
    comparisons = doc["comparisons"]
    labs = sorted({lab_of(c) for c in comparisons})
    scope = labs[0] if len(labs) == 1 else f"{len(labs)} labs"
    lines = [f"{scope} ({len(comparisons)} comparisons): {_verdict(doc)}; on {doc['device']}"]
    if rows:
        top = rows[0].any
        lines.append(
            f"closest to its limit: {fmt_headroom(rows[0].worst)}, {top.lab} {top.compared} "
            f"({top.tier})"
        )
    lines.append("headroom: worst |a-b| / (atol + rtol*|b|) of the tier; 1 = at its limit")
    lines.append(
        f"GPU: {gpu['device']}, run {gpu['date'][:10]}: {_verdict(gpu)}"
        if gpu
        else f"GPU: {NO_GPU} (week1 parity --gpu --json {GPU_RESULTS[0]} on a GPU machine)"
    )
    return lines


def _verdict(doc: dict) -> str:
    failed = sum(not c["ok"] for c in doc["comparisons"])
    verdict = f"{failed} outside their tier" if failed else "all within their tier"
    return verdict + (f", pytest exit status {doc['exit_status']}" if doc["exit_status"] else "")


def print_summary(doc: dict, rows: list[Row], gpu: dict | None, console=None) -> None:
    console = console or report.console
    console.print(summary_table(rows, gpu))
    for line in summary_lines(doc, rows, gpu):
        console.print(line, highlight=False, no_wrap=True, overflow="ellipsis")


def print_detail(doc: dict, lab: str | None, console=None) -> None:
    """Every comparison, one line per tensor, grouped by lab in the order recorded."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = console or report.console
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)
    t.add_column("lab / check", min_width=12)  # these two give way: their cells end in "..."
    t.add_column("tensor", min_width=8)
    t.add_column("tier", no_wrap=True)
    for name in ("max\nabs", "max\nrel", "head-\nroom"):
        t.add_column(name, justify="right", no_wrap=True)
    by_lab: dict[str, list[dict]] = {}
    for c in doc["comparisons"]:
        by_lab.setdefault(lab_of(c), []).append(c)
    for name, group in by_lab.items():
        if lab not in (None, name):
            continue
        t.add_row(_cut(name, "bold"))
        for c in group:
            h = _float(c.get("headroom"))
            t.add_row(
                _cut("  " + c["check"].removeprefix(name + " ")),
                _cut(c["tensor"]),
                c["tier"],
                fmt(c["max_abs"]),
                fmt(c["max_rel"]),
                Text(fmt_headroom(h), style=style(h)),
            )
    console.print(t)


# ---------------------------------------------------------------- Markdown and PNG


def markdown(doc: dict, rows: list[Row], gpu: dict | None, png_name: str) -> str:
    """The report for docs/: provenance, the summary, the tensors closest to their limit."""
    m = doc["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in doc["versions"].items())
    devices = ", ".join(f"{k} {v}" for k, v in doc["devices"].items()) or "not recorded"
    gpu_line = (
        f"`{gpu['command']}` on {gpu['date']}, device {gpu['device']} "
        f"({', '.join(f'{k} {v}' for k, v in gpu['devices'].items())}), "
        f"versions {', '.join(f'{k} {v}' for k, v in gpu['versions'].items())}"
        if gpu
        else f"{NO_GPU} (`GPU_CHECK_PARITY_GPU=1 bash scripts/gpu_check.sh` writes "
        f"`{GPU_RESULTS[0]}`: `week1 parity --gpu`, the whole suite on the GPU)"
    )
    out = [
        "# Parity report",
        "",
        "Every number below was measured by the command named here; regenerate this file with",
        "`week1 parity --markdown docs/parity.md` (it runs the whole parity suite).",
        "",
        f"- command: `{doc['command']}` (pytest exit status {doc['exit_status']})",
        f"- date: {doc['date']}",
        f"- machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory')}, "
        f"{m.get('platform')}, Python {m.get('python')}",
        f"- devices: {devices}",
        f"- versions: {versions}",
        f"- GPU column: {gpu_line}",
        "",
        "## Summary",
        "",
        *(f"- {line}" for line in summary_lines(doc, rows, gpu)[:2]),
        "",
        "Headroom is the worst ratio, over a family's tensors and their elements, of the",
        "observed difference to what the row's tier allows: |a - b| / (atol + rtol |b|), the",
        "quantity the tier's assert compares. 1.0 is at the limit; above 1 fails. One row per",
        "lab and check family (the checks of one test and tier whose names differ in numbers,",
        "N, or in words, a/b/c, * for more than three), closest to failing first.",
        "",
    ]
    table = []
    for row in sorted(rows, key=lambda r: -_order(r.worst)):
        f, cpu = row.any, row.cpu
        cells = (
            [fmt(cpu.max_abs), fmt(cpu.max_rel), _md_headroom(cpu.headroom)] if cpu else ["-"] * 3
        )
        gpu_cell = _md_headroom(row.gpu.headroom) if row.gpu else "-" if gpu else NO_GPU_CELL
        table.append((f.lab, f.compared, f.tier, cpu.n if cpu else "-", *cells, gpu_cell))
    columns = ["lab", "compared", "tier", "n", "max abs", "max rel", "headroom", "GPU"]
    out += report.markdown_table(columns, table, align="lllrrrrr")
    out += [
        f"![headroom per lab and tier]({png_name})",
        "",
        "## Tensors closest to their limit",
        "",
    ]
    closest = sorted(doc["comparisons"], key=lambda c: -_order(_float(c.get("headroom"))))[:15]
    out += report.markdown_table(
        ["lab", "check", "tensor", "tier", "max abs", "max rel", "headroom"],
        [
            (lab_of(c), c["check"], c["tensor"], c["tier"], fmt(c["max_abs"]),
             fmt(c["max_rel"]), _md_headroom(_float(c.get("headroom"))))
            for c in closest
        ],
        align="llllrrr",
    )  # fmt: skip
    tiers = {c["tier"]: (c.get("rtol"), c.get("atol")) for c in doc["comparisons"]}
    out += ["## Tiers", ""]
    out += report.markdown_table(
        ["tier", "rtol", "atol"],
        [(name, rtol, atol) for name, (rtol, atol) in sorted(tiers.items())],
        align="lrr",
    )
    out += [
        "Per-tensor rows: `week1 parity --detail [LAB]`; every comparison as JSON:",
        "`week1 parity --json PATH`.",
        "",
    ]
    return "\n".join(out)


def _md_headroom(h: float) -> str:
    text = fmt_headroom(h)
    return f"**{text} FAIL**" if _order(h) > 1 else f"**{text}**" if h >= 0.5 else text


def plot_headroom(path: pathlib.Path, rows: list[Row], doc: dict, gpu: dict | None) -> pathlib.Path:
    """Headroom per lab and tier on a log scale, the limit line at 1: the worst family of each
    (lab, tier), this run filled, the GPU run hollow. EXACT (equality) has nothing to plot;
    a difference of exactly 0 is drawn at the floor as a triangle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst: dict[tuple[str, str, str], float] = {}
    for row in rows:
        for where, f in (("cpu", row.cpu), ("gpu", row.gpu)):
            if f is not None and f.tier != "EXACT":
                key = (f.lab, f.tier, where)
                worst[key] = max(worst.get(key, -1.0), _order(f.headroom))
    labs = [lab.id for lab in catalog.LABS if any(k[0] == lab.id for k in worst)]
    labs += sorted({k[0] for k in worst} - set(labs))
    tiers = sorted({k[1] for k in worst})
    positive = [h for h in worst.values() if 0 < h < math.inf]
    floor = 10 ** math.floor(math.log10(min(positive, default=1e-3)) - 1)
    top = 10 ** math.ceil(math.log10(max([*positive, 1.0]) * 3))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(labs) + 2.5), 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, tier in enumerate(tiers):
        offset = (j - (len(tiers) - 1) / 2) * 0.12
        for where in ("cpu", "gpu") if gpu else ("cpu",):
            xs, ys, zero = [], [], []
            for i, lab in enumerate(labs):
                h = worst.get((lab, tier, where))
                if h is not None:
                    (zero if h == 0 else xs).append(i + offset + (0.04 if where == "gpu" else 0))
                    if h != 0:
                        ys.append(min(h, top))
            label = tier if where == "cpu" else f"{tier} ({gpu['device']})"
            face = colors[j % len(colors)] if where == "cpu" else "none"
            ax.scatter(
                xs,
                ys,
                marker="o",
                s=36,
                label=label,
                facecolors=face,
                edgecolors=colors[j % len(colors)],
            )
            ax.scatter(
                zero,
                [floor] * len(zero),
                marker="v",
                s=36,
                facecolors=face,
                edgecolors=colors[j % len(colors)],
            )
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1.2, label="tolerance limit")
    ax.text(
        0.99,
        0.02,
        "\u25bc no difference at all (drawn at the floor); EXACT checks are not drawn",
        transform=ax.transAxes,
        ha="right",
        fontsize=7,
    )
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, top)
    ax.set_xticks(range(len(labs)), labs, rotation=40, ha="right")
    ax.set_ylabel("headroom: |a-b| / (atol + rtol|b|)")
    ax.set_title(f"parity headroom per lab and tier ({doc['device']}, {doc['date'][:10]})")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
