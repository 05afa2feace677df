"""The PMS webhook receiver: bound the body, verify, refuse replays, hand the change item on.

A delivery is accepted only with a body of at most :data:`MAX_BODY_BYTES`
(413 past it, found before the body is read whole), a valid
``X-PMS-Signature`` for the configured secret, an ``X-PMS-Timestamp`` within
five minutes, and a signature not seen before within that window: a captured
delivery replayed a second time is refused like a forged one (401). The
deliveries taken in are kept in the store, so a replay is refused after a
restart too, and by every process sharing the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from pydantic import SecretStr

from tolken.connectors.pms import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRejected,
    verify_webhook,
)
from tolken.store import TenantStore

__all__ = [
    "MAX_BODY_BYTES",
    "BodyTooLarge",
    "ChangeItem",
    "InvalidDelivery",
    "WebhookReceiver",
    "read_capped",
]

ChangeItem = dict[str, Any]
REPLAY_WINDOW = 300.0
# One changes-feed item (with its record) is a few kilobytes; 1 MiB is generous.
MAX_BODY_BYTES = 1024 * 1024


class InvalidDelivery(ValueError):
    """A correctly signed delivery whose body is not a changes-feed item (400)."""


class BodyTooLarge(ValueError):
    """A delivery whose body is larger than :data:`MAX_BODY_BYTES` (413)."""


async def read_capped(
    content_length: str | None, chunks: AsyncIterator[bytes], limit: int = MAX_BODY_BYTES
) -> bytes:
    """The body from ``chunks``, refused as soon as it is known to pass ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before anything is read; a
    chunked (or lying) body is read only until it passes the limit.
    """
    if content_length is not None:
        declared = content_length.strip()
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidDelivery("Content-Length is not a number")
        if len(declared) > 12 or int(declared) > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
    return bytes(body)


class WebhookReceiver:
    """Verifies a tenant's deliveries and passes each change item to ``on_webhook``.

    The deliveries taken in are remembered in the tenant's ``store`` for the replay window.
    """

    def __init__(
        self,
        secret: SecretStr | str | None,
        on_webhook: Callable[[ChangeItem], None],
        *,
        store: TenantStore,
        tolerance: float = REPLAY_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        self._secret = secret or ""
        self._on_webhook = on_webhook
        self._store = store
        self._tolerance = tolerance
        self._clock = clock

    @property
    def configured(self) -> bool:
        return bool(self._secret)

    def receive(self, headers: Mapping[str, str], body: bytes) -> ChangeItem:
        """Verify one delivery and hand its item on; raise WebhookRejected or InvalidDelivery."""
        if not self._secret:
            raise WebhookRejected("no webhook secret is configured (serve.webhook_secret)")
        now = self._clock()
        sent = verify_webhook(self._secret, headers, body, now=now, tolerance=self._tolerance)
        # Verified, so this is exactly the signature of (timestamp, body).
        signature = (_header(headers, SIGNATURE_HEADER) or "").strip()
        # Deliveries sent before the horizon can no longer verify, so they are forgotten.
        horizon = int(now - self._tolerance)
        if not self._store.remember_delivery(signature, sent, horizon):
            raise WebhookRejected(f"replayed delivery ({TIMESTAMP_HEADER} {sent} seen before)")
        try:
            item = _parse(body)
            self._on_webhook(item)
        except BaseException:
            # Not taken in: the PMS may deliver it again (with the same second's signature).
            self._store.forget_delivery(signature)
            raise
        return item


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _parse(body: bytes) -> ChangeItem:
    try:
        item = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be an item
        raise InvalidDelivery("the body is not JSON") from None
    if not isinstance(item, dict):
        raise InvalidDelivery("the body is not a changes-feed item (a JSON object)")
    missing = [k for k in ("type", "id") if item.get(k) in (None, "")]
    if missing:
        raise InvalidDelivery(f"the changes-feed item has no {', '.join(missing)}")
    return item
