"""Run folders: runs/<lab>-<framework>-<time>/ with config.json, metrics.jsonl, summary.json,
TensorBoard event files and the lab's checkpoints; and what happens when a run is stopped.

A run's folder has its final name from the start, so a path taken from it
(`run.path(...)`, `run.checkpoint_dir`) stays valid; summary.json says how far
it got: "running" while it runs, then one of

    ok           finished                                        exit 0
    interrupted  SIGINT (Ctrl-C) / SIGTERM (a scheduler's         exit 130 / 143
                 preemption): stopped at a step boundary, a
                 checkpoint of that step written, `week1 resume`
                 continues it
    diverged     the loss or a gradient became non-finite         exit 3
                 (Diverged): the last good checkpoint is kept
    failed       any other error, in one line (the traceback       exit 1
                 is in the folder's error.log)

Bad input (a UsageError) found before the lab has done anything leaves no
folder at all. A signal that arrives while the folder is being set up ends the
run as interrupted there and then (never a folder left saying "running").

config.json holds the lab, the framework ("jax"/"torch"), `compile` (torch.compile
asked for) and the settings the run was *started* with; each `week1 resume` adds
an entry to its `resumes` list (when, from which step, which settings changed):
`read_config` gives the settings in effect now. Folders written before these
fields existed (framework "torch-compile", no `resumes`) read the same way.
JSON files hold `null` where a number is not finite (strict parsers reject NaN).

The signal handling is cooperative: a training loop calls
`run.should_stop()` after each step; once it has, the first SIGINT/SIGTERM only
sets the flag and the loop saves and returns at the next step boundary. A lab
that never asks (or a second signal) is stopped at once by `Interrupted`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import shutil
import signal
import sys
import threading
import traceback

from week1.config import UsageError, as_dict

EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED = 1, 2, 3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Diverged(RuntimeError):
    """The loss or a gradient became non-finite at `step`; `what` names the first such tensor."""

    def __init__(self, step: int, what: str):
        super().__init__(f"non-finite {what} at step {step}")
        self.step, self.what = step, what

    def __reduce__(self):  # rebuilt from (step, what) where it crosses processes (compare)
        return Diverged, (self.step, self.what), self.__dict__


class Interrupted(KeyboardInterrupt):
    """Raised by the signal handler when a run must stop now (SIGINT or SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# A stop signal that arrived before any run took over the handlers (during imports, data
# loading): the next Run ends at once with it. Kept because Python may swallow the
# KeyboardInterrupt it raises (one raised inside a garbage-collection callback, as JAX's,
# is printed as "Exception ignored" and lost), and the user's Ctrl-C must not be.
_pending_signal: int | None = None


@contextlib.contextmanager
def stop_signals_remembered():
    """While it lasts, SIGINT/SIGTERM are remembered as well as raised (the command line wraps
    itself in it; a Run installs its own handlers inside); the previous handlers come back
    after, and a signal still pending is forgotten."""
    global _pending_signal

    def on_signal(signum, frame):
        global _pending_signal
        _pending_signal = _pending_signal or signum
        raise Interrupted(signum)

    def on_unraisable(unraisable):
        # An Interrupted that Python could not raise (it arrived inside a callback) is not news
        # to print: it is remembered above, or by the Run's own handler.
        if not isinstance(unraisable.exc_value, Interrupted):
            default_hook(unraisable)

    default_hook = sys.unraisablehook
    main_thread = threading.current_thread() is threading.main_thread()
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} if main_thread else {}
    sys.unraisablehook = on_unraisable
    for signum in saved:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        sys.unraisablehook = default_hook
        _pending_signal = None


def exit_code(status: str, signum: int | None = None) -> int:
    """The process exit status of a run that ended with `status` (130 = 128 + SIGINT, ...)."""
    if status == "interrupted":
        return 128 + (signum or signal.SIGINT)
    return {"ok": 0, "diverged": EXIT_DIVERGED}.get(status, EXIT_FAILED)


