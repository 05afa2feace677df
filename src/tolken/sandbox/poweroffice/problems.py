"""Error answers of the simulator (reference §8.1).

The API answers ProblemDetails (RFC 7807) with the lower-case wire keys every
official example shows (``type``, ``title``, ``status``, ``detail``,
``instance``) and ``application/problem+json``. The gateway in front of it
(Azure API Management) answers with ``{"statusCode", "message"}`` instead:
missing keys (401) and throttling (429).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

__all__ = [
    "ApiError",
    "gateway_response",
    "not_found",
    "problem_response",
    "validation_error",
]

_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    409: "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    415: "https://tools.ietf.org/html/rfc9110#section-15.5.16",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
}


class ApiError(Exception):
    """Raised inside a handler; becomes a ProblemDetails response."""

    def __init__(
        self, status: int, title: str, detail: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra or {}


def validation_error(entity: str, detail: str) -> ApiError:
    """400 ``<Entity> validation error(s)``."""
    return ApiError(400, f"{entity} validation error(s)", detail)


def not_found(entity: str, entity_id: int | str) -> ApiError:
    """404 ``Object(s) not found`` / ``<Entity> with id = N not found.``."""
    return ApiError(404, "Object(s) not found", f"{entity} with id = {entity_id} not found.")


def cast_error(detail: str) -> ApiError:
    """400 ``Unable to cast object(s)`` (bad filter or paging value)."""
    return ApiError(400, "Unable to cast object(s)", detail)


def problem_response(error: ApiError, instance: str) -> Response:
    """The ProblemDetails response of ``error``."""
    body: dict[str, Any] = {
        "type": _TYPES.get(error.status, _TYPES[400]),
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
        **error.extra,
    }
    return Response(
        json.dumps(body, ensure_ascii=False),
        status_code=error.status,
        media_type="application/problem+json",
    )


def gateway_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An API-Management-style ``{"statusCode", "message"}`` answer."""
    return Response(
        json.dumps({"statusCode": status, "message": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
