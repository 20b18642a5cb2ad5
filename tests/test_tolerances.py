"""The comparison every parity test goes through can fail, and says by how much."""

import numpy as np
import pytest

from week1.tolerances import EXACT, F32, F64, assert_close, measure


def test_within_and_outside_tiers():
    ref = np.array([1.0, -2.0, 3.0])
    assert measure(ref * (1 + 5e-6), ref, F32).ok
    assert not measure(ref * (1 + 5e-5), ref, F32).ok
    assert not measure(ref * (1 + 1e-9), ref, F64).ok
    assert measure(np.array([1, 2]), np.array([1, 2]), EXACT).ok
    assert not measure(np.array([1, 2]), np.array([1, 3]), EXACT).ok


def test_failure_message_carries_the_numbers():
    with pytest.raises(AssertionError, match=r"max abs 0\.5"):
        assert_close("check", "w", np.array([1.5]), np.array([1.0]), F32)


def test_shape_mismatch_fails():
    with pytest.raises(AssertionError, match="shape"):
        measure(np.zeros(2), np.zeros(3), F32)
