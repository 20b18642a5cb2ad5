"""The walls of DESIGN.md: week1_jax never imports torch, week1_torch never imports jax or
flax, and the spine imports neither. Each module is imported in a fresh interpreter in
which the forbidden packages cannot be imported at all."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def modules(package):
    return sorted(
        f"{package}.{p.stem}" for p in (ROOT / package).glob("*.py") if p.stem != "__main__"
    )


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
]


@pytest.mark.parametrize("package, blocked", CASES, ids=[c[0] for c in CASES])
def test_package_imports_without_the_other_framework(package, blocked):
    code = BLOCK.format(blocked=sorted(blocked), mods=modules(package))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
