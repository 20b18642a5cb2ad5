"""Which checkpoints can be trusted: a sha256 manifest sealed after each save, checked before
a load.

Both frameworks write a checkpoint atomically (orbax: a temporary folder renamed
into place; torch: a temporary file renamed into place), then `seal` it: a
manifest `<name>.sha256.json` beside it lists the sha256 of every file in it.
A checkpoint is intact when its manifest exists and every file still matches:
a save cut short (no manifest yet), a truncated or bit-flipped file, or a
deleted piece all fail the check, and `latest_intact` falls back to the
previous one, saying so in one line. Framework-free: the framework libraries
(lib/checkpoint.py) name the candidates, this module judges them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterable

from week1.config import UsageError

SUFFIX = ".sha256.json"


def _files(path: pathlib.Path) -> list[pathlib.Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _digest(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + SUFFIX)


def seal(path: str | pathlib.Path) -> None:
    """Write the manifest of a finished checkpoint (a file or a folder), atomically."""
    path = pathlib.Path(path)
    sums = {str(f.relative_to(path.parent)): _digest(f) for f in _files(path)}
    target = manifest_path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(sums, indent=1))
    os.replace(tmp, target)


def check(path: str | pathlib.Path) -> str | None:
    """None if the checkpoint at `path` is intact, else why not (one phrase)."""
    path = pathlib.Path(path)
    if not path.exists():
        return "missing"
    try:
        sums = json.loads(manifest_path(path).read_text())
    except FileNotFoundError:
        return "no manifest (the save did not finish)"
    except (OSError, ValueError):
        return "unreadable manifest"
    present = {str(f.relative_to(path.parent)) for f in _files(path)}
    if present != set(sums):
        return f"files differ from its manifest ({len(present ^ set(sums))} missing or extra)"
    for name, digest in sums.items():
        if _digest(path.parent / name) != digest:
            return f"checksum mismatch in {name}"
    return None


def warn(message: str) -> None:
    """One line on stderr (what a fallback to an earlier checkpoint prints)."""
    print(f"week1: {message}", file=sys.stderr)


def latest_intact(
    candidates: Iterable[tuple[int, pathlib.Path]], warn: Callable[[str], None] = warn
) -> tuple[int, pathlib.Path] | None:
    """The newest (step, path) whose checkpoint is intact; each newer broken one is reported
    through `warn` in one line. None when there are no candidates at all; a UsageError when
    there are some but none is intact."""
    ordered = sorted(candidates, key=lambda c: c[0], reverse=True)
    for step, path in ordered:
        problem = check(path)
        if problem is None:
            return step, path
        warn(f"checkpoint of step {step} is not usable ({problem}): trying an earlier one")
    if ordered:
        raise UsageError(
            f"no intact checkpoint in {ordered[0][1].parent} (tried steps "
            f"{', '.join(str(s) for s, _ in ordered)})"
        )
    return None


def prune(directory: str | pathlib.Path) -> None:
    """Remove the manifests of checkpoints that no longer exist (rotated out by max_to_keep)."""
    for manifest in pathlib.Path(directory).glob("*" + SUFFIX):
        if not manifest.with_name(manifest.name[: -len(SUFFIX)]).exists():
            manifest.unlink(missing_ok=True)
