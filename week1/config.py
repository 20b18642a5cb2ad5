"""Lab configs: one frozen dataclass per lab, and checked `--key=value` overrides.

Training labs share field names (`steps`, `batch_size`, `lr`, `seed`, ...), so
the same override means the same thing everywhere, and so does its range:
`RANGES` below holds the range of each shared name; a Config may add its own in
a `RANGES` class attribute, and its `check()` holds the rules that tie fields
together (`final_lr <= lr`, a schedule name, ...). Every float must be finite,
every int without a listed range non-negative. Values that are in range but do
not fit the machine are refused too, when the Config can estimate its memory
(`memory_bytes()`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import inspect
import math
import os
import re
import sys
import textwrap
import tokenize
import typing


class UsageError(ValueError):
    """Bad input from the user: the CLI prints it as one line and exits with status 2."""


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of allowed values; an open end excludes its bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )

    def __str__(self) -> str:
        def show(bound):
            return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{show(self.low)}, {show(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {show(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {show(self.high)}"
        return "any"


POSITIVE = Range(0, low_open=True)
AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, low_open=True, high_open=True)
RANGES = {
    "steps": AT_LEAST_1,
    "batch_size": AT_LEAST_1,
    "seed": Range(0, 2**32 - 1),  # numpy's SeedSequence and torch.manual_seed both take this
    "lr": POSITIVE,
    "final_lr": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "dropout": Range(0, 1, high_open=True),
    "val_fraction": FRACTION,
    "warmup_steps": NON_NEGATIVE,
    "eval_every": AT_LEAST_1,
    "eval_batches": AT_LEAST_1,
    "checkpoint_every": NON_NEGATIVE,
    "temperature": POSITIVE,
    "block_size": AT_LEAST_1,
    "n_embd": AT_LEAST_1,
    "n_hidden": AT_LEAST_1,
    "vocab_size": AT_LEAST_1,
    "max_length": AT_LEAST_1,
}


def did_you_mean(word: str, choices) -> str:
    """ " (did you mean 'x'?)" for the closest of `choices` (difflib), or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def ranges(cls) -> dict[str, Range]:
    """The range of each field of config class `cls` that has one."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: r for k, r in {**RANGES, **getattr(cls, "RANGES", {})}.items() if k in names}


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


def machine_memory_bytes() -> int:
    """Physical memory of this machine (what a config's memory estimate is compared with)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def validate(cfg) -> None:
    """Every value in its range (floats finite, ints without a range >= 0), then the Config's own
    check(), then its memory estimate against the machine; a UsageError names the first misfit."""
    hints = typing.get_type_hints(type(cfg))
    allowed = ranges(type(cfg))
    for f in dataclasses.fields(cfg):
        value, kind = getattr(cfg, f.name), hints[f.name]
        if kind is float and not math.isfinite(value):
            raise UsageError(f"{f.name}={value}: must be a finite number")
        if f.name in allowed and value not in allowed[f.name]:
            raise UsageError(f"{f.name}={value}: must be {allowed[f.name]}")
        if kind is int and f.name not in allowed and value < 0:
            raise UsageError(f"{f.name}={value}: must be >= 0")
    check = getattr(cfg, "check", None)
    if check is not None:
        check()
    estimate = getattr(cfg, "memory_bytes", None)
    if estimate is not None and estimate() > machine_memory_bytes():
        raise UsageError(
            f"these settings need about {estimate() / 2**30:,.1f} GiB (model, optimizer state and "
            f"one batch), more than this machine's {machine_memory_bytes() / 2**30:,.1f} GiB: "
            "use smaller sizes"
        )


def override(cfg, overrides: typing.Iterable[str]):
    """Return `cfg` with `--key=value` strings applied, each value parsed to the field's type,
    then validated (see the module docstring).

    A warmup longer than the run is clipped to the run, with a one-line note on stderr (the
    first thing a user tries is a short smoke run).

    >>> from week1.charlm import Config
    >>> override(Config(), ["--steps=10"]).steps
    10
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for item in overrides:
        flag = item[2:].replace("-", "_")
        if item.startswith("--") and "=" not in item and hints.get(flag) is bool:
            item = f"{item}=true"  # a bare --flag turns a bool setting on
        if not item.startswith("--") or "=" not in item:
            raise UsageError(f"{item!r}: overrides are written --key=value")
        key, text = item[2:].split("=", 1)
        key = key.replace("-", "_")
        if key not in fields:
            allowed = ", ".join(sorted(fields))
            raise UsageError(
                f"unknown setting {key!r} for {type(cfg).__module__}"
                f"{did_you_mean(key, fields)}; allowed: {allowed}"
            )
        if key in changes:
            raise UsageError(f"--{key} is given twice; give each setting once")
        changes[key] = _parse(key, text, hints[key])
    new = dataclasses.replace(cfg, **changes)
    warmup, steps = getattr(new, "warmup_steps", None), getattr(new, "steps", None)
    if warmup is not None and steps is not None and 0 < steps < warmup:
        print(
            f"week1: note: warmup_steps={warmup} is longer than steps={steps}: "
            f"warmup clipped to {steps} steps",
            file=sys.stderr,
        )
        new = dataclasses.replace(new, warmup_steps=steps)
    validate(new)
    return new


def from_dict(cls, values: dict):
    """A config of class `cls` from its as_dict() (a run's config.json), validated; JSON lists
    become the tuples the dataclass holds."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"saved config has settings {cls.__module__} does not know: {unknown}")
    hints = typing.get_type_hints(cls)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    for key, value in values.items():
        kind = hints[key]
        fits = (
            isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if kind in (bool, int, str)
            else isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is float
            else True  # tuples and other kinds: the Config's check() judges them
        )
        if not fits:
            raise UsageError(
                f"saved config: {key}={value!r} is a {type(value).__name__}, the setting is "
                f"{getattr(kind, '__name__', kind)}"
            )
    cfg = cls(**{k: float(v) if hints[k] is float else v for k, v in values.items()})
    validate(cfg)
    return cfg


def require(condition: bool, message: str) -> None:
    """Raise UsageError(message) unless condition: the configs' `check()` methods use it."""
    if not condition:
        raise UsageError(message)


def as_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _field_comments(cls) -> dict[str, str]:
    """The `# comment` written after each field in the class source (its help text)."""
    comments = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        source = textwrap.dedent("".join(lines))
        by_line = {}
        for tok in tokenize.generate_tokens(iter(source.splitlines(keepends=True)).__next__):
            if tok.type == tokenize.COMMENT:
                by_line[tok.start[0]] = tok.string.lstrip("#").strip()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                # on the field's line, or inside its value when a formatter split it over lines
                lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
                found = [by_line[i] for i in lines if i in by_line]
                if found:
                    comments[node.target.id] = found[0]
    return comments


def _named_choices(cls, comment: str) -> str:
    """A comment's "one of NAME" (a tuple of names in the Config's module, or a dotted path to
    one) written out: "one of a, b, c"."""

    def expand(match: re.Match) -> str:
        path = match.group(1)
        module, _, name = path.rpartition(".")
        try:
            owner = importlib.import_module(module) if module else sys.modules[cls.__module__]
            names = getattr(owner, name)
        except (ImportError, AttributeError, KeyError):
            return match.group(0)
        if isinstance(names, (tuple, list)) and all(isinstance(n, str) for n in names):
            return "one of " + ", ".join(names)
        return match.group(0)

    return re.sub(r"one of ([A-Za-z_][\w.]*[A-Za-z_0-9])", expand, comment)


def describe(cls) -> list[tuple[str, str, str, str, str]]:
    """(setting, type, default, allowed, meaning) for each field: `week1 run <lab> --help`."""
    hints = typing.get_type_hints(cls)
    allowed = ranges(cls)
    comments = {k: _named_choices(cls, c) for k, c in _field_comments(cls).items()}
    rows = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.name in allowed:
            span = str(allowed[f.name])
        elif kind is int:
            span = ">= 0"
        elif kind is float:
            span = "finite"
        elif kind is bool:
            span = "true/false"
        else:
            span = "text"
        name = getattr(kind, "__name__", str(kind))
        rows.append((f"--{f.name}", name, repr(default), span, comments.get(f.name, "")))
    return rows
