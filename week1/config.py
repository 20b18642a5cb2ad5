"""Lab configs: one frozen dataclass per lab, and type-checked `--key=value` overrides.

Training labs share the field names `steps`, `batch_size`, `lr` and `seed`, so the
same override means the same thing everywhere.
"""

from __future__ import annotations

import dataclasses
import typing


class UsageError(ValueError):
    """Bad input from the user: the CLI prints it as one line and exits with status 2."""


def _parse(key: str, text: str, kind: type):
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"--{key}={text!r}: expected a bool (true/false)")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise UsageError(f"--{key}={text!r}: expected {kind.__name__}") from None
    if kind is str:
        return text
    raise UsageError(f"--{key}: cannot be overridden from the command line ({kind})")


def override(cfg, overrides: typing.Iterable[str]):
    """Return `cfg` with `--key=value` strings applied, each value parsed to the field's type.

    >>> from labs.training_loop import Config
    >>> override(Config(), ["--steps=10"]).steps
    10
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for item in overrides:
        if not item.startswith("--") or "=" not in item:
            raise UsageError(f"{item!r}: overrides are written --key=value")
        key, text = item[2:].split("=", 1)
        key = key.replace("-", "_")
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise UsageError(
                f"unknown setting {key!r} for {type(cfg).__module__}; allowed: {allowed}"
            )
        changes[key] = _parse(key, text, hints[key])
    new = dataclasses.replace(cfg, **changes)
    check = getattr(new, "check", None)
    if check is not None:
        check()
    return new


def require(condition: bool, message: str) -> None:
    """Raise UsageError(message) unless condition: the configs' `check()` methods use it."""
    if not condition:
        raise UsageError(message)


def as_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
