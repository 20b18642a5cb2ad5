"""The timing harness: every call is synced, the first is reported apart, the median is of the
rest."""

import time

from week1.timing import time_calls


def test_first_call_is_reported_apart_and_every_call_synced():
    calls, synced = [], []

    def fn():
        calls.append(len(calls))
        time.sleep(0.05 if len(calls) == 1 else 0.001)  # the first call "compiles"
        return len(calls)

    timing = time_calls(fn, synced.append, warmup=2, iters=5)
    assert len(calls) == 1 + 2 + 5 and synced == [1, 2, 3, 4, 5, 6, 7, 8]
    assert timing.first_s >= 0.05 > timing.median_s and timing.iters == 5
    assert timing.per_s == 1.0 / timing.median_s


def test_median_resists_one_slow_call():
    delays = iter([0.0] * 3 + [0.001, 0.001, 0.2, 0.001, 0.001])
    timing = time_calls(lambda: time.sleep(next(delays)), lambda _: None, warmup=2, iters=5)
    assert timing.median_s < 0.05
