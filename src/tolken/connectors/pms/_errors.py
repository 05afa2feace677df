"""Classify every PMS response and transport failure into :mod:`tolken.errors`, in one place.

The PMS contract's error body is ``{"errors": [{"field", "message"}]}``; those
entries become :class:`tolken.errors.FieldError` values verbatim, so the user
reads the PMS's own words. Other bodies fall back to ``detail``/``message``/
``title`` or the raw text (shortened), never to anything of ours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from tolken.connectors._http import json_or_none, parse_retry_after, plain_text
from tolken.errors import (
    AuthError,
    FieldError,
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

__all__ = ["classify_response", "classify_transport_error", "field_errors"]

SYSTEM = "pms"
_MAX_TEXT = 500


def field_errors(body: Any) -> list[FieldError]:
    """The contract's ``errors`` list as FieldError values (empty when the body has none)."""
    if not isinstance(body, Mapping):
        return []
    raw = body.get("errors")
    if not isinstance(raw, list):
        return []
    out: list[FieldError] = []
    for entry in raw:
        if isinstance(entry, Mapping):
            field = entry.get("field")
            message = entry.get("message")
            out.append(
                FieldError(
                    field=str(field) if field is not None else None,
                    message=str(message) if message is not None else json.dumps(dict(entry)),
                )
            )
        else:
            out.append(FieldError(field=None, message=str(entry)))
    return out


def _message(response: httpx.Response, body: Any, errors: list[FieldError]) -> str:
    if errors:
        return "; ".join(str(e) for e in errors)
    if isinstance(body, Mapping):
        for key in ("detail", "message", "title", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return plain_text(response, _MAX_TEXT)


def _current_version(response: httpx.Response, body: Any) -> int | None:
    if isinstance(body, Mapping) and isinstance(body.get("version"), int):
        return int(body["version"])
    etag = response.headers.get("ETag", "").removeprefix("W/").strip('"')
    return int(etag) if etag.isdigit() else None


def classify_response(response: httpx.Response) -> TolkenError | None:
    """The error a PMS response stands for, or None for a success (2xx).

    401/403 fatal; 429 and 5xx retriable (with ``Retry-After``); 400/413/422
    validation with the field errors verbatim; 404, 409, 412 as their classes.
    """
    status = response.status_code
    if status < 400:
        return None
    body = json_or_none(response)
    errors = field_errors(body)
    message = _message(response, body, errors)
    remote = dict(body) if isinstance(body, Mapping) else None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (401, 403):
        return AuthError(
            f"the PMS refused the API key ({status}): {message}", system=SYSTEM, status=status
        )
    if status == 429:
        return RateLimited(message, system=SYSTEM, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, system=SYSTEM, status=status, retry_after=retry_after)
    if status == 412:
        return StaleVersion(
            f"record version is stale: {message}",
            system=SYSTEM,
            current_version=_current_version(response, body),
        )
    if status == 404:
        return NotFound(message, system=SYSTEM, status=status, remote=remote)
    if status == 409:
        return InUse(message, system=SYSTEM, status=status, field_errors=errors, remote=remote)
    if status in (400, 413, 422):
        return ValidationFailed(
            message, system=SYSTEM, status=status, field_errors=errors, remote=remote
        )
    return RecordError(message, system=SYSTEM, status=status, field_errors=errors, remote=remote)


def classify_transport_error(exc: httpx.TransportError) -> TransportError:
    """A timeout or connection failure before any response arrived."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    detail = str(exc) or type(exc).__name__
    return TransportError(f"request {kind}: {detail}", system=SYSTEM)
