"""Webhook delivery: sign each change and POST it to every receiver, off the request path.

One background thread owns a schedule of pending deliveries. A request that
causes a change only appends to the schedule, so a slow or dead receiver never
delays it. A delivery that fails (connection error or a non-2xx answer) is
rescheduled with exponential backoff and jitter, up to ``max_attempts`` tries,
then dropped: webhooks only accelerate sync, the changes feed stays the
source of truth. This is a scheduler rather than a blocking retry loop (which
is why it does not use stamina): retries of one receiver must not hold up the
first attempt of another. Deliveries still pending at shutdown are dropped.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-PMS-Signature`` value: ``sha256=<hex HMAC-SHA256(secret, ts + "." + body)>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    url: str = field(compare=False)
    secret: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(default=0, compare=False)


@dataclass
class DeliveryStats:
    """Counters a test or the sandbox can read."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0


#: ``(id, url, secret, created_at)`` of one registered receiver.
Receiver = tuple[str, str, str, str]


class WebhookDispatcher:
    """Delivers changes-feed items to the receivers of the workspace that made them."""

    def __init__(
        self,
        *,
        max_attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._timeout = timeout
        self._clock = clock
        self._queue: list[_Delivery] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = DeliveryStats()

    def enqueue(self, item: dict[str, Any], hooks: list[Receiver]) -> None:
        """Schedule ``item`` for each of ``hooks`` (returns at once)."""
        if not hooks:
            return
        body = json.dumps(item, separators=(",", ":")).encode()
        now = self._clock()
        with self._cond:
            for _id, url, secret, _created in hooks:
                heapq.heappush(self._queue, _Delivery(now, next(self._order), url, secret, body))
            self._cond.notify()

    def pending(self) -> int:
        """Deliveries not yet done or given up."""
        with self._cond:
            return len(self._queue)

    def start(self) -> None:
        """Start the delivery thread (again, after a stop)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="pms-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after the delivery in flight; pending ones are dropped."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._stopping:
                if self._queue:
                    wait = self._queue[0].due - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._queue)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (delivery := self._next()) is not None:
                if self._attempt(client, delivery):
                    self.stats.delivered += 1
                    continue
                self.stats.failed_attempts += 1
                delivery.attempt += 1
                if delivery.attempt >= self.max_attempts:
                    self.stats.given_up += 1
                    continue
                delay = min(self.max_delay, self.base_delay * 2 ** (delivery.attempt - 1))
                delivery.due = self._clock() + delay * random.uniform(0.5, 1.0)
                with self._cond:
                    if not self._stopping:
                        heapq.heappush(self._queue, delivery)

    @staticmethod
    def _attempt(client: httpx.Client, delivery: _Delivery) -> bool:
        # A fresh timestamp per attempt: receivers reject ones older than 5 minutes.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-PMS-Timestamp": timestamp,
            "X-PMS-Signature": sign(delivery.secret, timestamp, delivery.body),
        }
        try:
            response = client.post(delivery.url, content=delivery.body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL):  # a URL httpx cannot send to fails too
            return False
        return response.is_success
