"""Classify every PowerOffice outcome into :mod:`tolken.errors`, in exactly one function.

PowerOffice answers errors in three shapes, all read with case-insensitive
keys: ProblemDetails (``title``, ``detail``, maybe ``errors``) from the API,
``{"statusCode", "message"}`` from the API gateway (401, 404, 429), and RFC 6749
``{"error", "error_description"}`` from the token endpoint. The remote words
reach the user verbatim; any configured key or token that a body might echo is
replaced by ``***``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    Unreachable,
    ValidationFailed,
)

__all__ = ["SYSTEM", "classify", "never_sent", "redact", "remote_message"]

SYSTEM = "poweroffice"
_MAX_TEXT = 300

#: httpx failures that happen before a request leaves this machine.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def never_sent(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) proves the request never reached PowerOffice."""
    cause = exc if isinstance(exc, httpx.HTTPError) else exc.__cause__
    return isinstance(cause, _NOT_SENT)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _lower_keys(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, Mapping):
        return None
    return {str(key).lower(): value for key, value in body.items()}


def _field_errors(errors: Any) -> list[FieldError]:
    # ASP.NET validation problems: {"errors": {"Name": ["The Name field is required."]}}
    out: list[FieldError] = []
    if isinstance(errors, Mapping):
        for field, messages in errors.items():
            items = messages if isinstance(messages, list) else [messages]
            out.extend(FieldError(str(field), str(message)) for message in items)
    elif isinstance(errors, list):
        out.extend(FieldError(None, str(message)) for message in errors)
    return out


def remote_message(response: httpx.Response) -> tuple[str, dict[str, Any] | None, list[FieldError]]:
    """The remote system's own words for an error response, its parsed body and field errors."""
    body = _lower_keys(json_or_none(response))
    if body is not None:
        title, detail = body.get("title"), body.get("detail")
        if title or detail:
            text = ": ".join(str(part) for part in (title, detail) if part)
            return text, body, _field_errors(body.get("errors"))
        if body.get("error") or body.get("error_description"):
            description = body.get("error_description")
            code = body.get("error")
            text = f"{description} ({code})" if description and code else str(description or code)
            return text, body, []
        if body.get("message"):
            return str(body["message"]), body, []
    return plain_text(response, _MAX_TEXT), body, []


def _where(request: httpx.Request | None) -> str:
    if request is None:
        return ""
    return f" ({request.method} {request.url.path})"


def classify(
    outcome: httpx.Response | httpx.HTTPError,
    *,
    token_request: bool = False,
    secrets: Iterable[str] = (),
) -> TolkenError | None:
    """The error an outcome means, or None for a success (2xx).

    ``token_request`` marks answers of the token endpoint, where 400/401 mean
    the keys were refused. Never raises; the caller raises what it returns.
    """
    secrets = tuple(secrets)
    if isinstance(outcome, httpx.HTTPError):
        return _classify_transport(outcome, secrets)
    response = outcome
    status = response.status_code
    if 200 <= status < 300:
        return None
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:
        request = None
    remote, body, fields = remote_message(response)
    message = redact(remote, secrets)
    where = _where(request)
    kwargs: dict[str, Any] = {"system": SYSTEM, "status": status}

    if token_request and status == 401:
        # API Management answers 401 for a missing or wrong subscription key before
        # the token endpoint sees the request (reference §2.4); that endpoint itself
        # answers 400 invalid_client for unknown application/client keys (§2.3).
        return AuthError(f"PowerOffice refused the subscription key: {message}", **kwargs)
    if token_request and status in (400, 403):
        return AuthError(f"PowerOffice refused the application/client keys: {message}", **kwargs)
    if status in (401, 403):
        what = "access token or subscription key" if status == 401 else "privileges"
        return AuthError(f"PowerOffice refused our {what}: {message}{where}", **kwargs)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(f"{message}{where}", retry_after=retry_after, **kwargs)
    if status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return ServerError(f"{message}{where}", retry_after=retry_after, **kwargs)
    if status < 400:
        location = response.headers.get("Location", "?")
        return Unreachable(
            f"PowerOffice answered {status} redirecting to {location}: check base_url", **kwargs
        )
    return _record_error(status, f"{message}{where}", fields, body)


def _record_error(
    status: int, text: str, fields: list[FieldError], body: dict[str, Any] | None
) -> TolkenError:
    """The error of a 4xx answer about the record itself (invalid, missing, in use, stale)."""
    kwargs: dict[str, Any] = {"system": SYSTEM, "status": status}
    record_kwargs: dict[str, Any] = {**kwargs, "field_errors": fields, "remote": body}
    if status in (400, 422):
        return ValidationFailed(text, **record_kwargs)
    if status == 404:
        return NotFound(text, **record_kwargs)
    if status == 409:
        return InUse(text, **record_kwargs)
    if status == 412:
        return StaleVersion(text, system=SYSTEM)
    return RecordError(text, **record_kwargs)


def _classify_transport(exc: httpx.HTTPError, secrets: tuple[str, ...]) -> TolkenError:
    try:
        target = f" ({exc.request.method} {exc.request.url.host}{exc.request.url.path})"
    except RuntimeError:
        target = ""
    if isinstance(exc, httpx.UnsupportedProtocol):
        return Unreachable(f"PowerOffice URL is not http(s): {exc}{target}", system=SYSTEM)
    if isinstance(exc, httpx.TimeoutException):
        kind = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        kind = "could not connect"
    else:
        kind = f"connection failed: {type(exc).__name__}"
    detail = redact(str(exc), secrets)
    text = f"{kind}{target}" + (f": {detail}" if detail else "")
    return TransportError(text, system=SYSTEM)
