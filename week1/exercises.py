"""Learner mode: the exercises of a lab, their stubs, and the import override that grades them.

Each spec (labs/<id>.py) ends with an ``EXERCISES`` tuple: the functions a learner writes,
in the order to write them, one ``Exercise`` each. An exercise names its function in each
framework as ``"week1_jax/lib/optim.py::adamw.update_fn"`` (a file, then a dotted path
through classes and functions) together with the parity tests that grade it (node ids
relative to parity_tests/, a prefix: ``"test_adamw.py::test_jax_adamw_matches_optax"``
takes every parametrisation, ``"test_backprop.py::test_x[jax"`` only those starting so).

``stub_source`` rewrites a module's source with those functions' bodies replaced by their
docstring and ``raise NotImplementedError("week1 exercise <lab>: <function>")``: from the
current source, with ``ast`` finding the lines, every other line kept byte for byte.
``Override`` is a ``sys.meta_path`` finder that imports a module from the learner's file
instead of the package's; week1/commands/exercise.py installs it inside the pytest run.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.abc
import importlib.util
import json
import pathlib
import sys

from week1 import catalog
from week1.config import UsageError

FRAMEWORKS = ("jax", "torch")
DEFAULT_DIR = "exercises"
PROGRESS = ".progress.json"
NOT_STARTED = "week1 exercise"  # the stubs' NotImplementedError message starts so


@dataclasses.dataclass(frozen=True)
class Part:
    """One framework's side of an exercise: the function and the tests that grade it."""

    target: str  # "week1_torch/lib/optim.py::AdamW.step"
    tests: tuple[str, ...]  # node-id prefixes under parity_tests/

    def __post_init__(self):
        if isinstance(self.tests, str):
            object.__setattr__(self, "tests", (self.tests,))

    @property
    def path(self) -> str:
        return self.target.split("::", 1)[0]

    @property
    def qualname(self) -> str:
        return self.target.split("::", 1)[1]

    @property
    def module(self) -> str:
        return module_name(self.path)


@dataclasses.dataclass(frozen=True)
class Exercise:
    """A function to write, in either framework, with hints of rising explicitness."""

    name: str
    hints: tuple[str, ...]
    jax: Part | None = None
    torch: Part | None = None

    def part(self, framework: str) -> Part | None:
        return getattr(self, framework)


def module_name(path: str) -> str:
    """ "week1_jax/lib/optim.py" -> "week1_jax.lib.optim"."""
    return path.removesuffix(".py").replace("/", ".")


def of_lab(lab_id: str) -> tuple[Exercise, ...]:
    """The lab's EXERCISES (its spec's), refused in one line where it has none."""
    found = getattr(catalog.spec(lab_id), "EXERCISES", ())
    if not found:
        raise UsageError(f"lab {lab_id!r} has no exercises yet (labs/{lab_id}.py: EXERCISES)")
    return tuple(found)


def labs_with_exercises() -> list[str]:
    return [lab.id for lab in catalog.LABS if lab.implemented]


def parts(lab_id: str, framework: str) -> list[tuple[Exercise, Part]]:
    """The lab's exercises that exist in `framework`, in manifest order."""
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r}; allowed: {', '.join(FRAMEWORKS)}")
    found = [(e, e.part(framework)) for e in of_lab(lab_id) if e.part(framework) is not None]
    if not found:
        others = [f for f in FRAMEWORKS if f != framework]
        raise UsageError(f"lab {lab_id!r} has no {framework} exercise; try --framework {others[0]}")
    return found


def find(lab_id: str, name: str) -> Exercise:
    for e in of_lab(lab_id):
        if name in (e.name, *(p.qualname for p in (e.jax, e.torch) if p)):
            return e
    names = ", ".join(e.name for e in of_lab(lab_id))
    raise UsageError(f"{lab_id} has no exercise {name!r}; its exercises: {names}")


# ---------------------------------------------------------------- stubs


