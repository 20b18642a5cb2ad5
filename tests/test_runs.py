"""Run folders: finished runs are renamed into place; bad input leaves nothing; failures keep
status."""

import json

import pytest

from labs.training_loop import Config
from week1.config import UsageError
from week1.runs import Run, read_metrics


def test_run_folder_appears_only_when_closed(tmp_path):
    with Run("lab", "jax", Config(), root=tmp_path, tensorboard=False) as run:
        run.log(1, loss=2.0)
        assert [p.name for p in tmp_path.iterdir()] == [run.dir.name] and run.dir.name.endswith(
            ".partial"
        )
    (final,) = list(tmp_path.iterdir())
    assert final == run.final and read_metrics(final) == [{"step": 1, "loss": 2.0}]


def test_usage_error_leaves_no_folder(tmp_path):
    with pytest.raises(UsageError), Run("lab", "jax", Config(), root=tmp_path, tensorboard=False):
        raise UsageError("bad")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_folder_with_its_status(tmp_path):
    with (
        pytest.raises(FloatingPointError),
        Run("lab", "torch", Config(), root=tmp_path, tensorboard=False),
    ):
        raise FloatingPointError("loss is nan at step 7")
    (final,) = list(tmp_path.iterdir())
    assert (
        json.loads((final / "summary.json").read_text())["status"]
        == "failed: loss is nan at step 7"
    )
