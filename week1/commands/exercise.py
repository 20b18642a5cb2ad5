"""`week1 exercise`, `week1 check`, `week1 hint`: every lab as exercises, graded by its own
parity tests.

    week1 exercise LAB [--framework F] [--dir D] [--force]   write the stubs to D/LAB/...
    week1 exercise LAB --reset FUNCTION                      stub one function again
    week1 exercise --list                                    every lab's exercises, progress
    week1 check LAB [--framework F] [--dir D] [--watch] [--diff] [-v]
    week1 hint LAB [FUNCTION]                                the next hint

How `check` grades. It runs pytest in a subprocess over the parity test files the lab's
exercises name, with this module as a plugin (`-p week1.commands.exercise`) and a plan in
$WEEK1_EXERCISE_PLAN: which modules come from the learner's files (week1.exercises.Override,
a sys.meta_path finder installed when the plugin loads, before conftest imports anything),
and which tests grade which exercise. The plugin keeps only those tests (no torch.compile
case; slow ones are off by pytest's default -m), runs them in manifest order, skips the
exercises after the first failing one, and writes one JSON line per test phase. The
comparisons come from week1.tolerances ($WEEK1_PARITY_REPORT), as for `week1 parity`.
"""

from __future__ import annotations

import difflib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from week1 import catalog, exercises
from week1.config import UsageError
from week1.tolerances import REPORT_ENV

PLAN_ENV = "WEEK1_EXERCISE_PLAN"
FILES_ENV = "WEEK1_EXERCISE_FILES"  # module -> learner's file, for sitecustomize below
# Put first on PYTHONPATH, this makes every Python process of the run (pytest, and the workers
# the tests start: torchrun ranks, a fresh process reloading an export) import the learner's
# modules.
SITECUSTOMIZE = f"""\"\"\"week1 check: the learner's modules in place of the package's.\"\"\"
import json
import os

from week1 import exercises

exercises.install(json.loads(os.environ["{FILES_ENV}"]))
"""
SKIPPED_AFTER = "after the first failing exercise"

# ---------------------------------------------------------------- the pytest plugin

_plan = None
if os.environ.get(PLAN_ENV):
    _plan = json.loads(pathlib.Path(os.environ[PLAN_ENV]).read_text(encoding="utf-8"))
    if not any(isinstance(f, exercises.Override) for f in sys.meta_path):
        exercises.install(_plan["overrides"])  # sitecustomize did not run: another one won
_failed: set[int] = set()
_raised: dict[tuple[str, str], dict] = {}


def _exercise_of(nodeid: str) -> int | None:
    for i, e in enumerate(_plan["exercises"]):
        if any(exercises.matches(nodeid, s) for s in e["tests"]):
            return i
    return None


def pytest_collection_modifyitems(session, config, items):
    if _plan is None:
        return
    keep, drop = [], []
    for item in items:
        index = _exercise_of(item.nodeid)
        if index is None or "compile" in item.nodeid.lower():
            drop.append(item)
        else:
            item.week1_exercise = index
            keep.append(item)
    keep.sort(key=lambda item: item.week1_exercise)  # stable: file order within an exercise
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_runtest_setup(item):
    import pytest

    if _plan is not None and _plan["stop"] and any(i < item.week1_exercise for i in _failed):
        pytest.skip(SKIPPED_AFTER)


def pytest_runtest_makereport(item, call):
    import pytest

    if _plan is None or call.excinfo is None:
        return
    if call.excinfo.errisinstance((pytest.skip.Exception, pytest.xfail.Exception)):
        return
    error, chain = call.excinfo.value, []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    stub = next((e for e in chain if exercises.NOT_STARTED in str(e)), None)
    if stub is not None:  # the stub's own words, also where a wrapper (Triton's interpreter,
        # a torchrun rank's log) carries them
        said = re.search(rf"{exercises.NOT_STARTED} \S+: [\w.]+", str(stub)).group(0)
        message = f"NotImplementedError: {said}"
    else:
        text = _one_line(str(chain[0]))
        message = f"{type(chain[0]).__name__}: {text}" if text else type(chain[0]).__name__
    _raised[(item.nodeid, call.when)] = {"not_started": stub is not None, "message": message}


