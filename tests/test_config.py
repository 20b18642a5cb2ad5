"""Config overrides: typed, named, and refused with a message that names the bad value."""

import pytest

from week1 import charlm
from week1.config import UsageError, as_dict, describe, from_dict, override


def test_overrides_are_parsed_to_the_field_type():
    cfg = override(
        charlm.Config(),
        ["--steps=12", "--warmup_steps=2", "--lr=0.5", "--schedule=inverse_sqrt", "--n-hidden=7"],
    )
    assert (cfg.steps, cfg.lr, cfg.schedule, cfg.n_hidden) == (12, 0.5, "inverse_sqrt", 7)
    assert isinstance(cfg.steps, int) and isinstance(cfg.lr, float)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        charlm.Config().steps = 3


@pytest.mark.parametrize(
    "arg, words",
    [
        (["--stepz=3"], ["'stepz'", "steps"]),  # unknown key: the allowed ones are listed
        (["--steps=three"], ["--steps='three'", "int"]),  # ill-typed
        (["--lr=fast"], ["--lr='fast'", "float"]),
        (["steps=3"], ["--key=value"]),  # not an override at all
        (["--steps=0"], ["steps=0", ">= 1"]),  # typed but out of range
        (["--schedule=cosine"], ["schedule='cosine'", "warmup_cosine"]),
        (["--lr=inf"], ["lr=inf", "finite"]),
        (["--lr=nan"], ["lr=nan", "finite"]),
        (["--lr=-1e-3"], ["lr=-0.001", "> 0"]),
        (["--seed=-1"], ["seed=-1", "in [0, 4294967295]"]),
        (["--dropout=1"], ["dropout=1.0", "in [0, 1)"]),
        (["--final_lr=0.1"], ["final_lr=0.1", "<= lr=0.003"]),
        (["--steps=3", "--steps=4"], ["--steps", "twice"]),  # not silently last-wins
        (["--block_size=1000000000"], ["GiB", "more than this machine"]),  # before allocating
    ],
)
def test_bad_overrides_name_the_value(arg, words):
    with pytest.raises(UsageError) as err:
        override(charlm.Config(), arg)
    for word in words:
        assert word in str(err.value)
    assert "\n" not in str(err.value)


def test_bool_parsing():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class C:
        flag: bool = False

    assert override(C(), ["--flag=true"]).flag is True
    assert override(C(), ["--flag=0"]).flag is False
    with pytest.raises(UsageError, match="bool"):
        override(C(), ["--flag=maybe"])


def test_warmup_longer_than_the_run_is_clipped_with_a_note(capsys):
    cfg = override(charlm.Config(), ["--steps=5"])
    assert (cfg.steps, cfg.warmup_steps) == (5, 5)
    assert "warmup clipped to 5 steps" in capsys.readouterr().err


def test_settings_table_lists_type_default_range_and_meaning():
    rows = {row[0]: row for row in describe(charlm.Config)}
    assert rows["--lr"] == ("--lr", "float", "0.003", "> 0", "peak learning rate of the schedule")
    assert rows["--seed"][3] == "in [0, 4294967295]"
    assert set(rows) == {f"--{f}" for f in charlm.Config.__dataclass_fields__}


def test_saved_config_round_trips_and_is_validated():
    cfg = override(charlm.Config(), ["--steps=12", "--warmup_steps=2"])
    assert from_dict(charlm.Config, as_dict(cfg)) == cfg
    with pytest.raises(UsageError, match="lr=inf"):
        from_dict(charlm.Config, {**as_dict(cfg), "lr": float("inf")})
