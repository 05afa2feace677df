"""HTTP helpers shared by connectors: a token bucket, ``Retry-After`` and the retry policy.

Everything here is generic (no PowerOffice or PMS knowledge), so any HTTP
connector can reuse it:

* :class:`TokenBucket` spaces requests to a rate; :func:`shared_bucket` hands
  every client that uses the same credential (e.g. one PowerOffice
  subscription key) the *same* bucket, process-wide. A ``Retry-After`` answer
  can :meth:`~TokenBucket.hold` the bucket so every user of the key backs off,
  not just the request that was refused.
* :func:`parse_retry_after` reads the header (delta-seconds or HTTP date);
  :func:`json_or_none` and :func:`plain_text` read an error answer's body for
  the connector's classifier, which picks the remote words out of it. Both
  redact the credentials the request carried (its ``Authorization`` and API
  key headers) and every secret of the process's redactor, so a remote system
  that echoes a key ("bad credentials: Bearer ...") cannot get it printed,
  stored or shown: this is where every remote message enters tolken.
* :class:`RetryPolicy` bounds retries (attempts and total time) and decides the
  wait per failure: ``Retry-After`` with a floor and a cap for
  :class:`~tolken.errors.RateLimited`, jittered exponential backoff for other
  :class:`~tolken.errors.Retriable` errors, no retry for anything else.
  :meth:`RetryPolicy.call` runs a function under it with stamina.
* :func:`set_testing` removes every wait (stamina backoffs, bucket sleeps)
  while keeping the attempt counts, so tests can assert how often a request was
  retried without sleeping.

Usage in a connector::

    bucket = shared_bucket(api_key, rate=10.0)
    policy = RetryPolicy()

    def once() -> httpx.Response:
        bucket.acquire()
        return classify_or_return(http.get(url))  # raises tolken.errors.*

    response = policy.call(once)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import stamina

from tolken._redact import Redactor, shared
from tolken.errors import RateLimited, Retriable

__all__ = [
    "RetryPolicy",
    "TokenBucket",
    "clear_shared_buckets",
    "json_or_none",
    "parse_retry_after",
    "plain_text",
    "request_credentials",
    "set_testing",
    "shared_bucket",
    "testing",
]

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], None]

_no_waits = False


def _default_sleep(seconds: float) -> None:
    # Looked up at call time so set_testing() also affects buckets made earlier.
    if not _no_waits and seconds > 0:
        time.sleep(seconds)


def set_testing(on: bool) -> None:
    """Remove (``True``) or restore all waits: retry backoffs and bucket sleeps.

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


class TokenBucket:
    """Spaces calls to ``rate`` per second, allowing bursts of ``capacity``.

    Thread-safe. A caller *reserves* a token under the lock (the level may go
    negative: that is the queue) and sleeps outside it, so waiting callers are
    served in arrival order without holding the lock. ``clock`` and ``sleep``
    are injectable for tests.

    The default capacity of 1 never lets more than ``rate`` requests into any
    one-second window, which is what a sliding-window gateway limit (like
    PowerOffice's 10/s) counts; a larger burst would earn 429s.
    """

    def __init__(
        self,
        rate: float,
        *,
        capacity: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep or _default_sleep
        self._lock = threading.Lock()
        self._level = capacity
        self._stamp = clock()
        self._hold_until = float("-inf")

    def reserve(self) -> float:
        """Take one token now; return how many seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            if now > self._stamp:
                self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
                self._stamp = now
            self._level -= 1.0
            wait = 0.0 if self._level >= 0 else -self._level / self.rate
            return max(wait, self._hold_until - now)

    def acquire(self) -> float:
        """Wait for a token (sleeping as needed); return the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def hold(self, seconds: float) -> None:
        """Let nobody through for ``seconds`` from now (a ``Retry-After`` for the whole key)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def set_rate(self, rate: float) -> None:
        """Change the rate (used when a stricter limit is configured for a shared key)."""
        with self._lock:
            self.rate = rate


_buckets: dict[str, TokenBucket] = {}
_buckets_lock = threading.Lock()


def shared_bucket(key: str, rate: float) -> TokenBucket:
    """The process-wide bucket for credential ``key`` (e.g. a subscription key).

    Every caller with the same key gets the same bucket. When callers ask for
    different rates the strictest (lowest) wins, so the sum of all users never
    exceeds the limit of the key. The key is stored only as a digest.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()
    with _buckets_lock:
        bucket = _buckets.get(digest)
        if bucket is None:
            bucket = _buckets[digest] = TokenBucket(rate)
        elif rate < bucket.rate:
            bucket.set_rate(rate)
        return bucket


def clear_shared_buckets() -> None:
    """Forget every shared bucket (tests that want a fresh rate per key)."""
    with _buckets_lock:
        _buckets.clear()


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


# Request headers that carry a credential (besides Authorization) in common APIs.
_KEY_HEADERS = ("ocp-apim-subscription-key", "x-api-key", "api-key", "apikey")


def request_credentials(request: httpx.Request) -> list[str]:
    """The credentials ``request`` carried: bearer tokens, Basic user and password, API keys."""
    found: list[str] = []
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if value:
        found.append(value)
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = password = ""
            found += [user, password]
    found += [request.headers.get(name, "") for name in _KEY_HEADERS]
    return [secret for secret in found if secret]


def _redactor_for(response: httpx.Response) -> Redactor:
    redactor = Redactor(shared().secrets)
    with contextlib.suppress(RuntimeError):  # a response built without a request (tests)
        redactor.add(*request_credentials(response.request))
    return redactor


def json_or_none(response: httpx.Response) -> Any:
    """The decoded JSON body of an error answer (secrets redacted), or None when it is not JSON."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return _redactor_for(response).value(body)


def plain_text(response: httpx.Response, limit: int) -> str:
    """An answer's own text (secrets redacted, stripped, at most ``limit`` characters),
    else its reason phrase."""
    # Redact before cutting, so a secret that straddles the limit is not left half-shown.
    text = _redactor_for(response).text(response.text.strip())
    return text[:limit] or response.reason_phrase or f"HTTP {response.status_code}"


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