def _one_line(message: str) -> str:
    """The first line of an error; for numpy.testing's, its err_msg and largest differences."""
    lines = [s.strip() for s in message.strip().splitlines() if s.strip()]
    if not lines:
        return ""
    if lines[0].startswith(("Not equal to tolerance", "Arrays are not")):
        keep = [lines[0]] + [s for s in lines[1:2] if not s.startswith("Mismatch")]
        keep += [s.replace(" among violations", "") for s in lines if s.startswith("Max ")]
        return "; ".join(keep)
    return lines[0]


def pytest_runtest_logreport(report):
    if _plan is None:
        return
    index = _exercise_of(report.nodeid)
    if report.failed:
        _failed.add(index)
    if report.when != "call" and not report.failed and not report.skipped:
        return
    line = {"test": report.nodeid, "exercise": index, "when": report.when}
    line["outcome"] = report.outcome
    if report.skipped:
        line["skip"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    line |= _raised.get((report.nodeid, report.when), {})
    with open(_plan["outcomes"], "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


# ---------------------------------------------------------------- grading


def grade(
    plan_exercises: list[dict],
    files: dict[str, str],
    *,
    stop: bool = True,
    verbose: bool = False,
) -> list[dict]:
    """Run the tests of `plan_exercises` ({"name", "function", "tests"}) with `files` (module
    -> path) imported in place of the package's; one result per exercise: status ("passed",
    "not started", "failing", "not checked", "no tests"), tests, first failure, worst
    comparison."""
    selectors = [s for e in plan_exercises for s in e["tests"]]
    with tempfile.TemporaryDirectory() as tmp:
        plan = {
            "overrides": files,
            "exercises": plan_exercises,
            "stop": stop,
            "outcomes": os.path.join(tmp, "outcomes.jsonl"),
        }
        plan_path = os.path.join(tmp, "plan.json")
        pathlib.Path(plan_path).write_text(json.dumps(plan), encoding="utf-8")
        records = os.path.join(tmp, "parity.jsonl")
        pathlib.Path(tmp, "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        path = os.pathsep.join([tmp, str(catalog.ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path.rstrip(os.pathsep))
        env |= {PLAN_ENV: plan_path, REPORT_ENV: records, FILES_ENV: json.dumps(files)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", __name__, "-p", "no:cacheprovider"]
        command += exercises.test_files(selectors)
        done = subprocess.run(
            command, cwd=str(catalog.ROOT), env=env, capture_output=not verbose, text=True
        )
        outcomes = _read_jsonl(plan["outcomes"])
        comparisons = _read_jsonl(records)
    if not outcomes and done.returncode not in (0, 5):
        tail = (done.stdout or "").strip().splitlines()[-15:] if not verbose else []
        raise RuntimeError("pytest failed before any test ran:\n" + "\n".join(tail))
    return [
        _result(i, e, outcomes, comparisons, plan_exercises) for i, e in enumerate(plan_exercises)
    ]


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _result(index, exercise, outcomes, comparisons, plan_exercises) -> dict:
    mine = [o for o in outcomes if o["exercise"] == index]
    tests = {o["test"] for o in mine}
    failures = [o for o in mine if o["outcome"] == "failed"]
    ran = [o for o in mine if not (o["outcome"] == "skipped" and o.get("skip") == SKIPPED_AFTER)]
    if not mine:
        status = "no tests"
    elif not ran:
        status = "not checked"
    elif all(o["outcome"] == "skipped" for o in ran):
        status = "skipped"
    elif failures and all(o.get("not_started") for o in failures):
        status = "not started"
    elif failures:
        status = "failing"
    else:
        status = "passed"
    records = [c for c in comparisons if c.get("test") in tests]
    worst = max(records, key=lambda c: _order(c.get("headroom")), default=None)
    first = next((o for o in failures if not o.get("not_started")), None) or (failures or [None])[0]
    return {
        "name": exercise["name"],
        "function": exercise["function"],
        "status": status,
        "tests": len(tests),
        "failed": len({o["test"] for o in failures}),
        "failure": None if first is None else f"{_short(first['test'])}: {first.get('message')}",
        "not_started_only": bool(failures) and all(o.get("not_started") for o in failures),
        "messages": sorted({o.get("message", "") for o in failures}),
        "worst": worst,
        "comparisons": len(records),
        "skip": next((o.get("skip", "") for o in ran if o["outcome"] == "skipped"), ""),
    }


def _order(x) -> float:
    return float("inf") if x is None else float(x)


def _short(nodeid: str) -> str:
    return nodeid.removeprefix("parity_tests/")


def plan_for(lab_id: str, framework: str) -> list[dict]:
    return [
        {"name": e.name, "function": p.qualname, "path": p.path, "tests": list(p.tests)}
        for e, p in exercises.parts(lab_id, framework)
    ]


def _fmt(x) -> str:
    if x is None:
        return "-"
    x = float(x)
    if x == 0:
        return "0"
    if x == float("inf"):
        return "inf"
    return f"{x:.2g}" if 1e-3 <= abs(x) < 1e3 else f"{x:.1e}"


MARKS = {
    "passed": "ok",
    "not started": "..",
    "failing": "XX",
    "not checked": "  ",
    "no tests": "??",
    "skipped": "--",
}


def line(i: int, r: dict) -> str:
    """One exercise's result in one line."""
    head = f"{MARKS[r['status']]} {i}. {r['function']:<28} {r['status']:<11}"
    worst = r["worst"]
    # A failure outside the recorded comparisons (a plain assert) has its numbers in its line.
    shown = worst is not None and (r["status"] == "passed" or not worst.get("ok", True))
    if shown:
        head += (
            f" {worst['tier']:<5} max abs {_fmt(worst['max_abs']):>7}  "
            f"headroom {_fmt(worst['headroom']):>7} ({r['comparisons']} compared)"
        )
    if r["status"] == "passed":
        head += f"  {r['tests']} tests"
    if r["status"] == "failing":
        head += f"\n     first failing check: {r['failure']}"
    if r["status"] == "skipped":
        head += f" ({r['skip']})"
    return head


def check(lab_id: str, framework: str | None, root: str, *, verbose=False, diff=False) -> int:
    """`week1 check`: grade the learner's modules; 0 when every exercise passes."""
    framework = _framework(lab_id, framework, root)
    files = exercises.overrides(lab_id, framework, root)
    plan = plan_for(lab_id, framework)
    print(f"week1 check {lab_id} --framework {framework}: {len(plan)} exercises, in order")
    results = grade(plan, files, verbose=verbose)
    for i, r in enumerate(results, 1):
        print(line(i, r))
    progress = exercises.load_progress(root)
    lab_progress = progress.setdefault(lab_id, {})
    lab_progress["framework"] = framework
    statuses = lab_progress.setdefault(framework, {})
    for r in results:
        if r["status"] != "not checked":
            statuses[r["name"]] = r["status"]
    exercises.save_progress(root, progress)
    passed = [r for r in results if r["status"] == "passed"]
    if diff:
        for r, p in zip(results, plan, strict=True):
            if r["status"] == "passed":
                print(reference_diff(lab_id, p, root))
    elif passed:
        print(f"passed: compare with the reference body: week1 check {lab_id} --diff")
    nxt = next((r for r in results if r["status"] != "passed"), None)
    if nxt is None:
        print(f"{lab_id} ({framework}): every exercise passes")
        return 0
    if nxt["status"] == "not started":
        print(f"next: write {nxt['function']}; stuck? week1 hint {lab_id} {nxt['name']}")
    return 1


def reference_diff(lab_id: str, part: dict, root: str) -> str:
    """The reference body against the learner's, as a unified diff."""
    ref_path = catalog.ROOT / part["path"]
    mine_path = exercises.lab_dir(root, lab_id) / part["path"]
    ref = exercises.function_source(ref_path.read_text(encoding="utf-8"), part["function"])
    mine = exercises.function_source(mine_path.read_text(encoding="utf-8"), part["function"])
    if ref == mine:
        return f"{part['function']}: the same as the reference"
    return "".join(
        difflib.unified_diff(
            mine.splitlines(keepends=True),
            ref.splitlines(keepends=True),
            f"yours: {mine_path}::{part['function']}",
            f"reference: {part['path']}::{part['function']}",
        )
    )


def watch(lab_id: str, framework: str | None, root: str, **kwargs) -> int:
    """check, then again on every save of the lab's exercise files (until Ctrl-C)."""
    framework = _framework(lab_id, framework, root)
    paths = sorted(set(exercises.overrides(lab_id, framework, root).values()))
    while True:
        check(lab_id, framework, root, **kwargs)
        print("watching for changes (Ctrl-C ends) ...", flush=True)
        _wait_for_change(paths)


def _wait_for_change(paths: list[str]) -> None:
    try:
        import watchfiles
    except ImportError:  # polling: the modification times, twice a second
        seen = [os.stat(p).st_mtime_ns for p in paths]
        while [os.stat(p).st_mtime_ns for p in paths] == seen:
            time.sleep(0.5)
        return
    for _ in watchfiles.watch(*paths):
        return


def _framework(lab_id: str, framework: str | None, root: str) -> str:
    if framework is not None:
        return framework
    chosen = exercises.load_progress(root).get(lab_id, {}).get("framework")
    return chosen or "jax"


# ---------------------------------------------------------------- exercise, hint, list


def write(lab_id: str, framework: str | None, root: str, *, force: bool = False) -> list[str]:
    """`week1 exercise LAB`: the stubbed modules under ROOT/LAB/; the paths written."""
    framework = _framework(lab_id, framework, root)
    files = exercises.stubbed_files(lab_id, framework)
    targets = {exercises.lab_dir(root, lab_id) / path: text for path, text in files.items()}
    there = [str(t) for t in targets if t.exists()]
    if there and not force:
        raise UsageError(
            f"{there[0]} exists (your work); --force writes the stubs over it, "
            f"--reset FUNCTION stubs one function again"
        )
    for target, text in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    progress = exercises.load_progress(root)
    progress.setdefault(lab_id, {})["framework"] = framework
    progress[lab_id][framework] = {}
    exercises.save_progress(root, progress)
    return [str(t) for t in targets]


def reset(lab_id: str, framework: str | None, root: str, name: str) -> str:
    """Stub one function of the learner's file again; the file."""
    framework = _framework(lab_id, framework, root)
    part = exercises.find(lab_id, name).part(framework)
    if part is None:
        raise UsageError(f"{name}: no {framework} exercise of {lab_id}")
    mine = exercises.lab_dir(root, lab_id) / part.path
    if not mine.is_file():
        raise UsageError(f"{mine}: not found; week1 exercise {lab_id} --framework {framework}")
    stub = exercises.stub_source(exercises.reference_source(part), [part.qualname], lab_id)
    text = exercises.function_source(stub, part.qualname)
    source = mine.read_text(encoding="utf-8")
    mine.write_text(exercises.replace_function(source, part.qualname, text), encoding="utf-8")
    progress = exercises.load_progress(root)
    progress.get(lab_id, {}).get(framework, {}).pop(exercises.find(lab_id, name).name, None)
    exercises.save_progress(root, progress)
    return str(mine)


def hint(lab_id: str, name: str | None, framework: str | None, root: str) -> list[str]:
    """The hints shown so far for the exercise, one more each call (the first not passed)."""
    framework = _framework(lab_id, framework, root)
    progress = exercises.load_progress(root)
    statuses = progress.get(lab_id, {}).get(framework, {})
    if name is None:
        todo = [
            e for e, _ in exercises.parts(lab_id, framework) if statuses.get(e.name) != "passed"
        ]
        if not todo:
            return [f"{lab_id} ({framework}): every exercise passes; nothing to hint"]
        exercise = todo[0]
    else:
        exercise = exercises.find(lab_id, name)
    shown = progress.setdefault(lab_id, {}).setdefault("hints", {})
    n = min(shown.get(exercise.name, 0) + 1, len(exercise.hints))
    shown[exercise.name] = n
    exercises.save_progress(root, progress)
    part = exercise.part(framework)
    where = f"{part.target}" if part else f"(no {framework} side)"
    lines = [f"{lab_id}: {exercise.name}: {where}"]
    lines += [f"hint {i}/{len(exercise.hints)}: {h}" for i, h in enumerate(exercise.hints[:n], 1)]
    if n < len(exercise.hints):
        lines.append(f"(again for hint {n + 1})")
    return lines


def listing(root: str) -> list[tuple]:
    """Rows for `week1 exercise --list`: day, lab, order, exercise, jax, torch status."""
    progress = exercises.load_progress(root)
    rows = []
    for lab in catalog.LABS:
        if not lab.implemented:
            continue
        found = getattr(catalog.spec(lab.id), "EXERCISES", ())
        if not found:
            rows.append((lab.day, lab.id, "", "(none yet)", "-", "-"))
        for i, e in enumerate(found, 1):
            done = progress.get(lab.id, {})
            cells = [
                "-" if e.part(fw) is None else done.get(fw, {}).get(e.name, "")
                for fw in exercises.FRAMEWORKS
            ]
            rows.append((lab.day, lab.id, i, e.name, *cells))
    return rows
