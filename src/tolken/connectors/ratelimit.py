"""One request budget per credential: paced before each request, paused after a 429.

A connector asks its :class:`RateLimiter` before every request it sends:
:meth:`~RateLimiter.acquire` blocks until the request may go, and
:meth:`~RateLimiter.pause` stops every user of the credential for a while
after the remote system answered 429 with ``Retry-After``. PowerOffice allows
10 requests/second per *subscription key*, however many clients, processes
or machines share that key, so the budget belongs to the key, not to a
connector.

The counting is pyrate-limiter's (a sliding-window log, see
:func:`pacing_rate`); tolken adds the pause and the stop. Two places the
budget can live:

* **in memory** (single mode): :func:`shared_limiter` hands every connector in
  this process that uses the same key a view of the *same* budget (the
  strictest rate asked for wins), so they pace and pause together;
  :func:`memory_limiter` makes a budget of its own (tests, the demo seeder).
* **PostgreSQL** (fleet mode): :func:`postgres_limiter` keeps the budget in a
  pyrate-limiter table and the pause in ``tolken_rate_pauses``, both in the
  database at a URL (the store's), with PostgreSQL's clock, so every process
  and machine using that database shares one budget and one pause per key.
  Make one per process, hand it to every connector (it is thread-safe) and
  close it at the end. The tables are the limiter's own, created when first
  needed; they are not part of the store's schema. A database that cannot be
  reached at start is :class:`~tolken.errors.Unreachable`; a connection lost
  later fails that one call as a (retried) :class:`~tolken.errors.TransportError`.

**A lane for urgent requests.** A budget built with a ``reserve`` (requests
per second; fleet mode: ``fleet.webhook_reserve`` x ``requests_per_second``)
keeps that many requests per second for *urgent* limiters
(``BudgetLimiter(..., urgent=True)``, a webhook's job) whenever one of them
is waiting: every other limiter then also takes a slot
of a second pyrate-limiter bucket, the *lane*, paced at ``rate - reserve``,
before the budget's own. An urgent acquisition marks the budget as wanted
for :data:`URGENT_HOLD_SECONDS` (next to the pause, in the same table), and
other limiters read that mark at most :data:`URGENT_CHECK_SECONDS` apart;
without urgent traffic nobody is held back, so the whole rate stays usable.
Every request still takes the budget's own slot: together they never exceed
``rate``.

Every wait ends within :data:`STOP_CHECK_SECONDS` of the ``stop`` signal (a
:class:`threading.Event`, say) being set: :meth:`~RateLimiter.acquire` then
raises :class:`~tolken.errors.Stopped`, and it does so whenever ``stop`` is set,
so a stopping process sends no further request. While
:func:`tolken.connectors._http.set_testing` is on, acquiring never waits.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from pyrate_limiter import (
    AbstractBucket,
    InMemoryBucket,
    Limiter,
    PostgresBucket,
    Rate,
    SingleBucketFactory,
)

from tolken.connectors._http import waits_removed
from tolken.errors import Stopped, TransportError, Unreachable

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

__all__ = [
    "APPLICATION_NAME",
    "PAUSE_TABLE",
    "STOP_CHECK_SECONDS",
    "URGENT_CHECK_SECONDS",
    "URGENT_HOLD_SECONDS",
    "Budget",
    "BudgetLimiter",
    "RateLimiter",
    "StopSignal",
    "clear_shared_limiters",
    "libpq_url",
    "memory_limiter",
    "pacing_rate",
    "postgres_limiter",
    "shared_limiter",
]

STOP_CHECK_SECONDS = 0.25
"""The longest a wait goes on after ``stop`` is set."""

LEAK_EVERY_SECONDS = 10.0
"""How often a budget forgets the requests that left its window."""

URGENT_HOLD_SECONDS = 1.0
"""How long after an urgent acquisition the other traffic stays in its lane."""

URGENT_CHECK_SECONDS = 0.1
"""How stale a process's knowledge of urgent traffic may be before it reads it again."""

CONNECT_TIMEOUT_SECONDS = 5.0
"""How long a PostgreSQL budget waits for a connection before the request fails (retriable)."""

PAUSE_TABLE = "tolken_rate_pauses"
APPLICATION_NAME = "tolken-ratelimit"  # of its PostgreSQL sessions, as pg_stat_activity shows


class StopSignal(Protocol):
    """What a limiter needs of a stop request; :class:`threading.Event` is one."""

    def is_set(self) -> bool:
        """True once the stop was asked for."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds or until set; return :meth:`is_set`."""
        ...


