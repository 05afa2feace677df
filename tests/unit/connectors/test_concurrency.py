"""The adaptive write gate: at most N requests in flight, fewer for a while after an overload."""

from __future__ import annotations

import threading
import time

import pytest

from tolken.connectors._concurrency import AdaptiveConcurrency
from tolken.errors import Stopped


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_more_than_the_maximum_are_in_flight() -> None:
    """Eight threads through a gate of three never have more than three requests out at once."""
    gate = AdaptiveConcurrency(3)
    lock = threading.Lock()
    active, peak = 0, 0

    def request() -> None:
        nonlocal active, peak
        with gate.slot():
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.02)
            with lock:
                active -= 1

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3


def test_an_overload_halves_the_width_and_successes_win_it_back() -> None:
    """A 429 halves the requests in flight; runs of good answers reopen one slot at a time."""
    gate = AdaptiveConcurrency(8)
    gate.overloaded(None)
    assert gate.limit == 4
    gate.overloaded(None)
    gate.overloaded(None)
    gate.overloaded(None)
    assert gate.limit == 1  # never below one
    gate.succeeded()
    assert gate.limit == 2
    for _ in range(2):
        gate.succeeded()
    assert gate.limit == 3
    for _ in range(100):
        gate.succeeded()
    assert gate.limit == 8  # never above the configured maximum


def test_retry_after_closes_the_gate_for_everyone_until_it_has_passed() -> None:
    """After a Retry-After of 5 s no request starts until the server's 5 s are over."""
    clock = FakeClock()
    gate = AdaptiveConcurrency(4, clock=clock)
    gate.overloaded(5.0)
    started = threading.Event()

    def request() -> None:
        with gate.slot():
            started.set()

    thread = threading.Thread(target=request)
    thread.start()
    assert not started.wait(0.4)
    clock.now += 5.0
    assert started.wait(2.0)
    thread.join()


def test_a_stop_ends_a_wait_for_a_slot() -> None:
    """A stop request is not held up by a server that asked for a long pause."""
    stop = threading.Event()
    gate = AdaptiveConcurrency(1, stop=stop, clock=FakeClock())
    gate.overloaded(30.0)
    stop.set()
    with pytest.raises(Stopped), gate.slot():
        pass
