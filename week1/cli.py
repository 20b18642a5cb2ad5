"""The `week1` console script.

    week1 list                                   the labs, and which are implemented
    week1 env [--json] [--parity]                a doctor: versions, devices, support; problems
    week1 prepare <lab> [--out DIR]              cache the lab's data as .npy
    week1 run <lab> --framework {jax,torch} [--compile] [--key=value ...]
    week1 run <lab> --help                       the lab's settings: type, default, allowed range
    week1 resume RUN_DIR [--steps=N]             continue an interrupted run from its checkpoint
    week1 compare <lab> [--quick] [--key=value ...]  both frameworks, same start: table + PNG
    week1 compare --all [--quick] [--markdown P] [--json P]  every training lab, one summary
    week1 parity [lab] [--detail [LAB]] [--json P] [--markdown P]
                                                 differences and headroom per check family
    week1 parity --claims [--markdown P]         every handout claim's test: docs/claims.md
    week1 bench [lab ...] [--json PATH]          step times, JAX jit vs torch eager vs torch.compile
    week1 results FILE.json ... [--out MD]       per-machine benchmark results as Markdown
    week1 profile <lab> --framework {jax,torch}  trace one training step; phase breakdown, top ops
    week1 export RUN_DIR DIR [--parity PATH]     a trained model as a Hugging Face Hub folder
    week1 push DIR --repo-id NAME [--private]    upload an exported folder to the Hub
    week1 serve RUN_OR_EXPORT [--port] [--max_batch] [--max_wait_ms]
                                                 serve a char LM or a text classifier over HTTP
    week1 exercise <lab> [--framework F] [--dir D] | --list | <lab> --reset FUNCTION
                                                 a lab's functions as stubs to write (learner mode)
    week1 check <lab> [--framework F] [--dir D] [--watch] [--diff] [-v]
                                                 grade them with the lab's parity tests
    week1 hint <lab> [FUNCTION]                  the next hint

Exit status: 0 done; 1 a run failed (its folder keeps the error); 2 bad input (one
line on stderr, nothing left behind); 3 a run diverged (non-finite loss); 130 / 143
interrupted by SIGINT / SIGTERM (a checkpoint written: `week1 resume` continues it).
"""

from __future__ import annotations

import argparse
import inspect
import os
import pathlib
import signal
import sys

from week1 import catalog, checkpoints, report
from week1.config import UsageError, override

# Keep the startup quiet: XLA's and TensorFlow-less TensorBoard's chatter is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LAB_COMMANDS = ("run", "compare", "profile")  # take a lab and its --key=value settings


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise UsageError(message)


def _config(lab_id: str, overrides: list[str]):
    spec = catalog.spec(lab_id)
    return override(spec.Config(), overrides)


def cmd_list(args) -> int:
    if args.history:  # docs/history.md, the timeline the labs sit in, without its link anchors
        from rich.markdown import Markdown

        path = catalog.ROOT / "docs" / "history.md"
        if not path.is_file():
            raise UsageError(
                f"{path}: not found (week1 list --history reads it from the repository)"
            )
        text = path.read_text(encoding="utf-8")
        report.console.print(
            Markdown("\n".join(s for s in text.splitlines() if not s.startswith("<a id=")))
        )
        return 0
    rows = [(lab.day, lab.id, lab.title, "yes" if lab.implemented else "-") for lab in catalog.LABS]
    report.table("week1 labs", ["day", "id", "title", "done"], rows)
    return 0


def cmd_env(args) -> int:
    from week1.commands import env

    return env.doctor(as_json=args.json, parity=args.parity)


def cmd_prepare(args) -> int:
    spec = catalog.spec(args.lab)
    if not hasattr(spec, "prepare"):
        report.console.print(f"{args.lab}: no data to prepare")
        return 0
    for line in spec.prepare(args.out):
        report.console.print(line)
    return 0


