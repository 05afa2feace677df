"""The in-memory request budget: pacing, the shared pause of a 429, stopping, sharing per key."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tolken.connectors import _http
from tolken.connectors.ratelimit import (
    STOP_CHECK_SECONDS,
    URGENT_HOLD_SECONDS,
    BudgetLimiter,
    clear_shared_limiters,
    libpq_url,
    memory_limiter,
    pacing_rate,
    shared_limiter,
)
from tolken.errors import Retriable, Stopped


@pytest.fixture(autouse=True)
def fresh_shared_budgets() -> Iterator[None]:
    """Every test starts and ends with no shared budget."""
    clear_shared_limiters()
    yield
    clear_shared_limiters()


@pytest.mark.parametrize(
    ("rate", "limit", "window_ms"),
    [(10.0, 1, 100), (3.0, 1, 334), (0.5, 1, 2000), (1000.0, 1, 1), (5000.0, 5, 1)],
)
def test_pacing_rate_is_never_faster_than_asked(rate: float, limit: int, window_ms: int) -> None:
    """10/s becomes one request per 100 ms window; odd rates round to the slower side."""
    paced = pacing_rate(rate)
    assert (paced.limit, paced.interval) == (limit, window_ms)
    assert paced.limit * 1000 / paced.interval <= rate


def test_pacing_rate_refuses_a_rate_of_zero() -> None:
    """A budget of no requests at all is a mistake, not an endless wait."""
    with pytest.raises(ValueError, match="positive"):
        pacing_rate(0)


def test_requests_are_spaced_to_the_rate() -> None:
    """Eleven requests at 20/s take at least half a second: never faster than the budget."""
    limiter = memory_limiter(20.0)
    started = time.monotonic()
    for _ in range(11):
        limiter.acquire()
    assert 0.5 <= time.monotonic() - started < 1.5


def test_threads_sharing_a_budget_are_paced_together() -> None:
    """Four threads on one 50/s budget: their 20 requests together take at least 0.38 s."""
    limiter = memory_limiter(50.0)
    done: list[int] = []

    def work() -> None:
        for _ in range(5):
            limiter.acquire()
            done.append(1)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 20
    assert time.monotonic() - started >= 0.38


def test_a_pause_holds_back_every_limiter_of_the_key() -> None:
    """A 429 seen by one connector pauses the others using the same key, not another key."""
    seen_429 = shared_limiter("key-1", 1000.0)
    other = shared_limiter("key-1", 1000.0)
    unrelated = shared_limiter("key-2", 1000.0)
    seen_429.pause(0.4)
    started = time.monotonic()
    unrelated.acquire()
    assert time.monotonic() - started < 0.1
    other.acquire()
    assert 0.35 <= time.monotonic() - started < 0.6


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    """Two 429s: the pause lasts until the later of the two ends."""
    limiter = memory_limiter(1000.0)
    limiter.pause(0.4)
    limiter.pause(0.1)
    assert 0.3 < limiter.budget.paused_for() <= 0.4


def test_stop_ends_a_pause_within_the_check_interval() -> None:
    """A stop during a 30 s pause raises Stopped promptly instead of sleeping on."""
    stop = threading.Event()
    limiter = memory_limiter(1000.0, stop=stop)
    limiter.pause(30.0)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        limiter.acquire()
    assert time.monotonic() - started < 0.2 + STOP_CHECK_SECONDS + 0.2


def test_stop_ends_a_wait_for_the_next_slot() -> None:
    """At one request per 4 s, a stop 0.2 s into the wait for the second raises within a second."""
    stop = threading.Event()
    limiter = memory_limiter(0.25, stop=stop)
    limiter.acquire()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        limiter.acquire()
    assert time.monotonic() - started < 1.0


def _rate_over(limiter: BudgetLimiter, seconds: float) -> float:
    """Requests per second one thread gets from ``limiter`` in ``seconds``."""
    count, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        limiter.acquire()
        count += 1
    return count / (time.monotonic() - started)


def test_a_reserve_holds_the_others_back_only_while_urgent_traffic_waits() -> None:
    """A 20/s budget keeping 10/s: others get the whole rate; after an urgent request, the
    lane's 10/s until the urgent mark runs out, then the whole rate again."""
    others = memory_limiter(20.0, reserve=10.0)
    urgent = BudgetLimiter(others.budget, urgent=True)
    assert others.budget.reserve == 10.0
    assert _rate_over(others, 0.6) > 15
    urgent.acquire()
    assert _rate_over(others, 0.6) < 12
    time.sleep(URGENT_HOLD_SECONDS)
    assert _rate_over(others, 0.6) > 15


@pytest.mark.parametrize("reserve", [-1.0, 10.0, 12.0])
def test_a_reserve_is_less_than_the_rate(reserve: float) -> None:
    """Keeping the whole rate (or more) would stop every other request: refused."""
    with pytest.raises(ValueError, match="reserve"):
        memory_limiter(10.0, reserve=reserve)


def test_a_stopped_limiter_lets_nothing_through() -> None:
    """Once stopped, even a free slot raises Stopped: a stopping process sends nothing more."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped) as info:
        memory_limiter(1000.0, stop=stop).acquire()
    assert not isinstance(info.value, Retriable)


def test_one_budget_per_key_and_the_strictest_rate_wins() -> None:
    """Clients of one key share a budget at the lowest rate asked for; a second key has its own."""
    a = shared_limiter("key-1", 10.0)
    b = shared_limiter("key-1", 20.0)
    c = shared_limiter("key-2", 10.0)
    assert a.budget is b.budget
    assert a.budget is not c.budget
    assert a.budget.rate == 10.0
    shared_limiter("key-1", 5.0)
    assert a.budget.rate == 5.0


def test_waits_are_removed_in_testing_mode() -> None:
    """Under the test switch a paused, slow budget lets requests through at once."""
    limiter = memory_limiter(0.5)
    limiter.pause(30.0)
    started = time.monotonic()
    with _http.testing():
        for _ in range(3):
            limiter.acquire()
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://u:p@h:5432/db?options=-csearch_path%3Ds",
            "postgresql://u:p@h:5432/db?options=-csearch_path%3Ds",
        ),
        ("postgres://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("host=h dbname=db", "host=h dbname=db"),
    ],
)
def test_the_store_url_becomes_a_libpq_url(url: str, expected: str) -> None:
    """The store's SQLAlchemy URL opens the limiter's own connections, options and all."""
    assert libpq_url(url) == expected
