"""Classify every answer and transport failure of a described PMS into :mod:`tolken.errors`.

The one classifier of the ``rest`` connector. The human message comes from
``pms.rest.errors.message_path`` in the error body when that finds text,
else ``detail``/``message``/``title``/``error`` (each entry of an error list
prefixed by the field it names: ``field``, ``path`` or JSON:API's
``source.pointer``), else the raw text (shortened): the user reads the PMS's
own words, secrets redacted
(:func:`tolken.connectors._http.json_or_none`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from tolken.connectors._http import json_or_none, parse_retry_after, plain_text
from tolken.connectors.rest._wire import at
from tolken.errors import (
    AuthError,
    InUse,
    NotFound,
    RateLimited,
    RecordError,
    ServerError,
    StaleVersion,
    TolkenError,
    TransportError,
    ValidationFailed,
)

__all__ = ["classify_response", "classify_transport_error", "error_message"]

SYSTEM = "pms"
_MAX_TEXT = 500
_FALLBACK_KEYS = ("detail", "message", "title", "error")
# Where an error entry names the field it is about (JSON:API: source.pointer).
_FIELD_PATHS = ("field", "path", "source.pointer")


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, Mapping):
        for key in _FALLBACK_KEYS:
            found = _text(value.get(key))
            if found:
                names = (at(value, path) for path in _FIELD_PATHS)
                where = next((w for w in names if isinstance(w, str) and w), None)
                return f"{where}: {found}" if where else found
    if isinstance(value, list) and value:
        parts = [t for t in (_text(v) for v in value) if t]
        return "; ".join(parts) or None
    return None


def error_message(response: httpx.Response, message_path: str | None) -> str:
    """The PMS's own words for a failed request (see the module docstring)."""
    body = json_or_none(response)
    if message_path:
        found = _text(at(body, message_path))
        if found:
            return found[:_MAX_TEXT]
    found = _text(body) if isinstance(body, Mapping) else None
    return found[:_MAX_TEXT] if found else plain_text(response, _MAX_TEXT)


def classify_response(response: httpx.Response, message_path: str | None) -> TolkenError | None:
    """The error a response stands for, or None for a success (below 400).

    401/403 fatal; 429 and 5xx retriable (with ``Retry-After``); 400/413/422
    validation; 404, 409 and 412 as their classes; any other 4xx a record error.
    """
    status = response.status_code
    if status < 400:
        return None
    message = error_message(response, message_path)
    body = json_or_none(response)
    remote = dict(body) if isinstance(body, Mapping) else None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (401, 403):
        return AuthError(
            f"the PMS refused the credentials ({status}): {message}", system=SYSTEM, status=status
        )
    if status == 429:
        return RateLimited(message, system=SYSTEM, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, system=SYSTEM, status=status, retry_after=retry_after)
    if status == 412:
        return StaleVersion(f"record version is stale: {message}", system=SYSTEM)
    if status == 404:
        return NotFound(message, system=SYSTEM, status=status, remote=remote)
    if status == 409:
        return InUse(message, system=SYSTEM, status=status, remote=remote)
    if status in (400, 413, 422):
        return ValidationFailed(message, system=SYSTEM, status=status, remote=remote)
    return RecordError(message, system=SYSTEM, status=status, remote=remote)


def classify_transport_error(exc: httpx.TransportError) -> TransportError:
    """A timeout or connection failure before any response arrived."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    detail = str(exc) or type(exc).__name__
    return TransportError(f"request {kind}: {detail}", system=SYSTEM)