def one_line(error: BaseException) -> str:
    """An error as one line: its type and first line of message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def runs_root(root: str | pathlib.Path) -> pathlib.Path:
    """`root` as a folder that exists and can be written, or a UsageError saying why not."""
    root = pathlib.Path(root)
    if root.exists() and not root.is_dir():
        raise UsageError(f"runs directory {str(root)!r} is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"runs directory {str(root)!r} cannot be created: {err.strerror}"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"runs directory {str(root)!r} is not writable")
    return root


def strict_json(value):
    """`value` with every non-finite float (NaN, +-Inf) as None: JSON has no NaN, and strict
    parsers (browsers, jq, Go, Rust) reject Python's bare `NaN`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def _write_json(path: pathlib.Path, value: dict) -> None:
    """Write aside, then rename: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(value, indent=2))
    os.replace(tmp, path)


# What `week1 run --framework torch --compile` wrote as the framework before config.json had
# a `compile` field; read as framework torch, compile true.
_LEGACY_COMPILED = "torch-compile"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run folder's config.json, read (see the module docstring)."""

    lab: str
    framework: str  # "jax" or "torch" (or what made the folder: "compare", "jax-profile", ...)
    compile: bool
    started_with: dict  # the settings the run was started with
    resumes: list  # [{"at", "from_step", "changed": {name: [before, after]}}]

    @property
    def config(self) -> dict:
        """The settings in effect now: the start's, with each resume's changes."""
        now = dict(self.started_with)
        for resume in self.resumes:
            now |= {k: after for k, (_, after) in resume.get("changed", {}).items()}
        return now

    def as_json(self) -> dict:
        return {"lab": self.lab, "framework": self.framework, "compile": self.compile,
                "config": self.started_with, "resumes": self.resumes}  # fmt: skip


def read_config(run_dir: str | pathlib.Path) -> RunConfig:
    """A run folder's config.json (today's or an older one); a UsageError in one line if it is
    not a run folder."""
    run_dir = pathlib.Path(run_dir)
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        lab, framework, config = saved["lab"], saved["framework"], saved["config"]
        if not (isinstance(lab, str) and isinstance(framework, str) and isinstance(config, dict)):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"{str(run_dir)!r} is not a run folder (no readable config.json)"
        ) from None
    compiled = bool(saved.get("compile", False))
    if framework == _LEGACY_COMPILED:
        framework, compiled = "torch", True
    return RunConfig(lab, framework, compiled, config, list(saved.get("resumes", [])))


def _keep_metrics_before(run_dir: pathlib.Path, step: int) -> None:
    """Drop metrics.jsonl's rows from `step` on (a resume writes them again)."""
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        kept = [row for row in read_metrics(run_dir) if row["step"] < step]
        tmp = metrics.with_name("metrics.jsonl.tmp")
        tmp.write_text("".join(dumps(row) + "\n" for row in kept))
        os.replace(tmp, metrics)


