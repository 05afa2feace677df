"""Shared HTTP helpers: token bucket, Retry-After parsing and the retry policy."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from tolken.connectors import _http
from tolken.connectors._http import RetryPolicy, TokenBucket, parse_retry_after, shared_bucket
from tolken.errors import NotFound, RateLimited, ServerError, ValidationFailed


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_spaces_requests_to_the_rate() -> None:
    """Ten requests at 10/s take 0.9 s of waiting after the first: never more than the rate."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.acquire()
    assert clock.now - 100.0 == pytest.approx(0.9)
    assert all(s == pytest.approx(0.1) for s in clock.slept)


def test_bucket_refills_while_idle_up_to_capacity() -> None:
    """After idling, a burst of `capacity` goes through without waiting, then spacing resumes."""
    clock = FakeClock()
    bucket = TokenBucket(2.0, capacity=3, clock=clock, sleep=clock.sleep)
    clock.now += 60
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0, 0, 0, 0.5])


def test_bucket_hold_pauses_every_user() -> None:
    """A Retry-After hold delays the next caller even when tokens are available."""
    clock = FakeClock()
    bucket = TokenBucket(100.0, capacity=5, clock=clock, sleep=clock.sleep)
    bucket.hold(2.0)
    assert bucket.acquire() == pytest.approx(2.0)


def test_bucket_is_thread_safe() -> None:
    """Concurrent callers each reserve a distinct slot: total waiting grows as a queue."""
    bucket = TokenBucket(1000.0, clock=lambda: 0.0, sleep=lambda _: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            w = bucket.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([i / 1000 for i in range(200)])


def test_shared_bucket_is_one_per_key_and_keeps_the_strictest_rate() -> None:
    """Clients using one subscription key share a bucket; a second key gets its own."""
    _http.clear_shared_buckets()
    a = shared_bucket("key-1", 10.0)
    b = shared_bucket("key-1", 20.0)
    c = shared_bucket("key-2", 10.0)
    assert a is b
    assert a is not c
    assert a.rate == 10.0
    shared_bucket("key-1", 5.0)
    assert a.rate == 5.0
    _http.clear_shared_buckets()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_header_forms(value: str | None, expected: float | None) -> None:
    """Retry-After is read as seconds or as an HTTP date; junk gives no hint."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_retry_after_wait_has_a_floor_and_a_cap() -> None:
    """A 0-second hint still waits the floor; an absurd hint is capped."""
    policy = RetryPolicy(retry_after_floor=1.0, retry_after_cap=30.0)
    assert policy.retry_after_wait(0) == 1.0
    assert policy.retry_after_wait(None) == 1.0
    assert policy.retry_after_wait(5) == 5.0
    assert policy.retry_after_wait(3600) == 30.0


def test_backoff_hook_retries_only_retriable_errors() -> None:
    """429 (or a 5xx with a hint) waits its Retry-After, 5xx backs off, 4xx is not retried."""
    policy = RetryPolicy(retry_after_jitter=0.0)
    assert policy.backoff(RateLimited("x", retry_after=4.0)) == 4.0
    assert policy.backoff(ServerError("x")) is True
    assert policy.backoff(ServerError("x", retry_after=3.0)) == 3.0
    assert policy.backoff(ValidationFailed("x")) is False
    assert policy.backoff(NotFound("x")) is False


def test_policy_retries_a_bounded_number_of_times_without_waiting_in_tests() -> None:
    """With waits removed, a failing call is still tried exactly `attempts` times."""
    calls = 0

    def always_503() -> None:
        nonlocal calls
        calls += 1
        raise ServerError("down", retry_after=60)

    with _http.testing(), pytest.raises(ServerError):
        RetryPolicy(attempts=4).call(always_503)
    assert calls == 4


def test_policy_retry_if_stops_retries_for_one_call() -> None:
    """A narrowing predicate (used for ambiguous POSTs) raises after the first try."""
    calls = 0

    def fail() -> None:
        nonlocal calls
        calls += 1
        raise ServerError("maybe done")

    with _http.testing(), pytest.raises(ServerError):
        RetryPolicy(attempts=4).call(fail, retry_if=lambda _: False)
    assert calls == 1


def test_policy_returns_the_first_success() -> None:
    """A call that fails twice then succeeds returns its value after three tries."""
    results: list[Exception | str] = [
        RateLimited("slow down", retry_after=0),
        ServerError("x"),
        "ok",
    ]
    items = iter(results)

    def flaky() -> str:
        item = next(items)
        if isinstance(item, Exception):
            raise item
        return item

    with _http.testing():
        assert RetryPolicy(attempts=5).call(flaky) == "ok"