def _drive(run, body, title: str) -> int:
    """Run `body()` (a lab's run) inside `run`; report how it ended; return the exit status.

    Bad input (UsageError) propagates: the run removed its folder and main() prints one line.
    Anything else ends the run with its status (see week1/runs.py) and one line here.
    """
    from week1.runs import exit_code

    summary = {}
    try:
        with run:
            summary = body()
            run.close(summary=summary)
    except UsageError:
        raise
    except KeyboardInterrupt as stop:  # recorded by the run, unless it came before `with`
        if not run.closed:
            run.interrupt(getattr(stop, "signum", signal.SIGINT))
    except Exception:
        pass  # recorded by the run: status, error (and error.log)
    kept = checkpoints.latest_intact_quietly(
        checkpoints.candidates_in(run.framework, run.checkpoint_dir)
    )
    if run.status == "ok":
        _print_summary(title, summary)
        report.console.print(f"run folder: {run.dir}")
    elif run.status == "interrupted":
        how = (
            f"continue with: week1 resume {run.dir}"
            if kept is not None
            else "no checkpoint was written before the stop: run it again"
        )
        part, step = run.last_logged
        where = f"step {step} of {part}" if part else f"step {run.last_step}"
        print(
            f"week1: {title}: interrupted ({run.summary['signal']}) after {where}; " + how,
            file=sys.stderr,
        )
    elif run.status == "diverged":
        kept_where = (
            f"the last good checkpoint (step {kept}) is kept in {run.dir}"
            if kept is not None
            else f"no checkpoint was written before it (folder: {run.dir})"
        )
        print(f"week1: {title}: diverged: {run.summary['error']}; {kept_where}", file=sys.stderr)
    else:
        print(
            f"week1: {title}: failed: {run.summary['error']} (traceback: {run.dir / 'error.log'})",
            file=sys.stderr,
        )
    return exit_code(run.status, run.signum)


def _print_summary(title: str, summary: dict) -> None:
    numbers = [(k, v) for k, v in summary.items() if isinstance(v, (int, float))]
    report.table(title, ["metric", "value"], numbers)
    for key, value in summary.items():
        if isinstance(value, str):
            report.console.rule(key)
            report.console.print(value, markup=False, highlight=False)


def _lab_kwargs(lab_id: str, lab, framework: str, compile: bool) -> dict:
    """The keyword arguments of the lab's run(): compile=True only when asked for, and refused
    (before any run folder exists) where it means nothing: JAX, or a torch lab whose run()
    takes no `compile`."""
    if not compile:
        return {}
    if framework != "torch":
        raise UsageError(
            "--compile is for --framework torch (torch.compile); JAX always compiles with jit"
        )
    if "compile" not in inspect.signature(lab.run).parameters:
        raise UsageError(f"--compile: the {lab_id} lab does not support torch.compile")
    return {"compile": True}


def _title(lab_id: str, framework: str, compile: bool) -> str:
    return f"{lab_id} ({framework}{', torch.compile' if compile else ''})"


def cmd_run(args, overrides) -> int:
    from week1.runs import Run

    cfg = _config(args.lab, overrides)
    if args.framework is None:
        if not getattr(catalog.spec(args.lab), "BOTH_FRAMEWORKS", False):
            raise UsageError("--framework is required: jax or torch")
        args.framework = "jax"  # the lab drives both frameworks, each in a process of its own
    lab = catalog.framework_module(args.lab, args.framework)
    kwargs = _lab_kwargs(args.lab, lab, args.framework, args.compile)
    run = Run(args.lab, args.framework, cfg, root=args.runs_dir, compile=args.compile)
    title = _title(args.lab, args.framework, args.compile)
    return _drive(run, lambda: lab.run(cfg, run, **kwargs), title)


