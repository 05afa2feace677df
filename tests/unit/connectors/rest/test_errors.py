"""The ``rest`` connector's one classifier: each answer becomes the error class of what happens
next, with the PMS's own words."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tolken.connectors.rest import classify_response
from tolken.errors import (
    AuthError,
    InUse,
    NotFound,
    RateLimited,
    RecordError,
    ServerError,
    StaleVersion,
    ValidationFailed,
)


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "http://pms.test/customers")
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, AuthError),
        (403, AuthError),
        (429, RateLimited),
        (503, ServerError),
        (412, StaleVersion),
        (404, NotFound),
        (409, InUse),
        (400, ValidationFailed),
        (422, ValidationFailed),
        (418, RecordError),
    ],
)
def test_each_status_is_classified_by_what_happens_next(status: int, kind: type) -> None:
    """Refused credentials stop, 429/5xx are retried, 412 re-reads, other 4xx park the record."""
    assert isinstance(classify_response(answer(status, {"message": "no"}), None), kind)
    assert classify_response(answer(200, {}), None) is None


def test_the_message_is_read_at_the_configured_path() -> None:
    """``message_path`` picks the human message out of the PMS's own error body."""
    body = {"status": "fail", "error": {"code": 7, "text": "name is taken"}}
    error = classify_response(answer(422, body), "error.text")
    assert str(error).endswith("name is taken")


def test_an_error_list_names_each_field() -> None:
    """Error entries with ``field`` (or JSON:API ``source.pointer``) read ``field: message``."""
    body = {
        "errors": [
            {"field": "email", "message": "is not an e-mail address"},
            {"source": {"pointer": "/data/attributes/name"}, "detail": "must not be empty"},
        ]
    }
    error = classify_response(answer(422, body), "errors")
    assert str(error).endswith(
        "email: is not an e-mail address; /data/attributes/name: must not be empty"
    )


def test_without_a_path_the_usual_keys_then_the_text_are_used() -> None:
    """No path (or nothing there): ``detail``/``message``/``title``/``error``, else the raw text."""
    assert str(classify_response(answer(400, {"detail": "bad date"}), "nope")).endswith("bad date")
    plain = httpx.Response(400, text="plain words", request=httpx.Request("GET", "http://x/"))
    assert str(classify_response(plain, None)).endswith("plain words")


def test_retry_after_is_kept_for_the_retry_policy() -> None:
    """A 429's ``Retry-After`` reaches the policy as seconds."""
    error = classify_response(answer(429, {"message": "slow down"}, **{"Retry-After": "7"}), None)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7
