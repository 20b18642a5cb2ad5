"""The catalogue is LABS.md's table, and each implemented lab mirrors its public names."""

import ast
import pathlib
import re

import pytest

from week1 import catalog

LABS_MD = catalog.ROOT.parent / "shared" / "LABS.md"


@pytest.mark.skipif(not LABS_MD.exists(), reason="../shared/LABS.md is not beside this checkout")
def test_catalog_matches_labs_md():
    rows = re.findall(r"^\| (\d) \| (\w+) \|", LABS_MD.read_text(), flags=re.M)
    assert [(int(day), lab) for day, lab in rows] == [(lab.day, lab.id) for lab in catalog.LABS]


def public_functions(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
    ]


@pytest.mark.parametrize("lab", [lab.id for lab in catalog.LABS if lab.implemented])
def test_frameworks_share_the_entry_points(lab):
    """Both framework modules offer the CLI's entry points: run, and bench where either has it."""
    jax_names = set(public_functions(catalog.ROOT / "week1_jax" / f"{lab}.py"))
    torch_names = set(public_functions(catalog.ROOT / "week1_torch" / f"{lab}.py"))
    assert "run" in jax_names and "run" in torch_names
    assert ("bench" in jax_names) == ("bench" in torch_names)


def test_unknown_lab_and_framework_are_usage_errors():
    with pytest.raises(catalog.UsageError, match="'nope'"):
        catalog.get("nope")
    with pytest.raises(catalog.UsageError, match="'mxnet'.*jax, torch"):
        catalog.framework_module("training_loop", "mxnet")
