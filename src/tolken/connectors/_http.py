"""HTTP helpers shared by connectors: ``Retry-After``, the retry policy and the test switch.

Everything here is generic (no PowerOffice or PMS knowledge), so any HTTP
connector can reuse it (the request budget of a credential, paced before each
request and paused after a 429, is :mod:`tolken.connectors.ratelimit`):

* :func:`parse_retry_after` reads the header (delta-seconds or HTTP date);
  :func:`json_or_none` and :func:`plain_text` read an error answer's body for
  the connector's classifier, which picks the remote words out of it.
* :class:`RetryPolicy` bounds retries (attempts and total time) and decides the
  wait per failure: ``Retry-After`` with a floor and a cap for
  :class:`~tolken.errors.RateLimited`, jittered exponential backoff for other
  :class:`~tolken.errors.Retriable` errors, no retry for anything else.
  :meth:`RetryPolicy.call` runs a function under it with stamina.
* :func:`set_testing` removes every wait (stamina backoffs, rate-limit waits)
  while keeping the attempt counts, so tests can assert how often a request was
  retried without sleeping; :func:`waits_removed` tells the rate limiters.

Usage in a connector::

    limiter = shared_limiter(api_key, rate=10.0)  # tolken.connectors.ratelimit
    policy = RetryPolicy()

    def once() -> httpx.Response:
        limiter.acquire()
        return classify_or_return(http.get(url))  # raises tolken.errors.*

    response = policy.call(once)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import stamina

from tolken.errors import RateLimited, Retriable

__all__ = [
    "RetryPolicy",
    "json_or_none",
    "parse_retry_after",
    "plain_text",
    "set_testing",
    "testing",
    "waits_removed",
]

T = TypeVar("T")

_no_waits = False


def waits_removed() -> bool:
    """True while :func:`set_testing` (or :func:`testing`) has removed every wait."""
    return _no_waits


def set_testing(on: bool) -> None:
    """Remove (``True``) or restore all waits: retry backoffs and rate-limit waits.

    Attempt counts are unchanged (stamina's testing mode with ``cap=True``), so
    a test still sees every retry the policy would make, instantly.
    """
    global _no_waits
    _no_waits = on
    if on:
        # A large cap keeps each policy's own ``attempts``; only the waits go.
        stamina.set_testing(True, attempts=1_000_000, cap=True)
    else:
        stamina.set_testing(False)


@contextmanager
def testing() -> Iterator[None]:
    """Context manager form of :func:`set_testing`; restores the previous state on exit."""
    global _no_waits
    previous = _no_waits
    _no_waits = True
    try:
        with stamina.set_testing(True, attempts=1_000_000, cap=True):
            yield
    finally:
        _no_waits = previous


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None.

    Unparseable values give None (the caller then uses its own backoff);
    negative values and dates in the past give 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def json_or_none(response: httpx.Response) -> Any:
    """The decoded JSON body of an error answer, or None when it is not JSON."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def plain_text(response: httpx.Response, limit: int) -> str:
    """An answer's own text (stripped, at most ``limit`` characters), else its reason phrase."""
    return response.text.strip()[:limit] or response.reason_phrase or f"HTTP {response.status_code}"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded, jittered retries of :class:`~tolken.errors.Retriable` errors.

    ``attempts`` counts the first try. A :class:`~tolken.errors.RateLimited`
    error waits its ``retry_after`` clamped to ``[retry_after_floor,
    retry_after_cap]`` plus up to ``retry_after_jitter`` (so callers sharing a
    key do not return in lock-step); without a hint it waits the floor. Another
    retriable error with a ``retry_after`` hint (a 503 with ``Retry-After``)
    waits the same way; without one, stamina's exponential backoff with
    jitter. Anything else is raised at once.
    """

    attempts: int = 5
    timeout: float = 60.0
    wait_initial: float = 0.2
    wait_max: float = 5.0
    wait_jitter: float = 0.5
    retry_after_floor: float = 1.0
    retry_after_cap: float = 30.0
    retry_after_jitter: float = 0.25

    def backoff(self, exc: Exception) -> bool | float:
        """stamina backoff hook: False = do not retry, True = default backoff, float = wait."""
        if isinstance(exc, RateLimited) or (
            isinstance(exc, Retriable) and exc.retry_after is not None
        ):
            return self.retry_after_wait(exc.retry_after) + random.uniform(
                0, self.retry_after_jitter
            )
        return isinstance(exc, Retriable)

    def retry_after_wait(self, retry_after: float | None) -> float:
        """The wait for a server hint: floored, capped, and the floor when absent (pure)."""
        if retry_after is None:
            return self.retry_after_floor
        return min(self.retry_after_cap, max(self.retry_after_floor, retry_after))

    def call(
        self, fn: Callable[[], T], *, retry_if: Callable[[Exception], bool] | None = None
    ) -> T:
        """Run ``fn`` until it succeeds, raises a non-retriable error, or the bounds run out.

        ``retry_if`` narrows the policy further for one call: an error it
        rejects is raised at once (e.g. a create that may already have happened).
        """

        def hook(exc: Exception) -> bool | float:
            if retry_if is not None and not retry_if(exc):
                return False
            return self.backoff(exc)

        for attempt in stamina.retry_context(
            on=hook,
            attempts=self.attempts,
            timeout=self.timeout,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            wait_jitter=self.wait_jitter,
        ):
            with attempt:
                return fn()
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover
