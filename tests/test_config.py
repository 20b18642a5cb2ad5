"""Config overrides: typed, named, and refused with a message that names the bad value."""

import pytest

from labs import training_loop
from week1.config import UsageError, override


def test_overrides_are_parsed_to_the_field_type():
    cfg = override(
        training_loop.Config(),
        ["--steps=12", "--warmup_steps=2", "--lr=0.5", "--schedule=inverse_sqrt", "--n-hidden=7"],
    )
    assert (cfg.steps, cfg.lr, cfg.schedule, cfg.n_hidden) == (12, 0.5, "inverse_sqrt", 7)
    assert isinstance(cfg.steps, int) and isinstance(cfg.lr, float)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        training_loop.Config().steps = 3


@pytest.mark.parametrize(
    "arg, words",
    [
        (["--stepz=3"], ["'stepz'", "steps"]),  # unknown key: the allowed ones are listed
        (["--steps=three"], ["--steps='three'", "int"]),  # ill-typed
        (["--lr=fast"], ["--lr='fast'", "float"]),
        (["steps=3"], ["--key=value"]),  # not an override at all
        (["--steps=0"], ["steps=0", "> 0"]),  # typed but out of range (Config.check)
        (["--schedule=cosine"], ["schedule='cosine'", "warmup_cosine"]),
        (["--warmup_steps=99999"], ["warmup_steps=99999"]),
    ],
)
def test_bad_overrides_name_the_value(arg, words):
    with pytest.raises(UsageError) as err:
        override(training_loop.Config(), arg)
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
