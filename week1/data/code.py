"""Code: the Python standard library's own `.py` files (about 30 MB), site-packages excluded.

Files come in sorted-path order, so a slice of them is the same on every machine
with the same Python version.
"""

from __future__ import annotations

import pathlib
import sysconfig


def files() -> list[pathlib.Path]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)


def load_texts(max_chars: int = 0, skip: int = 0) -> list[str]:
    """Source files as texts, from the `skip`-th file on, until `max_chars` (0: all) are reached."""
    texts, total = [], 0
    for path in files()[skip:]:
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        total += len(text)
        if max_chars and total >= max_chars:
            break
    return texts
