"""Timestamps and list cursors of the reference PMS (pure apart from the clock).

Timestamps are UTC with exactly six fractional digits and a ``Z``
(``2026-01-02T03:04:05.000006Z``), so text order is time order and SQLite can
compare them as strings. A cursor is the URL-safe base64 of the JSON pair
``[updated_at, id]`` of the last item of a page; it is opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_TICK = timedelta(microseconds=1)


def format_ts(moment: datetime) -> str:
    """The canonical text of a moment (UTC, microseconds, ``Z``)."""
    # Not strftime: %Y does not zero-pad years before 1000 on every platform,
    # and text order must stay time order.
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


def parse_ts(text: str) -> datetime:
    """Read an ISO-8601 timestamp; a value without an offset is taken as UTC.

    Raises ValueError on anything else.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00
        raise ValueError(f"timestamp out of range: {text}") from exc


class MonotonicClock:
    """Hands out strictly increasing timestamps, one microsecond apart at least.

    Wall-clock steps backwards and writes within the same microsecond would
    otherwise give two writes the same ``updated_at`` and make the
    ``(updated_at, id)`` order depend on ids instead of write order.
    """

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def observe(self, text: str | None) -> None:
        """Never hand out a timestamp at or before ``text`` (e.g. the newest stored one)."""
        if text is None:
            return
        moment = parse_ts(text)
        with self._lock:
            if self._last is None or moment > self._last:
                self._last = moment

    def next(self) -> str:
        """A timestamp later than every one handed out or observed before."""
        with self._lock:
            moment = self._now().astimezone(UTC)
            if self._last is not None and moment <= self._last:
                moment = self._last + _TICK
            self._last = moment
            return format_ts(moment)


def encode_cursor(updated_at: str, record_id: str) -> str:
    """The opaque cursor that resumes a list after the item ``(updated_at, id)``."""
    raw = json.dumps([updated_at, record_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The ``(updated_at, id)`` inside a cursor; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        pair = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if (
        not isinstance(pair, list)
        or len(pair) != 2
        or not all(isinstance(part, str) for part in pair)
    ):
        raise ValueError("invalid cursor")
    parse_ts(pair[0])
    return pair[0], pair[1]
