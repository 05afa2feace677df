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
from typing import TYPE_CHECKING, Protocol

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
    def remaining(self) -> float: ...

    def extend(self, seconds: float) -> None: ...


class _MemoryPause:
    """A pause on this process's monotonic clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = float("-inf")

    def remaining(self) -> float:
        with self._lock:
            return self._until - time.monotonic()

    def extend(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)


class _PostgresPause:
    """A pause in ``tolken_rate_pauses``, one row per budget, on PostgreSQL's clock."""

    def __init__(self, pool: ConnectionPool[Connection[tuple[float]]], name: str) -> None:
        self._pool = pool
        self._name = name
        with pool.connection() as conn:
            # Processes starting together must not race to create the table.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(PAUSE_TABLE.encode()),))
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {PAUSE_TABLE} "
                "(budget TEXT PRIMARY KEY, until_epoch DOUBLE PRECISION NOT NULL)"
            )

    def remaining(self) -> float:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT until_epoch - extract(epoch FROM clock_timestamp())::float8 "
                f"FROM {PAUSE_TABLE} WHERE budget = %s",
                (self._name,),
            ).fetchone()
        return float("-inf") if row is None else float(row[0])

    def extend(self, seconds: float) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO {PAUSE_TABLE} AS p (budget, until_epoch) "
                "VALUES (%s, extract(epoch FROM clock_timestamp())::float8 + %s) "
                "ON CONFLICT (budget) DO UPDATE "
                "SET until_epoch = GREATEST(p.until_epoch, EXCLUDED.until_epoch)",
                (self._name, seconds),
            )


class Budget:
    """One credential's request budget: a pyrate-limiter bucket plus the pause of a 429.

    Thread-safe; every :class:`BudgetLimiter` made from it draws on it. Build it
    with :func:`shared_limiter`, :func:`memory_limiter` or :func:`postgres_limiter`.
    ``unavailable`` names the bucket's own failures (PostgreSQL down), which
    surface as :class:`~tolken.errors.TransportError`, retried like a network
    failure.
    """

    def __init__(
        self,
        bucket: AbstractBucket,
        pause: _Pause,
        *,
        unavailable: tuple[type[Exception], ...] = (),
    ) -> None:
        self._bucket = bucket
        self._pause = pause
        self._unavailable = unavailable
        # Leaks are done here, on acquire, rather than by a thread per budget.
        self._limiter = Limiter(SingleBucketFactory(bucket, schedule_leak=False), buffer_ms=0)
        self._leak_lock = threading.Lock()
        self._leaked_at = time.monotonic()

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

    def take(self, timeout: float) -> bool:
        """Take one request's share, waiting at most ``timeout`` seconds; False if none came."""
        with self._backend():
            taken = self._limiter.try_acquire("request", timeout=timeout)
            self._leak()
        return taken is True

    def _leak(self) -> None:
        if time.monotonic() - self._leaked_at < LEAK_EVERY_SECONDS:
            return
        if not self._leak_lock.acquire(blocking=False):
            return  # another thread is at it
        try:
            self._leaked_at = time.monotonic()
            self._bucket.leak(self._bucket.now())  # type: ignore[no-untyped-call]
        finally:
            self._leak_lock.release()

    def paused_for(self) -> float:
        """Seconds left of the current pause (zero or less: none)."""
        with self._backend():
            return self._pause.remaining()

    def pause(self, seconds: float) -> None:
        """Let nobody through for ``seconds`` from now (a longer pause already set stays)."""
        if seconds > 0:
            with self._backend():
                self._pause.extend(seconds)

    def close(self) -> None:
        """Release the bucket (a PostgreSQL budget closes its connections)."""
        self._limiter.close()


class BudgetLimiter:
    """A :class:`RateLimiter` drawing on a :class:`Budget`; ``stop`` ends its waits.

    Several limiters may share one budget, each with its own stop signal.
    """

    def __init__(
        self, budget: Budget, *, stop: StopSignal | None = None, owns_budget: bool = False
    ) -> None:
        self.budget = budget
        self._stop: StopSignal = stop if stop is not None else threading.Event()
        self._owns_budget = owns_budget

    def acquire(self) -> None:
        """Block until one request may go (after any pause); :class:`Stopped` once stopped."""
        while True:
            if self._stop.is_set():
                raise Stopped("stopping: no further request is sent")
            if waits_removed():
                return
            if not self.budget.take(timeout=STOP_CHECK_SECONDS):
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


def memory_limiter(rate: float, *, stop: StopSignal | None = None) -> BudgetLimiter:
    """A limiter with an in-memory budget of its own, shared with nobody."""
    return BudgetLimiter(Budget(InMemoryBucket([pacing_rate(rate)]), _MemoryPause()), stop=stop)


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
    url: str, key: str, rate: float, *, stop: StopSignal | None = None, max_connections: int = 4
) -> BudgetLimiter:
    """A limiter whose budget for credential ``key`` lives in PostgreSQL at ``url``.

    ``url`` is the store's URL (``postgresql+psycopg://…``, query options such
    as ``options=-csearch_path=…`` kept) or any libpq URL. Every process and
    machine that builds one for the same database and key shares one budget and
    one pause: a 429 that one of them :meth:`~BudgetLimiter.pause`\\ s makes
    every other one's next :meth:`~BudgetLimiter.acquire` wait too. The rate
    (``rate`` per second) is this process's: give every process the same.
    Close it when done (it holds up to ``max_connections`` connections)::

        limiter = postgres_limiter(config.store, subscription_key, 10.0, stop=stop)
        PowerOfficeClient(settings, rate_limiter=limiter)
    """
    import psycopg
    from psycopg_pool import ConnectionPool, PoolTimeout

    def utc(conn: psycopg.Connection[tuple[float]]) -> None:
        # The bucket stores naive timestamps: every session must read them in one zone.
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()

    pool: ConnectionPool[psycopg.Connection[tuple[float]]] = ConnectionPool(
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
    try:
        name = f"tolken_{_digest(key)}"
        bucket = PostgresBucket(pool, name, [pacing_rate(rate)])
        pause = _PostgresPause(pool, name)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        pool.close()
        raise Unreachable(
            f"the rate-limit database cannot be reached: {exc}", system="ratelimit"
        ) from exc
    except BaseException:
        pool.close()
        raise
    budget = Budget(bucket, pause, unavailable=(psycopg.OperationalError, PoolTimeout))
    return BudgetLimiter(budget, stop=stop, owns_budget=True)