class RateLimiter(Protocol):
    """The request budget a connector draws on; see the module docstring."""

    def acquire(self) -> None:
        """Block until one request may go; :class:`~tolken.errors.Stopped` once stopped."""
        ...

    def pause(self, seconds: float) -> None:
        """Let no user of the budget send for ``seconds`` from now (a ``Retry-After``)."""
        ...


def pacing_rate(rate: float) -> Rate:
    """The pyrate-limiter rate that spaces requests to ``rate`` per second.

    One request per window of ``ceil(1000 / rate)`` ms (several per 1 ms window
    above 1000/s): never faster than asked, and no burst, so no one-second span
    ever holds more than ``rate`` requests, which is what PowerOffice's gateway
    counts. At 10/s a request goes at most every 101 ms (the window plus the
    millisecond pyrate-limiter's sliding window waits past it), 9.9/s.
    """
    if not rate > 0:
        raise ValueError("rate must be positive")
    window_ms = max(1, math.ceil(1000 / rate))
    return Rate(max(1, math.floor(rate * window_ms / 1000)), window_ms)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20]


class _Pause(Protocol):
    """The pause of a 429 and the mark of urgent traffic, both as seconds left."""

    def remaining(self) -> tuple[float, float]:
        """Seconds left of the pause and of the urgent mark (zero or less: none)."""
        ...

    def extend(self, seconds: float) -> None: ...

    def mark_urgent(self, seconds: float) -> None: ...