def cmd_resume(args, overrides) -> int:
    """`week1 resume RUN_DIR [--steps=N]`: the run's own config (steps may grow), same folder."""
    from week1.config import from_dict
    from week1.runs import Run, read_config

    run_dir = pathlib.Path(args.run_dir)
    saved = read_config(run_dir)
    lab_id, framework = saved.lab, saved.framework
    if framework not in catalog.FRAMEWORKS:
        raise UsageError(
            f"{run_dir} is a folder of `{_rerun(lab_id, framework)}`, not of `week1 run`: it "
            "keeps no checkpoint to resume; run that command again"
        )
    if overrides:
        raise UsageError(f"resume takes only --steps=N; got {' '.join(overrides)}")
    if args.steps is not None:
        overrides = [f"--steps={args.steps}"]
    cfg = override(from_dict(catalog.spec(lab_id).Config, saved.config), overrides)
    lab = catalog.framework_module(lab_id, framework)
    found = checkpoints.latest_intact(checkpoints.candidates_in(framework, run_dir / "checkpoints"))
    if found is None:
        raise UsageError(
            f"{run_dir} has no checkpoint to resume from; start again: week1 run {lab_id} "
            f"--framework {framework}"
        )
    if found[0] >= cfg.steps:
        raise UsageError(
            f"the checkpoint is at step {found[0]}, the run's last step is {cfg.steps}: nothing to "
            f"do (give --steps=N with N > {found[0]} to train longer)"
        )
    title = _title(lab_id, framework, saved.compile)
    report.console.print(f"resuming {title} from step {found[0]} in {run_dir}")
    kwargs = _lab_kwargs(lab_id, lab, framework, saved.compile)
    run = Run.reopen(run_dir, cfg, from_step=found[0])
    return _drive(run, lambda: lab.run(cfg, run, **kwargs), title)


def _rerun(lab_id: str, made_by: str) -> str:
    """The command that makes again a folder that `week1 resume` cannot continue."""
    if made_by == "compare":
        return f"week1 compare {lab_id}"
    framework = made_by.removesuffix("-profile")
    return f"week1 profile {lab_id} --framework {framework}"


def cmd_compare(args, overrides) -> int:
    from week1.commands import compare

    if args.all:
        if args.lab or overrides:
            raise UsageError(
                "week1 compare --all takes no lab and no settings (each lab's own, or with "
                "--quick its COMPARE_QUICK); compare one lab to change its settings"
            )
        return compare.compare_all(
            quick=args.quick,
            runs_root=args.runs_dir,
            compile=not args.no_compile,
            markdown=args.markdown,
            json_path=args.json,
        )
    if args.lab is None:
        raise UsageError(
            f"week1 compare needs a lab or --all; labs: {', '.join(compare.comparable_labs())}"
        )
    if args.markdown:
        raise UsageError("--markdown is for the --all summary; one lab writes --json PATH")
    cfg = compare.lab_config(args.lab, overrides, args.quick)
    rows = compare.compare(
        args.lab, cfg, runs_root=args.runs_dir, compile=not args.no_compile, json_path=args.json
    )
    return 0 if all(row["within_tier"] for row in rows) else 1


def cmd_parity(args) -> int:
    from week1.commands.parity import run_parity

    lab, pytest_args = args.lab, args.pytest_args
    if args.claims:
        from week1.commands import claims

        if lab is not None or pytest_args or args.json or args.gpu or args.from_path:
            raise UsageError("--claims runs every claim test; it takes only --markdown PATH")
        return claims.main(["--out", args.markdown] if args.markdown else [])
    if lab is not None and lab.startswith("-"):  # `week1 parity -- -m slow`: no lab, all pytest's
        lab, pytest_args = None, [lab, *pytest_args]
    return run_parity(
        lab,
        pytest_args,
        detail=args.detail,
        json_path=args.json,
        markdown_path=args.markdown,
        gpu_path=args.gpu,
        from_path=args.from_path,
    )


def cmd_bench(args, overrides) -> int:
    from week1.commands.bench import bench_labs

    return bench_labs(args.labs, overrides, json_path=args.json, threads=args.threads)


def cmd_results(args) -> int:
    """`week1 results FILE.json ... [--out docs/results.md]`: the benchmark lab's results.json
    files (one per machine) as one Markdown page, each with its machine description."""
    from week1.commands import results

    for path in args.files:
        if not pathlib.Path(path).is_file():
            raise UsageError(
                f"{path!r}: no such results file (the benchmark lab writes results.json)"
            )
    return results.write(args.files, args.out)