class Run:
    """One run of a lab in one framework: its folder, metrics and status (see the module doc)."""

    def __init__(
        self,
        lab: str,
        framework: str,
        cfg,
        root: str | pathlib.Path = "runs",
        tensorboard: bool = True,
        *,
        compile: bool = False,
        existing: pathlib.Path | None = None,
    ):
        self.lab, self.framework, self.cfg, self.compile = lab, framework, cfg, compile
        self.resume = existing is not None
        self._made_root = None  # a runs directory this run created (removed again on discard)
        self.status, self.summary = "running", {}
        self.last_step = 0
        self.last_logged = ("", 0)  # (the part, or "" for the run's one training; its step)
        self._stop_signal: int | None = None
        self._cooperative = False
        self._handlers: dict = {}
        self._metrics = self._tb = None
        self._logged = False  # a resumed run drops the old metrics from its first logged step
        if existing is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            self._made_root = None if pathlib.Path(root).exists() else pathlib.Path(root)
            name = f"{lab}-{framework}{'-compile' if compile else ''}-{stamp}"
            self.dir = runs_root(root) / name
            self.dir.mkdir()
        else:
            self.dir = pathlib.Path(existing)
        try:
            if existing is None:
                config = RunConfig(lab, framework, compile, as_dict(cfg), [])
                _write_json(self.dir / "config.json", config.as_json())
            self._write_summary()
            # Held open for the run's life (one flushed line per log call); close() closes it.
            self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            if tensorboard:
                from tensorboard.summary import Writer  # lazy: heavy import (about a second)

                self._tb = Writer(str(self.dir / "tb"))
        except KeyboardInterrupt as stop:  # a signal while the folder was being set up
            self._stop_signal = getattr(stop, "signum", signal.SIGINT)
            self.close("interrupted")
            raise

    @classmethod
    def reopen(cls, run_dir: str | pathlib.Path, cfg, from_step: int, tensorboard: bool = True):
        """Continue an existing run folder from checkpoint `from_step` (`week1 resume`).

        The metrics past that step are dropped, so the resumed steps are appended, not
        duplicated (and again from the first step the lab logs, should it restore an earlier
        checkpoint than `from_step`). config.json keeps the settings the run started with and
        records this resume: when, from which step, which settings changed (before, after).
        """
        run_dir = pathlib.Path(run_dir)
        saved = read_config(run_dir)
        _keep_metrics_before(run_dir, from_step + 1)
        now, new = saved.config, as_dict(cfg)
        changed = {k: [now.get(k), v] for k, v in new.items() if now.get(k) != v}
        at = datetime.datetime.now().isoformat(timespec="seconds")
        resumes = [*saved.resumes, {"at": at, "from_step": from_step, "changed": changed}]
        _write_json(run_dir / "config.json", dataclasses.replace(saved, resumes=resumes).as_json())
        run = cls(saved.lab, saved.framework, cfg, tensorboard=tensorboard,
                  compile=saved.compile, existing=run_dir)  # fmt: skip
        run.last_step = from_step
        return run

    @property
    def final(self) -> pathlib.Path:
        """The run's folder (its name never changes)."""
        return self.dir

    @property
    def checkpoint_dir(self) -> pathlib.Path:
        """Where the lab writes its checkpoints (created by the checkpoint code when it saves)."""
        return self.dir / "checkpoints"

    def path(self, name: str) -> pathlib.Path:
        """A file or folder inside the run."""
        return self.dir / name

    def log(self, step: int, **metrics: float) -> None:
        """One JSONL line and one TensorBoard scalar per metric (a non-finite value is null in
        the JSONL)."""
        if self.resume and not self._logged:  # the lab may have restored an earlier step
            self._metrics.close()
            _keep_metrics_before(self.dir, int(step))
            self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._logged = True
        clean = {k: float(v) for k, v in metrics.items()}
        self._metrics.write(dumps({"step": int(step), **clean}) + "\n")
        self._metrics.flush()
        self.last_step = max(self.last_step, int(step))
        parts = {k.partition("/")[0] for k in clean if "/" in k}  # loop.Context.part's prefix
        self.last_logged = (parts.pop() if len(parts) == 1 else "", int(step))
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step=int(step))

    def should_stop(self) -> bool:
        """True once SIGINT or SIGTERM arrived. Calling it tells the run that this lab stops
        cooperatively: from then on the first signal waits for the next step boundary."""
        self._cooperative = True
        return self._stop_signal is not None

    @property
    def signum(self) -> int | None:
        return self._stop_signal

    def _on_signal(self, signum, frame) -> None:
        first = self._stop_signal is None
        self._stop_signal = self._stop_signal or signum
        if first and self._cooperative:
            sys.stderr.write(
                f"\nweek1: {signal.Signals(signum).name}: stopping at the end of this step "
                "(checkpointed if the lab keeps checkpoints; send it again to stop at once)\n"
            )
            return
        raise Interrupted(signum)

    def _write_summary(self) -> None:
        _write_json(self.dir / "summary.json", {"status": self.status, **self.summary})

    def close(self, status: str | None = None, summary: dict | None = None) -> pathlib.Path:
        """End the run: write summary.json with `status` (default: ok, or interrupted if a
        signal stopped it) and the lab's summary."""
        if status is None:
            # A lab that stops cooperatively returns early after a signal. One that does not was
            # stopped by Interrupted (closed in __exit__), unless Python swallowed it inside a
            # callback: then it ran to the end and is ok.
            status = "interrupted" if self._stop_signal and self._cooperative else "ok"
        self.status = status
        self.summary = {**self.summary, **(summary or {}), "step": self.last_step}
        if status == "interrupted":
            self.summary["signal"] = signal.Signals(self._stop_signal or signal.SIGINT).name
        self._close_files()
        self._write_summary()
        return self.dir

    def interrupt(self, signum: int) -> None:
        """Close as interrupted by `signum` (a signal that came before the run took over)."""
        self._stop_signal = self._stop_signal or signum
        self.close("interrupted")

    def _close_files(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
        if self._tb is not None:
            self._tb.close()

    def discard(self) -> None:
        self._close_files()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._made_root is not None and not any(self._made_root.iterdir()):
            self._made_root.rmdir()

    @property
    def closed(self) -> bool:
        return self.status != "running"

    def __enter__(self):
        global _pending_signal
        if _pending_signal is not None:  # asked to stop before the run began: it ends at once
            self._stop_signal, _pending_signal = _pending_signal, None
            self.close("interrupted")
            raise Interrupted(self._stop_signal)
        if threading.current_thread() is threading.main_thread():
            self._handlers = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        return self

    def __exit__(self, kind, error, tb):
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        if self.closed:
            return False
        if kind is None:
            self.close()
        elif issubclass(kind, UsageError) and not self.resume and self.last_step == 0:
            self.discard()  # bad input: nothing was done, nothing is left
        elif issubclass(kind, KeyboardInterrupt):
            self._stop_signal = self._stop_signal or getattr(error, "signum", signal.SIGINT)
            self.close("interrupted")
        elif issubclass(kind, Diverged):
            self.close("diverged", {"error": str(error), "diverged_at_step": error.step})
        else:
            (self.dir / "error.log").write_text("".join(traceback.format_exception(error)))
            self.close("failed", {"error": one_line(error)})
        return False


def read_metrics(run_dir: str | pathlib.Path) -> list[dict]:
    with open(pathlib.Path(run_dir) / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_summary(run_dir: str | pathlib.Path) -> dict:
    return json.loads((pathlib.Path(run_dir) / "summary.json").read_text())