class _MemoryPause:
    """A pause and an urgent mark on this process's monotonic clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = float("-inf")
        self._urgent_until = float("-inf")

    def remaining(self) -> tuple[float, float]:
        with self._lock:
            now = time.monotonic()
            return self._until - now, self._urgent_until - now

    def extend(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def mark_urgent(self, seconds: float) -> None:
        with self._lock:
            self._urgent_until = max(self._urgent_until, time.monotonic() + seconds)


class _PostgresPause:
    """A pause in ``tolken_rate_pauses``, one row per budget, on PostgreSQL's clock.

    The urgent mark is a second row, ``<budget>:urgent``, read in the same query.
    """

    def __init__(self, pool: ConnectionPool[Connection[tuple[Any, ...]]], name: str) -> None:
        self._pool = pool
        self._name = name
        self._urgent = f"{name}:urgent"
        with pool.connection() as conn:
            # Processes starting together must not race to create the table.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(PAUSE_TABLE.encode()),))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {PAUSE_TABLE} "
                "(budget TEXT PRIMARY KEY, until_epoch DOUBLE PRECISION NOT NULL)"
            )

    def remaining(self) -> tuple[float, float]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT budget, until_epoch - extract(epoch FROM clock_timestamp())::float8 "
                f"FROM {PAUSE_TABLE} WHERE budget IN (%s, %s)",
                (self._name, self._urgent),
            ).fetchall()
        left = {str(budget): float(seconds) for budget, seconds in rows}
        return left.get(self._name, float("-inf")), left.get(self._urgent, float("-inf"))

    def extend(self, seconds: float) -> None:
        self._set(self._name, seconds)

    def mark_urgent(self, seconds: float) -> None:
        self._set(self._urgent, seconds)

    def _set(self, row: str, seconds: float) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO {PAUSE_TABLE} AS p (budget, until_epoch) "
                "VALUES (%s, extract(epoch FROM clock_timestamp())::float8 + %s) "
                "ON CONFLICT (budget) DO UPDATE "
                "SET until_epoch = GREATEST(p.until_epoch, EXCLUDED.until_epoch)",
                (row, seconds),
            )


class Budget:
    """One credential's request budget: a pyrate-limiter bucket plus the pause of a 429.

    Thread-safe; every :class:`BudgetLimiter` made from it draws on it. Build it
    with :func:`shared_limiter`, :func:`memory_limiter` or :func:`postgres_limiter`.
    ``unavailable`` names the bucket's own failures (PostgreSQL down), which
    surface as :class:`~tolken.errors.TransportError`, retried like a network
    failure. ``lane``, a bucket paced at ``rate - reserve``, is what the
    traffic that is not urgent also draws on while urgent traffic waits (the
    module docstring).
    """

    def __init__(
        self,
        bucket: AbstractBucket,
        pause: _Pause,
        *,
        unavailable: tuple[type[Exception], ...] = (),
        lane: AbstractBucket | None = None,
    ) -> None:
        self._bucket = bucket
        self._pause = pause
        self._unavailable = unavailable
        # Leaks are done here, on acquire, rather than by a thread per budget.
        self._limiter = Limiter(SingleBucketFactory(bucket, schedule_leak=False), buffer_ms=0)
        self._lane = lane
        self._lane_limiter = (
            None
            if lane is None
            else Limiter(SingleBucketFactory(lane, schedule_leak=False), buffer_ms=0)
        )
        self._leak_lock = threading.Lock()
        self._leaked_at = time.monotonic()
        # What this process last read of the urgent mark (monotonic clock).
        self._urgent_until = float("-inf")
        self._urgent_read_at = float("-inf")

    @property
    def rate(self) -> float:
        """Requests per second this budget allows."""
        rate = self._bucket.rates[0]
        return rate.limit * 1000 / rate.interval

    def restrict(self, rate: float) -> None:
        """Lower the rate to ``rate`` per second (never raise it)."""
        if rate < self.rate:
            self._bucket.rates = [pacing_rate(rate)]

    @contextmanager
    def _backend(self) -> Iterator[None]:
        try:
            yield
        except self._unavailable as exc:
            raise TransportError(
                f"the rate-limit budget cannot be read: {exc}", system="ratelimit"
            ) from exc

    @property
    def reserve(self) -> float:
        """Requests per second kept for urgent traffic while it waits (0: no lane)."""
        if self._lane is None:
            return 0.0
        lane = self._lane.rates[0]
        return self.rate - lane.limit * 1000 / lane.interval

    def take(self, timeout: float, *, urgent: bool = False) -> bool:
        """Take one request's share, waiting at most ``timeout`` seconds; False if none came.

        ``urgent`` marks the budget as wanted by urgent traffic first; other
        traffic takes a slot of the lane as well while that mark lasts.
        """
        with self._backend():
            if urgent:
                self._pause.mark_urgent(URGENT_HOLD_SECONDS)
            elif self._in_lane() and not self._take_lane(timeout):
                return False
            taken = self._limiter.try_acquire("request", timeout=timeout)
            self._leak()
        return taken is True

    def _in_lane(self) -> bool:
        return self._lane_limiter is not None and self._urgent_waiting()

    def _take_lane(self, timeout: float) -> bool:
        # The lane's slot is spent even if the budget's own does not come in time.
        assert self._lane_limiter is not None
        return self._lane_limiter.try_acquire("request", timeout=timeout) is True

    def _urgent_waiting(self) -> bool:
        now = time.monotonic()
        if now - self._urgent_read_at >= URGENT_CHECK_SECONDS:
            self._read_pause()
        return self._urgent_until > now

    def _read_pause(self) -> float:
        paused, urgent = self._pause.remaining()
        now = time.monotonic()
        self._urgent_read_at = now
        self._urgent_until = now + urgent
        return paused

    def _leak(self) -> None:
        if time.monotonic() - self._leaked_at < LEAK_EVERY_SECONDS:
            return
        if not self._leak_lock.acquire(blocking=False):
            return  # another thread is at it
        try:
            self._leaked_at = time.monotonic()
            for bucket in (self._bucket, self._lane):
                if bucket is not None:
                    bucket.leak(bucket.now())  # type: ignore[no-untyped-call]
        finally:
            self._leak_lock.release()

    def paused_for(self) -> float:
        """Seconds left of the current pause (zero or less: none)."""
        with self._backend():
            return self._read_pause()

    def pause(self, seconds: float) -> None:
        """Let nobody through for ``seconds`` from now (a longer pause already set stays)."""
        if seconds > 0:
            with self._backend():
                self._pause.extend(seconds)

    def close(self) -> None:
        """Release the buckets (a PostgreSQL budget closes its connections)."""
        if self._lane_limiter is not None:
            self._lane_limiter.close()
        self._limiter.close()


class BudgetLimiter:
    """A :class:`RateLimiter` drawing on a :class:`Budget`; ``stop`` ends its waits.

    Several limiters may share one budget, each with its own stop signal. An
    ``urgent`` one (a webhook's job) has the budget's reserve to itself while
    it waits: the others keep to the lane (module docstring).
    """

    def __init__(
        self,
        budget: Budget,
        *,
        stop: StopSignal | None = None,
        owns_budget: bool = False,
        urgent: bool = False,
    ) -> None:
        self.budget = budget
        self.urgent = urgent
        self._stop: StopSignal = stop if stop is not None else threading.Event()
        self._owns_budget = owns_budget

    def acquire(self) -> None:
        """Block until one request may go (after any pause); :class:`Stopped` once stopped."""
        while True:
            if self._stop.is_set():
                raise Stopped("stopping: no further request is sent")
            if waits_removed():
                return
            if not self.budget.take(timeout=STOP_CHECK_SECONDS, urgent=self.urgent):
                continue
            # Checked after the slot came: a pause set while we waited for it wins.
            paused = self.budget.paused_for()
            if paused <= 0:
                return
            self._stop.wait(min(paused, STOP_CHECK_SECONDS))

    def pause(self, seconds: float) -> None:
        """Pause the whole budget, for every user of it (see :meth:`Budget.pause`)."""
        self.budget.pause(seconds)

    def close(self) -> None:
        """Close the budget if this limiter made it (:func:`postgres_limiter`)."""
        if self._owns_budget:
            self.budget.close()


def _lane_rate(rate: float, reserve: float) -> Rate | None:
    """The lane's pacing for a budget of ``rate`` keeping ``reserve`` (None: no lane)."""
    if not 0 <= reserve < rate:
        raise ValueError("reserve must be at least 0 and less than the rate")
    return pacing_rate(rate - reserve) if reserve > 0 else None


def memory_limiter(
    rate: float, *, stop: StopSignal | None = None, reserve: float = 0.0
) -> BudgetLimiter:
    """A limiter with an in-memory budget of its own, shared with nobody.

    ``reserve``: requests per second kept for urgent limiters made from its
    ``budget`` while they wait (the module docstring).
    """
    lane_rate = _lane_rate(rate, reserve)
    lane = None if lane_rate is None else InMemoryBucket([lane_rate])
    budget = Budget(InMemoryBucket([pacing_rate(rate)]), _MemoryPause(), lane=lane)
    return BudgetLimiter(budget, stop=stop)


_shared: dict[str, Budget] = {}
_shared_lock = threading.Lock()


def shared_limiter(key: str, rate: float, *, stop: StopSignal | None = None) -> BudgetLimiter:
    """A limiter on this process's in-memory budget for credential ``key``.

    Every caller with the same key draws on the same budget and pause; when
    callers ask for different rates the strictest (lowest) wins, so together
    they never exceed the key's limit. The key is kept only as a digest.
    """
    digest = _digest(key)
    with _shared_lock:
        budget = _shared.get(digest)
        if budget is None:
            budget = _shared[digest] = Budget(InMemoryBucket([pacing_rate(rate)]), _MemoryPause())
        else:
            budget.restrict(rate)
    return BudgetLimiter(budget, stop=stop)


def clear_shared_limiters() -> None:
    """Forget every shared in-memory budget (tests that want a fresh rate per key)."""
    with _shared_lock:
        budgets = list(_shared.values())
        _shared.clear()
    for budget in budgets:
        budget.close()


def libpq_url(url: str) -> str:
    """A PostgreSQL URL as libpq reads it: the store's ``postgresql+psycopg://`` loses
    its SQLAlchemy driver name; anything else is returned unchanged."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        return f"postgresql://{rest}"
    return url


def postgres_limiter(
    url: str,
    key: str,
    rate: float,
    *,
    stop: StopSignal | None = None,
    max_connections: int = 4,
    reserve: float = 0.0,
) -> BudgetLimiter:
    """A limiter whose budget for credential ``key`` lives in PostgreSQL at ``url``.

    ``url`` is the store's URL (``postgresql+psycopg://…``, query options such
    as ``options=-csearch_path=…`` kept) or any libpq URL. Every process and
    machine that builds one for the same database and key shares one budget and
    one pause: a 429 that one of them :meth:`~BudgetLimiter.pause`\\ s makes
    every other one's next :meth:`~BudgetLimiter.acquire` wait too. The rate
    (``rate`` per second) is this process's: give every process the same, and
    the same ``reserve`` (requests per second kept for urgent limiters while
    they wait, in a lane bucket of its own; see the module docstring).
    Close it when done (it holds up to ``max_connections`` connections)::

        limiter = postgres_limiter(config.store, subscription_key, 10.0, stop=stop)
        PowerOfficeClient(settings, rate_limiter=limiter)
    """
    import psycopg
    from psycopg_pool import ConnectionPool, PoolTimeout

    def utc(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        # The bucket stores naive timestamps: every session must read them in one zone.
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()

    pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
        libpq_url(url),
        min_size=1,
        max_size=max_connections,
        kwargs={"application_name": APPLICATION_NAME},
        configure=utc,
        timeout=CONNECT_TIMEOUT_SECONDS,
        num_workers=1,
        open=True,
        name=APPLICATION_NAME,
    )
    lane_rate = _lane_rate(rate, reserve)
    try:
        name = f"tolken_{_digest(key)}"
        bucket = PostgresBucket(pool, name, [pacing_rate(rate)])
        lane = None if lane_rate is None else PostgresBucket(pool, f"{name}_lane", [lane_rate])
        pause = _PostgresPause(pool, name)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        pool.close()
        raise Unreachable(
            f"the rate-limit database cannot be reached: {exc}", system="ratelimit"
        ) from exc
    except BaseException:
        pool.close()
        raise
    budget = Budget(bucket, pause, unavailable=(psycopg.OperationalError, PoolTimeout), lane=lane)
    return BudgetLimiter(budget, stop=stop, owns_budget=True)
