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
    """A lab builds on its own spec, the library and the training_loop lab, never another lab:
    what two labs share lives in week1/ or a framework's lib/."""
    wrong = {
        path.stem: sorted(_lab_imports(path) - {path.stem, "training_loop"})
        for path in sorted((ROOT / package).glob("*.py"))
        if path.stem != "__init__"
    }
    assert not {lab: names for lab, names in wrong.items() if names}
