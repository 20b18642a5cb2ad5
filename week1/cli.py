"""The `week1` console script.

    week1 list                                   the labs, and which are implemented
    week1 env                                    versions, devices, bf16/TF32 support
    week1 prepare <lab> [--out DIR]              cache the lab's data as .npy
    week1 run <lab> --framework {jax,torch} [--compile] [--key=value ...]
    week1 compare <lab> [--key=value ...]        both frameworks, same start, one table + PNG
    week1 parity [lab]                           the parity tests, with a table of differences
    week1 bench [lab ...]                        step times, JAX jit vs torch eager vs torch.compile
    week1 profile <lab> --framework {jax,torch}  trace one training step; phase breakdown, top ops

Bad input (unknown lab, framework or setting, a missing data package) ends with
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from week1 import catalog, report
from week1.config import UsageError, override

# Keep the startup quiet: XLA's and TensorFlow-less TensorBoard's chatter is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise UsageError(message)


def _config(lab_id: str, overrides: list[str]):
    spec = catalog.spec(lab_id)
    return override(spec.Config(), overrides)


def cmd_list(args) -> int:
    rows = [(lab.day, lab.id, lab.title, "yes" if lab.implemented else "-") for lab in catalog.LABS]
    report.table("week1 labs", ["day", "id", "title", "implemented"], rows)
    return 0


def cmd_env(args) -> int:
    from week1.commands import env

    report.table("week1 env", ["what", "value"], env.rows())
    return 0


def cmd_prepare(args) -> int:
    spec = catalog.spec(args.lab)
    if not hasattr(spec, "prepare"):
        report.console.print(f"{args.lab}: no data to prepare")
        return 0
    for line in spec.prepare(args.out):
        report.console.print(line)
    return 0


def cmd_run(args, overrides) -> int:
    from week1.runs import Run

    cfg = _config(args.lab, overrides)
    lab = catalog.framework_module(args.lab, args.framework)
    kwargs = {}
    if args.compile:
        if args.framework != "torch":
            raise UsageError(
                "--compile is for --framework torch (torch.compile); JAX always compiles with jit"
            )
        kwargs["compile"] = True
    with Run(
        args.lab, args.framework + ("-compile" if args.compile else ""), cfg, root=args.runs_dir
    ) as run:
        summary = lab.run(cfg, run, **kwargs)
        run.close(summary=summary)
    numbers = [(k, v) for k, v in summary.items() if isinstance(v, (int, float))]
    report.table(f"{args.lab} ({args.framework})", ["metric", "value"], numbers)
    for key, value in summary.items():
        if isinstance(value, str):
            report.console.rule(key)
            report.console.print(value, markup=False, highlight=False)
    report.console.print(f"run folder: {run.final}")
    return 0


def cmd_compare(args, overrides) -> int:
    from week1.commands.compare import compare

    compare(
        args.lab, _config(args.lab, overrides), runs_root=args.runs_dir, compile=not args.no_compile
    )
    return 0


def cmd_parity(args) -> int:
    from week1.commands.parity import run_parity

    return run_parity(args.lab, args.pytest_args)


def cmd_bench(args, overrides) -> int:
    from week1.commands.bench import bench_labs

    return bench_labs(args.labs, overrides)


def cmd_profile(args, overrides) -> int:
    from week1.commands.profile import profile_lab

    profile_lab(args.lab, args.framework, overrides, runs_dir=args.runs_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="week1",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="the labs, and which are implemented")
    sub.add_parser("env", help="versions, devices, bf16/TF32 support")
    p = sub.add_parser(
        "prepare", help="cache a lab's data as .npy (carry to a GPU box, set WEEK1_DATA there)"
    )
    p.add_argument("lab")
    p.add_argument(
        "--out", default=None, help="where to write (default: $WEEK1_DATA or ~/.cache/week1)"
    )
    p = sub.add_parser("run", help="run one lab in one framework; settings as --key=value")
    p.add_argument("lab")
    p.add_argument("--framework", required=True, help="jax or torch")
    p.add_argument("--compile", action="store_true", help="torch only: torch.compile the model")
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p = sub.add_parser(
        "compare", help="both frameworks from the same weights: losses, speed ratios, PNG"
    )
    p.add_argument("lab")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p = sub.add_parser(
        "parity", help="run the parity tests and print max abs/rel differences per tensor"
    )
    p.add_argument("lab", nargs="?", default=None)
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    p = sub.add_parser(
        "bench", help="time each lab's workload in JAX jit, torch eager and torch.compile"
    )
    p.add_argument("labs", nargs="*", help="labs to bench (default: every lab with a workload)")
    p = sub.add_parser(
        "profile", help="profiler trace of a lab's step: phase breakdown, top operations"
    )
    p.add_argument("lab")
    p.add_argument("--framework", required=True, help="jax or torch")
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        # --key=value settings are not known to argparse: they go to the lab's Config.
        args, overrides = parser.parse_known_args(argv)
        if overrides and args.command not in ("run", "compare", "bench", "profile"):
            raise UsageError(f"unrecognised arguments: {' '.join(overrides)}")
        handlers = {"list": cmd_list, "env": cmd_env, "prepare": cmd_prepare, "parity": cmd_parity}
        if args.command in handlers:
            return handlers[args.command](args)
        return {"run": cmd_run, "compare": cmd_compare, "bench": cmd_bench, "profile": cmd_profile}[
            args.command
        ](args, overrides)
    except UsageError as err:
        print(f"week1: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
