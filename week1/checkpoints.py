"""Which checkpoints can be trusted: a sha256 manifest sealed after each save, checked before
a load.

Both frameworks write a checkpoint atomically (orbax: a temporary folder renamed
into place; torch: a temporary file renamed into place), then `seal` it: a
manifest `<name>.sha256.json` beside it lists the sha256 of every file in it.
A checkpoint is intact when its manifest exists and every file still matches:
a save cut short (no manifest yet), a truncated or bit-flipped file, or a
deleted piece all fail the check, and `latest_intact` falls back to the
previous one, saying so in one line. A checkpoint that passes the check but that
the framework's loader refuses (torch's weights-only unpickler meeting a code
payload under a forged manifest) is treated the same way by `load_newest`.

A broken checkpoint is never deleted or saved over: before a step is written
where one already lies (a resume that fell back past it reaches that step
again), `set_aside` renames the old one to `<name>.broken` (then `.broken-2`,
...) with its manifest, and says so. Framework-free: the framework libraries
(lib/checkpoint.py) name the candidates and load them, this module judges them.
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
    through `warn` in one line and set aside (`set_aside`; not one without a manifest, which
    may be a save still under way). None when there are no candidates at all; a UsageError when
    there are some but none is intact."""
    ordered = sorted(candidates, key=lambda c: c[0], reverse=True)
    for step, path in ordered:
        problem = check(path)
        if problem is None:
            return step, path
        warn(f"checkpoint of step {step} is not usable ({problem}){_set_aside(path, problem)}: "
             "trying an earlier one")  # fmt: skip
    if ordered:
        raise UsageError(
            f"no intact checkpoint in {ordered[0][1].parent} (tried steps "
            f"{', '.join(str(s) for s, _ in ordered)})"
        )
    return None


def latest_intact_quietly(candidates: Iterable[tuple[int, pathlib.Path]]) -> int | None:
    """The newest intact checkpoint's step, or None; nothing printed, nothing raised (what the
    command line's closing line says is kept)."""
    intact = [step for step, path in candidates if check(path) is None]
    return max(intact, default=None)


def load_newest(
    candidates: Iterable[tuple[int, pathlib.Path]],
    load: Callable[[int, pathlib.Path], object],
    refused: tuple[type[BaseException], ...] = (),
    warn: Callable[[str], None] = warn,
) -> tuple[int, object] | None:
    """(step, load(step, path)) of the newest checkpoint that is intact and that `load` accepts:
    one whose load raises one of `refused` is reported like a broken one and the one before it
    is tried. None when there are no candidates; a UsageError when none is usable."""
    ordered = sorted(candidates, key=lambda c: c[0], reverse=True)
    while ordered:
        found = latest_intact(ordered, warn)
        step, path = found
        try:
            return step, load(step, path)
        except refused as err:
            first = (str(err).strip().splitlines() or [""])[0][:80]
            problem = f"refused by the loader: {type(err).__name__}: {first}"
            warn(
                f"checkpoint of step {step} is not usable ({problem})"
                f"{_set_aside(path, 'refused by the loader')}: trying an earlier one"
            )
        ordered = [c for c in ordered if c[0] < step]
        if not ordered:
            raise UsageError(f"no usable checkpoint in {path.parent} (the last one was refused)")
    return None


def set_aside(path: str | pathlib.Path) -> pathlib.Path:
    """Rename the checkpoint at `path` (and its manifest) to `<name>.broken` (or `.broken-N`, the
    first that is free): kept for a post-mortem, out of the way of the steps a resume saves and
    of the rotation (max_to_keep) that would otherwise keep it and delete a good one."""
    path = pathlib.Path(path)
    target, n = path.with_name(path.name + ".broken"), 1
    while target.exists() or manifest_path(target).exists():
        n += 1
        target = path.with_name(f"{path.name}.broken-{n}")
    os.replace(path, target)
    if manifest_path(path).exists():
        os.replace(manifest_path(path), manifest_path(target))
    return target


def _set_aside(path: pathlib.Path, problem: str) -> str:
    """set_aside a broken checkpoint that is there and finished; what to add to the warning."""
    if not path.exists() or problem.startswith("no manifest"):
        return ""
    return f", set aside as {set_aside(path).name}"


def replace(path: str | pathlib.Path, warn: Callable[[str], None] = warn) -> None:
    """Before a save to `path`: a checkpoint already there (one a resume fell back past) is set
    aside, and said so."""
    path = pathlib.Path(path)
    if path.exists():
        problem = check(path) or "from before the step the run resumed at"
        warn(f"checkpoint {path.name} ({problem}) set aside as {set_aside(path).name}")


def candidates_in(framework: str, directory: str | pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(step, path) of the checkpoints a run of `framework` wrote in `directory` (orbax: <step>/,
    torch: step_<step>.pt), from the names alone (no framework import; set-aside ones excluded)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    if framework == "jax":
        return [(int(p.name), p) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()]
    return [(int(p.stem[5:]), p) for p in directory.glob("step_*.pt") if p.stem[5:].isdigit()]


def prune(directory: str | pathlib.Path) -> None:
    """Remove the manifests of checkpoints that no longer exist (rotated out by max_to_keep)."""
    for manifest in pathlib.Path(directory).glob("*" + SUFFIX):
        if not manifest.with_name(manifest.name[: -len(SUFFIX)]).exists():
            manifest.unlink(missing_ok=True)
