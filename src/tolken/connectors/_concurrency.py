"""How many requests a connector has in flight at once, lowered while the server is overloaded.

:class:`AdaptiveConcurrency` is a gate for threads that share one connector:
each request holds a slot while it is on the wire. It starts at the
configured maximum (``pms.max_concurrency``). An overload answer (429, or 503)
halves the limit (never below one) and closes the gate for everyone until the
server's ``Retry-After`` has passed; each run of ``limit`` answers without one
opens one slot more again, up to the maximum (additive increase,
multiplicative decrease, as TCP does). Waits end at once when ``stop`` is set,
and the pause is skipped while :func:`~tolken.connectors._http.testing` removes waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tolken.connectors._http import RetryPolicy, waits_removed
from tolken.errors import Stopped

__all__ = ["AdaptiveConcurrency"]

_POLL = 0.25
"""Longest sleep between two looks at the stop signal while waiting for a slot."""


class AdaptiveConcurrency:
    """A slot gate whose width follows the server's overload answers; see the module docstring."""

    def __init__(
        self,
        maximum: int,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        self._limit = maximum
        self._active = 0
        self._successes = 0
        self._closed_until = 0.0
        self._stop = stop
        self._clock = clock
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        """Requests allowed in flight at once now."""
        with self._cond:
            return self._limit

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of a request (waits while the gate is full or closed)."""
        with self._cond:
            while True:
                if self._stop is not None and self._stop.is_set():
                    raise Stopped("stopping: a request waiting for a free slot was not sent")
                closed_for = self._closed_until - self._clock()
                if closed_for <= 0 and self._active < self._limit:
                    break
                self._cond.wait(min(_POLL, closed_for) if closed_for > 0 else _POLL)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify()

    def overloaded(self, retry_after: float | None) -> None:
        """The server answered 429 or 503: halve the width, close the gate for ``retry_after``
        seconds (capped as a retry's wait is; no wait while testing)."""
        with self._cond:
            self._limit = max(1, self._limit // 2)
            self._successes = 0
            if retry_after is not None and retry_after > 0 and not waits_removed():
                pause = min(retry_after, RetryPolicy.retry_after_cap)
                self._closed_until = max(self._closed_until, self._clock() + pause)

    def succeeded(self) -> None:
        """An answer without overload: after ``limit`` of them in a row, one slot more."""
        with self._cond:
            if self._limit >= self.maximum:
                return
            self._successes += 1
            if self._successes >= self._limit:
                self._limit += 1
                self._successes = 0
                self._cond.notify()
