"""HTTP helpers shared by connectors: ``Retry-After``, the retry policy and the test switch.

Everything here is generic (no PowerOffice or PMS knowledge), so any HTTP
connector can reuse it (the request budget of a credential, paced before each
request and paused after a 429, is :mod:`tolken.connectors.ratelimit`):

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
  :meth:`RetryPolicy.call` runs a function under it with tenacity, every wait
  an ``Event.wait`` so a stop request ends it at once (:class:`~tolken.errors.Stopped`).
* :class:`TokenClient` is an ``httpx.Client`` that keeps no cookies, for a
  system that authenticates every request by token.
* :func:`set_testing` removes every wait (retry backoffs, rate-limit waits)
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

import base64
import binascii
import contextlib
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
import tenacity

from tolken._redact import Redactor, shared
from tolken.errors import RateLimited, Retriable, Stopped

__all__ = [
    "RetryPolicy",
    "TokenClient",
    "UnsentOnlyPolicy",
    "json_or_none",
    "parse_retry_after",
    "plain_text",
    "request_credentials",
    "set_testing",
    "testing",
    "waits_removed",
]

T = TypeVar("T")


class TokenClient(httpx.Client):
    """An httpx client that keeps no cookies: nothing a response sets travels with the next
    request.

    For a system that authenticates every request by token (PowerOffice, the PMS).
    Reading each answer's ``Set-Cookie`` (httpx builds a urllib request and response
    for it) was a tenth of a PMS create's CPU in the initial sync.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, _cookies: Any) -> None:
        pass  # httpx sets an empty jar while it starts: none is kept


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:  # noqa: ARG002 - httpx's signature
        return None


_NO_COOKIES = _NoCookies()

_no_waits = False


def waits_removed() -> bool:
    """True while :func:`set_testing` (or :func:`testing`) has removed every wait."""
    return _no_waits


def set_testing(on: bool) -> None:
    """Remove (``True``) or restore all waits: retry backoffs and rate-limit waits.

    Attempt counts are unchanged, so a test still sees every retry the policy
    would make, instantly. (stamina's testing mode goes along, for the store's
    retries, with ``cap=True`` keeping each caller's own attempts.)
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


def parse_http_date(value: str | None) -> datetime | None:
    """A ``Date`` header as an aware time (RFC 9110 IMF-fixdate), else None."""
    if value is None or not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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

    ``attempts`` counts the first try; ``timeout`` bounds the total time. A
    :class:`~tolken.errors.RateLimited` error waits its ``retry_after`` clamped
    to ``[retry_after_floor, retry_after_cap]`` plus up to
    ``retry_after_jitter`` (so callers sharing a key do not return in
    lock-step); without a hint it waits the floor. Another retriable error with
    a ``retry_after`` hint (a 503 with ``Retry-After``) waits the same way;
    without one, exponential backoff with jitter. Anything else is raised at
    once. Every wait is ``stop.wait(seconds)``: a stop ends it at once with
    :class:`~tolken.errors.Stopped`.
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
        """The retry decision: False = do not retry, True = default backoff, float = wait."""
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

    def exponential_wait(self, attempt: int) -> float:
        """The default backoff after failed attempt number ``attempt`` (1-based), jittered."""
        jitter = random.uniform(0, self.wait_jitter) if self.wait_jitter else 0.0
        return min(self.wait_max, self.wait_initial * 2.0 ** (attempt - 1) + jitter)

    def call(
        self,
        fn: Callable[[], T],
        *,
        retry_if: Callable[[Exception], bool] | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """Run ``fn`` until it succeeds, raises a non-retriable error, or the bounds run out.

        ``retry_if`` narrows the policy further for one call: an error it
        rejects is raised at once (e.g. a create that may already have happened).
        ``stop`` set (before or during a wait) raises :class:`~tolken.errors.Stopped`
        instead of waiting or trying again.
        """

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, Exception) or isinstance(exc, Stopped):
                return False
            if retry_if is not None and not retry_if(exc):
                return False
            return self.backoff(exc) is not False

        started = time.monotonic()
        # The first attempt is made here: most calls succeed at once, and a
        # tenacity loop (its objects and bookkeeping) is only built for a retry.
        try:
            return fn()
        except Exception as exc:
            if self.attempts <= 1 or not should_retry(exc):
                raise
            first: list[Exception] = [exc]

        def attempt() -> T:
            if first:  # attempt 1 is the one made above: its error, then fn again
                raise first.pop()
            return fn()

        # A stop signal of its own only for a retry: an Event per call costs more than the call.
        return self._retrying(should_retry, started, stop or threading.Event())(attempt)

    def _retrying(
        self, should_retry: Callable[[BaseException], bool], started: float, stop: threading.Event
    ) -> tenacity.Retrying:
        def wait(state: tenacity.RetryCallState) -> float:
            if _no_waits:
                return 0.0
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            decision = self.backoff(exc) if isinstance(exc, Exception) else True
            if decision is True or decision is False:
                return self.exponential_wait(state.attempt_number)
            return decision

        def give_up(state: tenacity.RetryCallState) -> bool:
            # While testing the waits are gone, so only the attempts count (as stamina's mode).
            elapsed = time.monotonic() - started
            return state.attempt_number >= self.attempts or (
                not _no_waits and elapsed >= self.timeout
            )

        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise Stopped("stopping: a retry wait was cut short")

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(should_retry),
            stop=give_up,
            wait=wait,
            sleep=sleep,
            reraise=True,
        )


@dataclass(frozen=True)
class UnsentOnlyPolicy(RetryPolicy):
    """For requests that are not idempotent (a create without an idempotency key the
    server honours): retry only what the server cannot have acted on, a 429 or a
    connection that was never made."""

    def backoff(self, exc: Exception) -> bool | float:
        if isinstance(exc, RateLimited) or isinstance(exc.__cause__, httpx.ConnectError):
            return super().backoff(exc)
        return False
