"""The timing harness: the first call apart, then the latency (every call waited for) and the
device time per call (calls queued back to back, one wait per batch), the same for any
framework's `sync`; optional device clock and cache flush."""

import time

from week1.timing import time_calls


def test_first_call_apart_latency_each_waited_device_time_queued():
    calls, synced = [], []

    def fn():
        calls.append(len(calls))
        time.sleep(0.05 if len(calls) == 1 else 0.001)  # the first call "compiles"
        return len(calls)

    timing = time_calls(fn, synced.append, warmup=2, iters=5, batches=3)
    assert len(calls) == 1 + 2 + 5 + 3 * 5
    # one wait per latency call, then one per batch of 5 queued calls, on the batch's last result
    assert synced == [1, 2, 3, 4, 5, 6, 7, 8, 13, 18, 23]
    assert timing.first_s >= 0.05 > timing.median_s and timing.iters == 5
    assert timing.per_s == 1.0 / timing.median_s
    assert timing.device_s is None and timing.cold_s is None


def test_latency_includes_the_wait_and_device_time_does_not_wait_per_call():
    """A wait of 10 ms (a host round trip) costs each latency call 10 ms but each queued call a
    fifth of it: the dispatch-bound case the two numbers tell apart."""
    timing = time_calls(lambda: None, lambda _: time.sleep(0.01), warmup=0, iters=5, batches=1)
    assert timing.latency_s >= 0.01 and timing.median_s < 0.006
    assert timing.dispatch_ratio > 1.5


def test_median_resists_one_slow_call():
    delays = iter([0.0] * 3 + [0.001, 0.001, 0.2, 0.001, 0.001] + [0.001] * 15)
    timing = time_calls(lambda: time.sleep(next(delays)), lambda _: None, warmup=2, iters=5)
    assert timing.latency_s < 0.05


def test_device_clock_and_flush():
    """`clock` times the same queued batches (its seconds are reported as device_s); `flush`
    runs before each call and its own time is taken off (cold_s)."""
    started, order = [], []

    def clock():  # start; stop() queues the end before the wait; read() gives the seconds
        started.append(time.perf_counter())
        return lambda: order.append("end queued") or (lambda: order.append("read") or 0.5)

    timing = time_calls(
        lambda: time.sleep(0.002),
        lambda _: order.append("wait"),
        warmup=0,
        iters=4,
        batches=3,
        clock=clock,
        flush=lambda: time.sleep(0.004),
    )
    assert len(started) == 3 and timing.device_s == 0.5 / 4
    assert order[:8] == ["wait"] * 5 + ["end queued", "wait", "read"]  # first, 4 latency calls
    assert 0.001 < timing.cold_s < 0.004
