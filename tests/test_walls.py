"""The walls of docs/design.md: week1_jax never imports torch, week1_torch never imports jax or
flax, and the framework-free core (week1/, labs/) imports neither. Each module, subpackages
included, is imported in a fresh interpreter in which the forbidden packages cannot be imported
at all. And importing a module changes no environment variable (XLA_FLAGS above all: XLA reads
it once, so a module that set it on import would silently do nothing or change other labs)."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def modules(package):
    """Every module of `package`, subpackages included (week1/commands, week1_jax/lib, ...)."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import importlib
for m in {mods!r}:
    importlib.import_module(m)
"""

# Modules that drive both frameworks (compare, bench, parity) import them lazily, at call time.
CASES = [
    ("week1_jax", {"torch"}),
    ("week1_torch", {"jax", "flax", "optax", "orbax", "chex"}),
    ("labs", {"jax", "flax", "optax", "orbax", "chex", "torch"}),
    ("week1", {"jax", "flax", "optax", "orbax", "chex", "torch"}),
]


@pytest.mark.parametrize("package, blocked", CASES, ids=[c[0] for c in CASES])
def test_package_imports_without_the_other_framework(package, blocked):
    code = BLOCK.format(blocked=sorted(blocked), mods=modules(package))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_module_changes_the_environment_when_imported():
    mods = [m for package, _ in CASES for m in modules(package)]
    code = (
        "import os, importlib, json\n"
        # The frameworks may set their own variables (jax: TPU_SKIP_MDS_QUERY): not ours to judge.
        "import jax, flax.nnx, optax, orbax.checkpoint, chex, torch, transformers, datasets\n"
        "before = dict(os.environ)\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "keys = set(before) | set(os.environ)\n"
        "changed = sorted(k for k in keys if before.get(k) != os.environ.get(k))\n"
        "print(json.dumps(changed))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"  # the CLI's own default; set here so it is not a change
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]


def _lab_imports(path: pathlib.Path) -> set[str]:
    """The labs that a module imports from labs/, week1_jax/ or week1_torch/ (top-level names)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module in ("labs", "week1_jax", "week1_torch"):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            head, _, rest = node.module.partition(".")
            if head in ("labs", "week1_jax", "week1_torch") and rest:
                found.add(rest.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                head, _, rest = alias.name.partition(".")
                if head in ("labs", "week1_jax", "week1_torch") and rest:
                    found.add(rest.split(".")[0])
    return found - {"lib"}


@pytest.mark.parametrize("package", ["labs", "week1_jax", "week1_torch"])
def test_no_lab_imports_another_lab(package):
    """A lab builds on its own spec and the library, never another lab (the training_loop lab
    included): what two labs share lives in week1/ or a framework's lib/."""
    wrong = {
        path.stem: sorted(_lab_imports(path) - {path.stem})
        for path in sorted((ROOT / package).glob("*.py"))
        if path.stem != "__init__"
    }
    assert not {lab: names for lab, names in wrong.items() if names}


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Every module name a file imports at any level (`from a.b import c` gives a.b and a.b.c)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


@pytest.mark.parametrize("package", ["labs", "week1_jax", "week1_torch"])
def test_no_lab_imports_a_command(package):
    """Labs use the core, never the command line's commands (week1/commands/): what a lab
    needs from there (machine facts, report writers) lives in a core module."""
    wrong = {
        path.stem: sorted(m for m in _imported_modules(path) if m.startswith("week1.commands"))
        for path in sorted((ROOT / package).glob("*.py"))
    }
    assert not {lab: names for lab, names in wrong.items() if names}


def _is_lab_module(name: str) -> bool:
    head, _, rest = name.partition(".")
    return head == "labs" or (head in ("week1_jax", "week1_torch") and not rest.startswith("lib"))


@pytest.mark.parametrize(
    "folder", ["week1", "week1/data", "week1/tokenization", "week1_jax/lib", "week1_torch/lib"]
)
def test_core_and_libraries_import_no_lab(folder):
    """The core and each framework's library stand below the labs: no module there imports a
    lab (week1/commands, the faces that drive labs, find them through week1.catalog)."""
    wrong = {
        path.name: sorted(
            m for m in _imported_modules(path) if _is_lab_module(m) and m.count(".") >= 1
        )
        for path in sorted((ROOT / folder).glob("*.py"))
    }
    assert not {name: mods for name, mods in wrong.items() if mods}


def test_the_command_line_loads_no_lab():
    """`import week1.cli` (every `week1` command starts so) loads no lab module: a lab is
    imported when a command asks for it, and `week1 list` or `week1 --help` stay quick."""
    code = (
        "import sys, week1.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('labs', 'week1_jax', 'week1_torch') and m not in ('labs', 'week1_jax', 'week1_torch')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]


def test_the_wall_tests_can_fail(tmp_path):
    """The import scanners see a lab import and a command import when there is one."""
    module = tmp_path / "rogue.py"
    module.write_text("from labs import rnn\nfrom week1.commands import env\n")
    assert _lab_imports(module) == {"rnn"}
    assert any(m.startswith("week1.commands") for m in _imported_modules(module))
    assert _is_lab_module("labs.rnn") and not _is_lab_module("week1_jax.lib.train")
