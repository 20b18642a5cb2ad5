"""`week1 profile`: writes a run folder with a trace and a summary; refuses labs without a
workload."""

import json

from week1 import cli


def test_profile_command_writes_trace_and_summary(tmp_path):
    assert (
        cli.main(
            [
                "profile",
                "grad_accumulation",
                "--framework",
                "torch",
                "--batch_size=16",
                "--n_hidden=32",
                "--steps=3",
                "--warmup_steps=1",
                "--runs-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    (run,) = tmp_path.glob("grad_accumulation-torch-profile-*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert (run / summary["trace"]).stat().st_size > 0
    assert {"data ms", "forward_backward ms", "optimizer ms", "step ms"} <= set(summary)


def test_profile_refuses_lab_without_workload(tmp_path, capsys):
    assert (
        cli.main(["profile", "training_loop", "--framework", "torch", "--runs-dir", str(tmp_path)])
        == 2
    )
    assert "no profile workload; labs with one:" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "a refused command leaves no run folder"