def _locate(tree: ast.Module, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    """The definition at a dotted path through classes and functions (direct children)."""
    body, node = tree.body, None
    for name in qualname.split("."):
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        matches = [n for n in body if isinstance(n, kinds) and n.name == name]
        if not matches:
            raise LookupError(f"no definition {qualname!r} ({name!r} not found)")
        node = matches[-1]
        body = node.body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise LookupError(f"{qualname!r} is not a function")
    return node


def _span(source: str, qualname: str) -> tuple[int, int, int]:
    """(first line of the definition, decorators included; first line of its body after the
    docstring; last line), 0-based, end exclusive."""
    node = _locate(ast.parse(source), qualname)
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    has_doc = has_doc and isinstance(first.value.value, str)
    if first.lineno == node.lineno:
        raise LookupError(f"{qualname!r}: the body shares the def line; cannot stub it")
    body = first.end_lineno if has_doc else first.lineno - 1
    return start, body, node.end_lineno


def function_source(source: str, qualname: str) -> str:
    start, _, end = _span(source, qualname)
    return "".join(source.splitlines(keepends=True)[start:end])


def stub_source(source: str, qualnames: list[str], lab_id: str) -> str:
    """`source` with each function's body replaced by docstring + NotImplementedError."""
    lines = source.splitlines(keepends=True)
    spans = sorted(((*_span(source, q), q) for q in qualnames), reverse=True)
    for later, earlier in zip(spans, spans[1:], strict=False):
        if earlier[2] > later[0]:
            raise LookupError(f"exercises overlap: {earlier[3]!r} holds {later[3]!r}")
    for _, body, end, qualname in spans:
        node = _locate(ast.parse(source), qualname)
        indent = " " * node.body[0].col_offset
        stub = f'{indent}raise NotImplementedError("{NOT_STARTED} {lab_id}: {qualname}")\n'
        lines[body:end] = [stub]
    return "".join(lines)


def replace_function(source: str, qualname: str, new_text: str) -> str:
    """`source` with the whole definition of `qualname` replaced by `new_text`."""
    lines = source.splitlines(keepends=True)
    start, _, end = _span(source, qualname)
    lines[start:end] = [new_text]
    return "".join(lines)


def reference_source(part: Part) -> str:
    return (catalog.ROOT / part.path).read_text(encoding="utf-8")


def stubbed_files(lab_id: str, framework: str) -> dict[str, str]:
    """relative path -> stubbed source, for every module holding the lab's exercises."""
    by_path: dict[str, list[str]] = {}
    for _, part in parts(lab_id, framework):
        by_path.setdefault(part.path, []).append(part.qualname)
    return {
        path: stub_source(reference_source(Part(path + "::x", ())), names, lab_id)
        for path, names in by_path.items()
    }


def lab_dir(root: str | pathlib.Path, lab_id: str) -> pathlib.Path:
    return pathlib.Path(root) / lab_id


def overrides(lab_id: str, framework: str, root: str | pathlib.Path) -> dict[str, str]:
    """module name -> the learner's file, for the lab's exercise modules in `framework`."""
    found = {}
    for _, part in parts(lab_id, framework):
        path = lab_dir(root, lab_id) / part.path
        if not path.is_file():
            raise UsageError(
                f"{path}: not found; write the stubs first: week1 exercise {lab_id} "
                f"--framework {framework} --dir {root}"
            )
        found[part.module] = str(path.resolve())
    return found


# ---------------------------------------------------------------- the import override


class Override(importlib.abc.MetaPathFinder):
    """Imports the named modules from the given files (the learner's) instead of the package."""

    def __init__(self, files: dict[str, str]):
        self.files = dict(files)

    def find_spec(self, fullname, path=None, target=None):
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def install(files: dict[str, str]) -> Override:
    """Put the override first on sys.meta_path (before anything imports those modules)."""
    already = [name for name in files if name in sys.modules]
    if already:
        raise RuntimeError(f"already imported, cannot override: {', '.join(already)}")
    finder = Override(files)
    sys.meta_path.insert(0, finder)
    return finder


# ---------------------------------------------------------------- grading plan helpers


def matches(nodeid: str, selector: str) -> bool:
    """Does a pytest node id (parity_tests/test_x.py::test_y[p]) fall under a selector
    (test_x.py::test_y, or test_x.py::test_y[p to match parametrisations by prefix)?"""
    nodeid = nodeid.removeprefix("parity_tests/")
    if not nodeid.startswith(selector):
        return False
    rest = nodeid[len(selector) :]
    return not rest or "[" in selector or rest[0] in "[:"


def test_files(selectors) -> list[str]:
    return sorted({"parity_tests/" + s.split("::", 1)[0] for s in selectors})


# ---------------------------------------------------------------- progress


def load_progress(root: str | pathlib.Path) -> dict:
    path = pathlib.Path(root) / PROGRESS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save_progress(root: str | pathlib.Path, progress: dict) -> None:
    path = pathlib.Path(root) / PROGRESS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
