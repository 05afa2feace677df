"""Signing and verifying PMS webhook deliveries (DESIGN §2).

A delivery carries ``X-PMS-Timestamp: <unix seconds>`` and
``X-PMS-Signature: sha256=<hex>`` where the hex is
``HMAC-SHA256(secret, timestamp + "." + body)`` over the raw body bytes.
A receiver rejects a wrong signature (compared in constant time) and a
timestamp outside the replay window (five minutes either way by default), so a
captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from pydantic import SecretStr

from tolken.errors import TolkenError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookRejected",
    "sign_webhook",
    "verify_webhook",
]

TIMESTAMP_HEADER = "X-PMS-Timestamp"
SIGNATURE_HEADER = "X-PMS-Signature"
DEFAULT_TOLERANCE = 300.0
_PREFIX = "sha256="
# Unix seconds as ASCII digits, at most 15 of them (millions of years): anything
# else (a sign, a fraction, non-ASCII digits, 10**400) is refused before int().
_UNIX_SECONDS = re.compile(r"[0-9]{1,15}")


class WebhookRejected(TolkenError):
    """A webhook delivery failed verification; ``reason`` says why (safe to log and show)."""

    def __init__(self, reason: str):
        super().__init__(f"webhook rejected: {reason}", system="pms", status=401)
        self.reason = reason


def _secret_bytes(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _digest(secret: str | bytes | SecretStr, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(_secret_bytes(secret), message, hashlib.sha256).hexdigest()


def sign_webhook(
    secret: str | bytes | SecretStr, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The two headers a PMS sends with ``body`` (for tests and for PMS vendors to copy)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: _PREFIX + _digest(secret, ts, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Plain dicts are case-sensitive; HTTP header names are not.
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify_webhook(
    secret: str | bytes | SecretStr,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """Check a delivery's signature and freshness; return its timestamp or raise WebhookRejected.

    ``headers`` may be any mapping (names are matched case-insensitively);
    ``now`` is the current unix time (default: the clock).
    """
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if timestamp is None:
        raise WebhookRejected(f"missing {TIMESTAMP_HEADER} header")
    if signature is None:
        raise WebhookRejected(f"missing {SIGNATURE_HEADER} header")
    timestamp = timestamp.strip()
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is not unix seconds (1 to 15 ASCII digits)")
    signature = signature.strip()
    if not signature.startswith(_PREFIX):
        raise WebhookRejected(f"{SIGNATURE_HEADER} does not start with {_PREFIX}")
    expected = _PREFIX + _digest(secret, timestamp, body)
    # Compare before the clock check so timing reveals nothing about the secret
    # whatever the timestamp; compare_digest is constant-time.
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise WebhookRejected("signature does not match the body")
    sent = int(timestamp)
    now = time.time() if now is None else now
    if sent < now - tolerance:
        raise WebhookRejected(f"timestamp is {int(now - sent)} s old (limit {int(tolerance)} s)")
    if sent > now + tolerance:
        raise WebhookRejected(
            f"timestamp is {int(sent - now)} s in the future (limit {int(tolerance)} s)"
        )
    return sent