def cmd_profile(args, overrides) -> int:
    from week1.commands.profile import profile_lab

    profile_lab(args.lab, args.framework, overrides, runs_dir=args.runs_dir)
    return 0


def cmd_export(args) -> int:
    from week1 import hub
    from week1.export import export_run, exported_step_note, read_run

    folder = export_run(args.run_dir, args.out_dir, parity_path=args.parity)
    step = hub.read_config(folder)[1]["week1"]["step"]
    note = exported_step_note(read_run(args.run_dir), step)
    report.console.print(f"exported {note} of {args.run_dir} to {folder}", highlight=False)
    return 0


def cmd_push(args) -> int:
    from week1.export import push

    report.console.print(push(args.folder, args.repo_id, private=args.private))
    return 0


def cmd_serve(args) -> int:
    from week1.commands.serve import serve

    return serve(
        args.path,
        port=args.port,
        host=args.host,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
    )


def cmd_exercise(args) -> int:
    from week1.commands import exercise

    if args.list:
        rows = exercise.listing(args.dir)
        report.table("week1 exercises", ["day", "lab", "#", "exercise", "jax", "torch"], rows)
        return 0
    if args.lab is None:
        raise UsageError("week1 exercise needs a lab (or --list)")
    if args.reset:
        where = exercise.reset(args.lab, args.framework, args.dir, args.reset)
        print(f"{args.reset}: stubbed again in {where}")
        return 0
    for path in exercise.write(args.lab, args.framework, args.dir, force=args.force):
        print(f"wrote {path}")
    print(f"next: week1 hint {args.lab}; week1 check {args.lab} --dir {args.dir}")
    return 0


def cmd_check(args) -> int:
    from week1.commands import exercise

    catalog.require_implemented(args.lab)
    grade = exercise.watch if args.watch else exercise.check
    return grade(args.lab, args.framework, args.dir, verbose=args.verbose, diff=args.diff)


def cmd_hint(args) -> int:
    from week1.commands import exercise

    for text in exercise.hint(args.lab, args.function, args.framework, args.dir):
        report.console.print(text, markup=False, highlight=False)
    return 0


