"""`week1 compare`'s three runs of a case, each in its own process, taking turns.

Timed one after another, the runs of a case meet different machines: a shared VM that slows
by a quarter for some minutes (measured here: torch eager's windows went from ~820 to ~600
steps/s mid-run and stayed there) hands the whole slowdown to whichever run was going, and a
speed ratio moves by 20-30 %. Taking turns spreads such drift over all three alike. One run
works at a time (its turn covers its set-up, its steps and its evaluation), so none times
another's work; a turn ends at the first read window (week1/loop.py) after TURN_S seconds,
and the clock of the next window starts when the run's turn comes round again. A run whose
steps happen in other processes (data_parallel, fsdp and model_parallel: torch's under
torchrun, JAX's on a CPU in as many processes) takes its turns through process 0 of them
(week1.parallel.turns_relayed): it hands over at its read-window boundaries and the other
processes wait for it in their next collective.

Why processes and not threads: torch on a CPU runs its ops on an OpenMP team per calling
thread, and a second thread's team shares the cores with the first's (measured: the char LM's
eager step at 905 steps/s on the main thread, 369 on a second one, compiled alike), so a
threaded run would time the threading.

    parent                          eager          JAX            torch.compile
    ("start", case) -> eager        start_weights
    ("run", case, weights) -> all   wait           wait           wait
    "go" -> eager                   step 1, window
                <- ("turn", step)   wait
    "go" -> JAX                                    jit, step 1 ...
    ...                                                                  ("done", Curves)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import time
import traceback

from week1 import catalog, loop, report
from week1.comparison import Curves

# A run's share of the machine before the next run's turn. Shorter turns sample the machine's
# drift more finely: `week1 compare vocabulary --quick` gave compile/eager for bpe1024 of 0.68,
# 0.97 and 1.08 in three runs with 0.5 s turns, 1.43, 1.33 and 1.32 with 0.15 s.
TURN_S = 0.15


class Interleaved:
    """Worker processes, one per run (name -> (framework, compiled)), for the cases of one lab:
    `case(name)` trains a case in all of them from the first run's start weights and returns
    their Curves; `turns` lists (run, last step) as the turns went. A context manager: the
    workers end with it (Ctrl-C, an error, or done)."""

    def __init__(self, lab_id: str, cfg, runs: dict[str, tuple[str, bool]], turn_s=TURN_S):
        self.lab_id, self.names, self.turns = lab_id, list(runs), []
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked JAX
        self._conns, self._procs = {}, {}
        for name, (framework, compiled) in runs.items():
            parent, child = spawn.Pipe()
            args = (lab_id, framework, compiled, cfg, turn_s, child)
            proc = spawn.Process(target=_serve, args=args)
            proc.start()
            child.close()
            self._conns[name], self._procs[name] = parent, proc

    def __enter__(self) -> Interleaved:
        return self

    def __exit__(self, *exc) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(OSError):  # a worker that is gone already
                conn.send(None)
        for proc in self._procs.values():
            proc.join(timeout=3 if exc[0] else 10)  # the one mid-turn ends at its next turn
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)

    def case(self, case: str) -> dict[str, Curves]:
        """Every run of `case` from the start weights of the first (torch eager's), in turns."""
        first = self.names[0]
        self._conns[first].send(("start", case, None))
        weights = self._receive(first, case, "start")
        for name in self.names:
            self._conns[name].send(("run", case, weights))
        curves, waiting = {}, list(self.names)
        with _turns_shown(case, self.names) as shown:
            while waiting:
                for name in list(waiting):
                    self._conns[name].send("go")
                    kind, value = self._receive(name, case, "turn", "done")
                    self.turns.append((name, value if kind == "turn" else "done"))
                    if kind == "turn":
                        shown(name, value)
                    else:
                        curves[name] = value
                        waiting.remove(name)
                        shown(name, value.steps[-1] if value.steps else 0)
        return {name: curves[name] for name in self.names}

    def _receive(self, name: str, case: str, *kinds: str):
        try:
            kind, value = self._conns[name].recv()
        except EOFError:
            code = self._procs[name].exitcode
            raise RuntimeError(
                f"{self.lab_id}/{case}: the {name} run's process ended without a result "
                f"(exit code {code})"
            ) from None
        if kind == "error":
            raise value
        assert kind in kinds, (kind, kinds)
        return value if kinds == ("start",) else (kind, value)


def _serve(lab_id: str, framework: str, compiled: bool, cfg, turn_s: float, conn) -> None:
    """One run's process: set up each case the parent sends, then train it in turns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent's
    end_on_sigterm()
    # The JAX and torch processes share a GPU: JAX must not take 75 % of it up front.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    module = catalog.framework_module(lab_id, framework)
    turn_began = 0.0

    def wait_for_turn() -> None:
        nonlocal turn_began
        if conn.recv() != "go":  # None: the parent ended the compare
            raise SystemExit(0)
        turn_began = time.perf_counter()

    def turn(step: int) -> None:
        if time.perf_counter() - turn_began >= turn_s:
            conn.send(("turn", step))
            wait_for_turn()

    while (message := conn.recv()) is not None:
        kind, case, weights = message
        try:
            if kind == "start":
                conn.send(("start", module.start_weights(cfg, case)))
                continue
            wait_for_turn()
            ctx = loop.Context(compile=compiled, turn=turn)
            conn.send(("done", module.compare_run(cfg, case, weights, ctx)))
        except SystemExit:
            raise
        except BaseException as error:  # handed to the parent, raised there
            conn.send(("error", _portable(error)))
            return


def end_on_sigterm() -> None:
    """Make SIGTERM (the parent's `terminate()`, after Ctrl-C) unwind this process as SystemExit,
    so the clean-ups of what it started run: JAX's compare processes (lib/parallel.
    compare_in_processes kills them on the way out) ignore SIGINT as this process does, and
    Python's default SIGTERM ends a process without its clean-ups, which left them training."""

    def end(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, end)


def _portable(error: BaseException) -> BaseException:
    """`error` as it can cross to the parent: itself if it pickles back to its own type, else
    a RuntimeError with its text; the worker's traceback rides along as a note."""
    where = "".join(traceback.format_exception(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # any failure to round-trip: send the text
        error = RuntimeError(f"{type(error).__name__}: {error}")
    error.add_note(f"in the compare worker:\n{where}")
    return error


@contextlib.contextmanager
def _turns_shown(case: str, names: list[str]):
    """A line per run on a terminal (the steps it has taken, the time), updated at its turns;
    yields shown(name, step)."""
    if not report.console.is_terminal:
        yield lambda name, step: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"),
        TextColumn("step {task.completed:.0f}"), TimeElapsedColumn(), console=report.console,
    ) as bar:  # fmt: skip
        tasks = {name: bar.add_task(f"{case}: {name}", total=None) for name in names}
        yield lambda name, step: bar.update(tasks[name], completed=step)
