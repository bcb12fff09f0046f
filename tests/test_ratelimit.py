"""The limiter's guarantee, judged as the server would judge it, under arbitrary demand."""

from __future__ import annotations

import random
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.clock import FakeClock
from zego_exporter.ratelimit import Permit, SlidingWindowLimiter

# One step of demand: (seconds to advance, how many requests try to start, answer latency).
steps = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.7),
        st.integers(min_value=0, max_value=25),
        st.floats(min_value=0.0, max_value=1.5),
    ),
    min_size=1,
    max_size=120,
)


def run_demand(qps: int, demand: list[tuple[float, int, float]], rng: random.Random) -> list[
    tuple[float, float]
]:
    """Drive the limiter with a fake clock; return (start, answer) of every request."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(qps, clock=clock, rng=rng)
    in_flight: list[tuple[Permit, float, float]] = []  # permit, start, answer time
    done: list[tuple[float, float]] = []
    for advance, wanted, latency in demand:
        clock.now += advance
        for permit, start, answer in list(in_flight):
            if answer <= clock.now:
                permit.release(answer)
                in_flight.remove((permit, start, answer))
                done.append((start, answer))
        for _ in range(wanted):
            acquired = limiter.try_acquire()
            if acquired is None:
                break
            in_flight.append((acquired, clock.now, clock.now + latency))
        if rng.random() < 0.05:
            limiter.throttled()
        elif rng.random() < 0.5:
            limiter.succeeded()
    done.extend((start, answer) for _, start, answer in in_flight)
    return done


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=12), steps, st.integers(0, 2**32 - 1))
def test_no_one_second_window_holds_more_than_q_starts(
    qps: int, demand: list[tuple[float, int, float]], seed: int
) -> None:
    starts = sorted(start for start, _ in run_demand(qps, demand, random.Random(seed)))
    for i in range(len(starts) - qps):
        assert starts[i + qps] - starts[i] >= 1.0


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=12), steps, st.integers(0, 2**32 - 1))
def test_server_never_sees_more_than_q_whatever_the_network_does(
    qps: int, demand: list[tuple[float, int, float]], seed: int
) -> None:
    """A request reaches the server somewhere between its start and its answer. If every earlier
    request arrived as late as possible (at its answer) and this one as early as possible (at
    its start), fewer than Q others may still be inside the server's one-second window."""
    requests = run_demand(qps, demand, random.Random(seed))
    for start, _ in requests:
        overlapping = sum(
            1 for other_start, other_answer in requests
            if other_start <= start and other_answer > start - 1.0
        )  # includes this request itself
        assert overlapping <= qps


def test_full_rate_is_reached_with_instant_answers() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(10, clock=clock)
    starts = 0
    for _ in range(1000):  # 10 s in 10 ms steps, always wanting more
        while (permit := limiter.try_acquire()) is not None:
            permit.release(clock.now)
            starts += 1
        clock.now += 0.01
    assert 99 <= starts <= 100


def test_throttling_halves_then_recovers() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(10, clock=clock, rng=random.Random(1), recovery_step=5.0)
    pause = limiter.throttled()
    assert limiter.usable_slots == 5
    assert 0.5 <= pause <= 1.0
    assert limiter.try_acquire() is None  # paused
    clock.now += pause
    assert limiter.try_acquire() is not None
    limiter.throttled()
    assert limiter.usable_slots == 2
    for _ in range(40):
        clock.now += 5.0
        limiter.succeeded()
    assert limiter.usable_slots == 10


def test_fractional_budget_keeps_the_window_guarantee() -> None:
    half = SlidingWindowLimiter(0.5)
    assert (half.slots, half.hold) == (1, 2.0)
    two_and_a_half = SlidingWindowLimiter(2.5)
    assert (two_and_a_half.slots, two_and_a_half.hold) == (2, 1.0)


def test_cancel_frees_the_slot_at_once() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, clock=clock)
    permit = limiter.try_acquire()
    assert permit is not None
    assert limiter.try_acquire() is None
    permit.cancel()
    assert limiter.try_acquire() is not None


def test_blocking_acquire_across_threads_real_time() -> None:
    """25 starts through 10 slots of a 0.1 s window take two extra windows, no more, no less."""
    limiter = SlidingWindowLimiter(10, window=0.1)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            permit = limiter.acquire(deadline=time.monotonic() + 5)
            assert permit is not None
            with lock:
                starts.append(time.monotonic())
            permit.release()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts.sort()
    assert len(starts) == 25
    assert 0.2 <= starts[-1] - began < 1.0
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 0.1


def test_acquire_gives_up_at_deadline_and_on_close() -> None:
    limiter = SlidingWindowLimiter(1)
    held = limiter.acquire()
    assert held is not None
    assert limiter.acquire(deadline=time.monotonic() + 0.05) is None
    threading.Timer(0.05, limiter.close).start()
    assert limiter.acquire() is None
