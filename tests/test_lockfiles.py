"""The three ways to install (pip with constraints.txt, `uv sync` from uv.lock, Poetry 2 from
pyproject.toml) cannot drift apart: checked offline, by reading the files.

- constraints.txt (pip, scripts/setup.sh) and pyproject's [tool.uv] constraint-dependencies
  (what `uv lock` resolved with) hold the same pins;
- uv.lock pins every package it shares with constraints.txt at exactly that version, and was
  locked from this pyproject.toml (its manifest and the project's requirements are the file's:
  an edited pyproject.toml without `uv lock` fails here);
- Poetry 2 can read the extras (it refuses a package that depends on itself).
With uv installed, `uv lock --check --offline` also runs (uv's own opinion, from its cache).
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parent.parent


def normalize(name: str) -> str:
    """PEP 503: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints(text: str) -> dict[str, str]:
    """name -> version of the `name==version` lines of a constraints file."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalize(name)] = version.strip()
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def locked_versions(doc: dict) -> dict[str, set[str]]:
    """name -> every version uv.lock holds of it (a fork by Python version could hold two)."""
    versions: dict[str, set[str]] = {}
    for package in doc["package"]:
        versions.setdefault(normalize(package["name"]), set()).add(package["version"])
    return versions


def disagreements(pins: dict[str, str], versions: dict[str, set[str]]) -> list[str]:
    return [
        f"{name}: constraints.txt {pin}, uv.lock {sorted(versions[name])}"
        for name, pin in sorted(pins.items())
        if name in versions and versions[name] != {pin}
    ]


def marker(text: str | None) -> str | None:
    """A marker as packaging writes it (uv quotes with ', packaging with ")."""
    return str(Marker(text)) if text else None


def requirement_keys(strings, extra: str | None = None) -> set[tuple]:
    keys = set()
    for text in strings:
        req = Requirement(text)
        # uv.lock writes the requirement's own marker first: "sys_platform == 'linux' and extra ..."
        parts = ([str(req.marker)] if req.marker else []) + (
            [f"extra == '{extra}'"] if extra else []
        )
        keys.add((normalize(req.name), str(req.specifier) or None, marker(" and ".join(parts))))
    return keys


def test_constraints_txt_and_pyproject_hold_the_same_pins():
    listed = pyproject()["tool"]["uv"]["constraint-dependencies"]
    assert constraints("\n".join(listed)) == constraints((ROOT / "constraints.txt").read_text())


def test_uv_lock_pins_what_constraints_txt_pins():
    pins = constraints((ROOT / "constraints.txt").read_text())
    versions = locked_versions(lock())
    shared = set(pins) & set(versions)
    assert len(shared) >= len(pins) - 1, f"not in uv.lock: {sorted(set(pins) - shared)}"
    assert disagreements(pins, versions) == []


def test_the_check_can_fail():
    versions = {"torch": {"2.15.0"}, "numpy": {"2.4.6"}}
    assert disagreements({"torch": "2.13.0", "numpy": "2.4.6"}, versions) == [
        "torch: constraints.txt 2.13.0, uv.lock ['2.15.0']"
    ]


def test_uv_lock_was_locked_from_this_pyproject():
    doc, project = lock(), pyproject()["project"]
    manifest = {
        (normalize(c["name"]), c["specifier"].removeprefix("=="))
        for c in doc["manifest"]["constraints"]
    }
    listed = constraints("\n".join(pyproject()["tool"]["uv"]["constraint-dependencies"]))
    assert manifest == set(listed.items())
    (root,) = [p for p in doc["package"] if p["name"] == project["name"]]
    locked = {
        (normalize(r["name"]), r.get("specifier"), marker(r.get("marker")))
        for r in root["metadata"]["requires-dist"]
    }
    wanted = requirement_keys(project["dependencies"])
    for extra, strings in project["optional-dependencies"].items():
        wanted |= requirement_keys(strings, extra)
    assert locked == wanted, "pyproject.toml changed since uv.lock was made: run `uv lock`"


def test_poetry_can_read_the_extras():
    """Poetry 2 refuses "week1[jax,torch]" inside week1's own extras."""
    name = pyproject()["project"]["name"]
    for extra, strings in pyproject()["project"]["optional-dependencies"].items():
        assert all(normalize(Requirement(s).name) != name for s in strings), extra


def _uv() -> str | None:
    beside = pathlib.Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


@pytest.mark.skipif(_uv() is None, reason="uv is not installed (pip install uv)")
def test_uv_agrees_that_the_lock_is_current():
    done = subprocess.run(
        [_uv(), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "offline" in done.stderr.lower() and "cache" in done.stderr.lower():
        pytest.skip("uv's cache lacks the metadata to check offline")
    assert done.returncode == 0, done.stderr[-1000:]
