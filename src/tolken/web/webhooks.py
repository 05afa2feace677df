"""The PMS webhook receiver: verify, refuse replays, hand the change item on.

A delivery is accepted only with a valid ``X-PMS-Signature`` for the
configured secret, an ``X-PMS-Timestamp`` within five minutes, and a
(timestamp, signature) pair not seen before within that window: a captured
delivery replayed a second time is refused like a forged one (401).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from tolken.connectors.pms import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    verify_webhook,
)

__all__ = ["ChangeItem", "InvalidDelivery", "WebhookReceiver"]

ChangeItem = dict[str, Any]
REPLAY_WINDOW = 300.0


class InvalidDelivery(ValueError):
    """A correctly signed delivery whose body is not a changes-feed item (400)."""


class WebhookReceiver:
    """Verifies deliveries and passes each change item to ``on_webhook``."""

    def __init__(
        self,
        secret: SecretStr | str | None,
        on_webhook: Callable[[ChangeItem], None],
        *,
        tolerance: float = REPLAY_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        self._secret = secret or ""
        self._on_webhook = on_webhook
        self._tolerance = tolerance
        self._clock = clock
        self._seen: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._secret)

    def receive(self, headers: Mapping[str, str], body: bytes) -> ChangeItem:
        """Verify one delivery and hand its item on; raise WebhookRejected or InvalidDelivery."""
        if not self._secret:
            raise WebhookRejected("no webhook secret is configured (serve.webhook_secret)")
        now = self._clock()
        sent = verify_webhook(self._secret, headers, body, now=now, tolerance=self._tolerance)
        signature = _header(headers, SIGNATURE_HEADER) or ""
        key = (sent, signature.strip())
        self._remember(key, now)
        try:
            item = _parse(body)
            self._on_webhook(item)
        except BaseException:
            # Not taken in: the PMS may deliver it again (with the same second's signature).
            with self._lock:
                self._seen.pop(key, None)
            raise
        return item

    def _remember(self, key: tuple[int, str], now: float) -> None:
        sent = key[0]
        with self._lock:
            # Entries older than the window can no longer verify, so forget them.
            horizon = now - self._tolerance
            for old in [k for k, ts in self._seen.items() if ts < horizon]:
                del self._seen[old]
            if key in self._seen:
                raise WebhookRejected(f"replayed delivery ({TIMESTAMP_HEADER} {sent} seen before)")
            self._seen[key] = sent


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _parse(body: bytes) -> ChangeItem:
    try:
        item = json.loads(body)
    except ValueError:
        raise InvalidDelivery("the body is not JSON") from None
    if not isinstance(item, dict):
        raise InvalidDelivery("the body is not a changes-feed item (a JSON object)")
    missing = [k for k in ("type", "id") if item.get(k) in (None, "")]
    if missing:
        raise InvalidDelivery(f"the changes-feed item has no {', '.join(missing)}")
    return item