def print_lab_settings(lab_id: str) -> None:
    """`week1 run <lab> --help`: the handout's first line and every setting with its range."""
    from rich.table import Table

    from week1.config import describe

    spec = catalog.spec(lab_id)
    report.console.print((spec.__doc__ or lab_id).strip().splitlines()[0])
    rows = describe(spec.Config)
    table = Table(title=f"{lab_id} settings (--key=value)")
    # The names are never cut, however narrow the terminal: the other columns wrap instead.
    table.add_column("setting", no_wrap=True, min_width=max(len(row[0]) for row in rows))
    for column in ("type", "default", "allowed", "meaning"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    report.console.print(table, highlight=False)
    report.console.print(
        f"handout: python -c 'import labs.{lab_id}; help(labs.{lab_id})'", highlight=False
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="week1",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("list", help="the labs, and which are implemented")
    p.add_argument("--history", action="store_true", help="print the timeline (docs/history.md)")
    p = sub.add_parser("env", help="a doctor: versions, devices, support; each problem and its fix")
    p.add_argument("--json", action="store_true", help="one JSON document (facts, problems)")
    p.add_argument("--parity", action="store_true", help="also check what a parity run needs")
    p = sub.add_parser(
        "prepare", help="cache a lab's data as .npy (carry to a GPU box, set WEEK1_DATA there)"
    )
    p.add_argument("lab")
    p.add_argument(
        "--out", default=None, help="where to write (default: $WEEK1_DATA or ~/.cache/week1)"
    )
    p = sub.add_parser(
        "run",
        help="run one lab in one framework; settings as --key=value (`week1 run LAB --help`)",
    )
    p.add_argument("lab")
    p.add_argument(
        "--framework", default=None, help="jax or torch (the benchmark lab measures both anyway)"
    )
    p.add_argument("--compile", action="store_true", help="torch only: torch.compile the model")
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p = sub.add_parser(
        "resume", help="continue an interrupted run from its newest intact checkpoint"
    )
    p.add_argument("run_dir", help="the run folder (runs/<lab>-<framework>-<time>)")
    p.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="train on to step N (the run's last step otherwise); the only setting a resume "
        "may change, recorded in the folder's config.json",
    )
    p = sub.add_parser(
        "compare", help="both frameworks from the same weights: losses, speed ratios, PNG"
    )
    p.add_argument("lab", nargs="?", default=None, help="the lab (or --all)")
    p.add_argument("--all", action="store_true", help="every lab that trains, then one summary")
    p.add_argument("--quick", action="store_true", help="short runs (each lab's COMPARE_QUICK)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p.add_argument("--json", metavar="PATH", help="also write the summary rows here")
    p.add_argument("--markdown", metavar="PATH", help="--all: write the summary table here")
    p = sub.add_parser(
        "parity", help="run the parity tests; per lab and check: differences and headroom"
    )
    p.add_argument("lab", nargs="?", default=None)
    p.add_argument("pytest_args", nargs="*", help="pytest arguments, after -- (options before LAB)")
    p.add_argument("--detail", nargs="?", const="all", metavar="LAB", help="per-tensor rows")
    p.add_argument("--json", metavar="PATH", help="write every comparison, machine and versions")
    p.add_argument("--markdown", metavar="PATH", help="write a report (and a headroom PNG beside)")
    p.add_argument(
        "--gpu",
        nargs="?",
        const="run",
        metavar="PATH",
        help="alone: run the whole suite on the GPU; PATH: a GPU run's --json for the GPU column",
    )
    p.add_argument("--from", dest="from_path", metavar="PATH", help="report a saved --json")
    p.add_argument(
        "--claims",
        action="store_true",
        help="the handout claim tests instead (slow ones too, minutes): docs/claims.md "
        "(or --markdown PATH); exit 1 if a claim is not shown",
    )
    p = sub.add_parser(
        "bench", help="time each lab's workload in JAX jit, torch eager and torch.compile"
    )
    p.add_argument("labs", nargs="*", help="labs to bench (default: every lab with a workload)")
    p.add_argument("--json", default=None, help="also write every figure and the machine here")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for both frameworks (OMP_NUM_THREADS; 1 also stops XLA's thread pool)",
    )
    p = sub.add_parser("results", help="benchmark results.json files (one per machine) as Markdown")
    p.add_argument("files", nargs="+", help="results.json files written by `week1 run benchmark`")
    p.add_argument("--out", default="docs/results.md", help="where (default: docs/results.md)")
    p = sub.add_parser(
        "profile", help="profiler trace of a lab's step: phase breakdown, top operations"
    )
    p.add_argument("lab")
    p.add_argument("--framework", required=True, help="jax or torch")
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p = sub.add_parser("export", help="a run's trained model as a Hugging Face Hub folder")
    p.add_argument("run_dir", help="the run folder (runs/<lab>-<framework>-<time>)")
    p.add_argument("out_dir", help="the folder to write (new, or empty)")
    p.add_argument("--parity", metavar="PATH", help="a `week1 parity --json` document for the card")
    p = sub.add_parser("push", help="upload an exported folder to the Hub (needs a token)")
    p.add_argument("folder")
    p.add_argument("--repo-id", required=True, help="user/name on the Hub")
    p.add_argument("--private", action="store_true")
    p = sub.add_parser("serve", help="serve a run's char LM or classifier over HTTP: batching")
    p.add_argument(
        "path", help="an export folder (serving.json), a training_loop or cnn_classifier run"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--max_batch", type=int, default=32, help="requests per batch, at most")
    p.add_argument(
        "--max_wait_ms", type=float, default=2.0, help="wait for a batch to fill, at most"
    )
    p = sub.add_parser("exercise", help="a lab's functions as stubs to write (learner mode)")
    p.add_argument("lab", nargs="?", default=None)
    p.add_argument("--list", action="store_true", help="every lab's exercises and your progress")
    p.add_argument("--reset", metavar="FUNCTION", help="stub one function again")
    p.add_argument("--force", action="store_true", help="write the stubs over your files")
    for name in ("exercise", "check", "hint"):
        if name != "exercise":
            p = sub.add_parser(name, help=f"learner mode: {name} (week1 exercise --help)")
            p.add_argument("lab")
        if name == "hint":
            p.add_argument("function", nargs="?", default=None)
        p.add_argument("--framework", choices=("jax", "torch"), default=None)
        p.add_argument("--dir", default="exercises", help="the exercises (default: exercises)")
    p = sub.choices["check"]
    p.add_argument("--watch", action="store_true", help="check again on every save")
    p.add_argument("--diff", action="store_true", help="the reference body of each pass")
    p.add_argument("-v", "--verbose", action="store_true", help="pytest's own output too")
    parser.commands = sub.choices  # command name -> its parser
    return parser


def _refuse_repeated_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """A command-line option given twice is refused, as a repeated setting is (argparse would
    keep the last: `--framework torch --framework jax` ran JAX without a word)."""
    sub = parser.commands.get(argv[0]) if argv else None
    if sub is None:
        return
    known = {s for action in sub._actions for s in action.option_strings if s.startswith("--")}
    seen = set()
    for token in argv[1:]:
        if token == "--":  # what follows is pytest's (week1 parity)
            break
        name = token.split("=", 1)[0]
        if name in known and name in seen:
            raise UsageError(f"{name} is given twice; give each option once")
        seen.add(name)


def main(argv: list[str] | None = None) -> int:
    from week1.machine import compilation_cache_env
    from week1.runs import stop_signals_remembered

    os.environ.update(compilation_cache_env() | os.environ)  # jax reads them when imported
    with stop_signals_remembered():
        return _main(sys.argv[1:] if argv is None else argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        wants_help = "-h" in argv or "--help" in argv
        if wants_help and len(argv) > 1 and argv[0] in LAB_COMMANDS and argv[1][0] != "-":
            print_lab_settings(argv[1])
            return 0
        # --key=value settings are not known to argparse: they go to the lab's Config.
        _refuse_repeated_options(parser, argv)
        args, overrides = parser.parse_known_args(argv)
        if args.command == "parity" and overrides[:1] == ["--"]:
            args.pytest_args += overrides[1:]  # pytest's own arguments, after --
            overrides = []
        if overrides and args.command not in ("run", "resume", "compare", "bench", "profile"):
            raise UsageError(f"unrecognised arguments: {' '.join(overrides)}")
        handlers = {
            "list": cmd_list,
            "env": cmd_env,
            "prepare": cmd_prepare,
            "parity": cmd_parity,
            "results": cmd_results,
        }
        handlers |= {"export": cmd_export, "push": cmd_push}
        handlers["serve"] = cmd_serve
        handlers |= {"exercise": cmd_exercise, "check": cmd_check, "hint": cmd_hint}
        if args.command in handlers:
            return handlers[args.command](args)
        commands = {
            "run": cmd_run,
            "resume": cmd_resume,
            "compare": cmd_compare,
            "bench": cmd_bench,
            "profile": cmd_profile,
        }
        return commands[args.command](args, overrides)
    except UsageError as err:
        print(f"week1: error: {err}", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as err:
        # A library's refusal of a value the user gave (a malformed tokenizer file, an id out
        # of range): the library raises TypeError/ValueError, the command line says it in one line.
        print(f"week1: error: {type(err).__name__}: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"week1: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


def entry() -> None:
    """The `week1` console script and `python -m week1`: main(), then exit with its status.

    After an interrupt (130 / 143) the interpreter's teardown is skipped: a KeyboardInterrupt
    raised while XLA compiles can leave its threads in a state whose teardown segfaults (seen:
    exit -11 after the run had been recorded as interrupted). By then the run is closed, its
    files written and flushed, and checkpoints are written synchronously."""
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
