"""The catalogue is docs/labs.md's table, and each implemented lab's JAX and torch modules define
the same public names in the same order (d2l-style: read them side by side)."""

import ast
import pathlib
import re

import pytest

from week1 import catalog

LABS_MD = catalog.ROOT / "docs" / "labs.md"

# The same thing under each framework's idiomatic name (JAX name -> torch name): a jitted step
# is built from the split state (make_*), a torch step is a plain function; arrays vs tensors.
IDIOMS = {
    "as_arrays": "as_tensors",
    "make_train_step": "train_step",
    "make_train_step_scaled": "train_step_scaled",
}


# Names every torch lab may have with no JAX twin: torch initialises each compare's start
# (week1/comparison.py).
TORCH_ONLY = {"start_weights"}


def test_catalog_matches_docs_labs_md():
    rows = re.findall(r"^\| (\d) \| (\w+) \|", LABS_MD.read_text(), flags=re.M)
    assert [(int(day), lab) for day, lab in rows] == [(lab.day, lab.id) for lab in catalog.LABS]


def public_names(path: pathlib.Path) -> list[str]:
    """Top-level functions, classes and lower-case assignments (`loss_and_grads = jax.jit(...)`)
    not starting with "_", minus the module's FRAMEWORK_ONLY tuple (names with no counterpart)."""
    tree = ast.parse(path.read_text())
    names, only = [], set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "FRAMEWORK_ONLY":
                only = set(ast.literal_eval(node.value))
            elif name.islower():
                names.append(name)
    return [n for n in names if not n.startswith("_") and n not in only]


@pytest.mark.parametrize("lab", [lab.id for lab in catalog.LABS if lab.implemented])
def test_frameworks_define_the_same_names_in_the_same_order(lab):
    jax_names = [IDIOMS.get(n, n) for n in public_names(catalog.ROOT / "week1_jax" / f"{lab}.py")]
    torch_names = public_names(catalog.ROOT / "week1_torch" / f"{lab}.py")
    assert jax_names == [n for n in torch_names if n not in TORCH_ONLY]
    assert "run" in jax_names


def test_the_name_check_can_fail(tmp_path):
    (tmp_path / "a.py").write_text("def run(): ...\ndef loss_fn(): ...\n")
    (tmp_path / "b.py").write_text("def loss_fn(): ...\ndef run(): ...\n")
    assert public_names(tmp_path / "a.py") != public_names(tmp_path / "b.py")


def test_unknown_lab_and_framework_are_usage_errors():
    with pytest.raises(catalog.UsageError, match="'nope'"):
        catalog.get("nope")
    with pytest.raises(catalog.UsageError, match="'mxnet'.*jax, torch"):
        catalog.framework_module("training_loop", "mxnet")
