"""Classification of PowerOffice answers into the error taxonomy, in one function."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tolken.connectors.poweroffice._errors import classify, never_sent
from tolken.errors import (
    AuthError,
    InUse,
    NotFound,
    RateLimited,
    RecordError,
    ServerError,
    StaleVersion,
    TransportError,
    Unreachable,
    ValidationFailed,
)

REQUEST = httpx.Request("PATCH", "https://goapi.example/v2/Customers/5")


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers, request=REQUEST)
    return httpx.Response(status, json=body, headers=headers, request=REQUEST)


def test_success_is_not_an_error() -> None:
    """2xx answers classify as None."""
    assert classify(answer(200, [])) is None
    assert classify(answer(204)) is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationFailed),
        (422, ValidationFailed),
        (404, NotFound),
        (409, InUse),
        (412, StaleVersion),
        (415, RecordError),
        (401, AuthError),
        (403, AuthError),
        (429, RateLimited),
        (500, ServerError),
        (503, ServerError),
        (302, Unreachable),
    ],
)
def test_status_classes(status: int, cls: type[Exception]) -> None:
    """Each status maps to the class that says what the engine does next."""
    error = classify(answer(status, {"title": "t", "detail": "d"}))
    assert type(error) is cls


def test_problem_details_title_and_detail_reach_the_user_verbatim() -> None:
    """ProblemDetails title and detail (any key casing) appear word for word."""
    detail = "ExternalImportReference is already in use. 'ABC123' is used on (contact) Id = 1."
    body = {"Title": "Customer validation error(s)", "DETAIL": detail, "status": 400}
    error = classify(answer(400, body))
    assert isinstance(error, ValidationFailed)
    assert str(error) == (
        "poweroffice: Customer validation error(s): ExternalImportReference is already in use. "
        "'ABC123' is used on (contact) Id = 1. (PATCH /v2/Customers/5)"
    )
    assert error.status == 400
    assert error.remote is not None


def test_aspnet_validation_errors_become_field_errors() -> None:
    """An `errors` member of a validation problem is kept field by field."""
    body = {"title": "One or more validation errors occurred.", "errors": {"Name": ["Required"]}}
    error = classify(answer(400, body))
    assert isinstance(error, ValidationFailed)
    assert [(f.field, f.message) for f in error.field_errors] == [("Name", "Required")]


def test_gateway_429_carries_retry_after() -> None:
    """An APIM 429 body's message is kept and Retry-After is parsed."""
    body = {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."}
    error = classify(answer(429, body, **{"Retry-After": "2"}))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 2.0
    assert "Rate limit is exceeded" in str(error)


def test_refused_keys_are_one_clear_line_without_the_key() -> None:
    """invalid_client from the token endpoint is an AuthError naming PowerOffice, key redacted."""
    body = {"error": "invalid_client", "error_description": "Client integration not found: k3y"}
    error = classify(answer(400, body), token_request=True, secrets=["k3y"])
    assert isinstance(error, AuthError)
    text = str(error)
    assert "PowerOffice" in text
    assert "invalid_client" in text
    assert "k3y" not in text
    assert "\n" not in text


def test_non_json_error_body_is_kept_shortened() -> None:
    """A plain-text error body reaches the user, cut to a sane length."""
    error = classify(httpx.Response(502, text="Bad gateway " + "x" * 1000, request=REQUEST))
    assert isinstance(error, ServerError)
    assert "Bad gateway" in str(error)
    assert len(str(error)) < 400


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (httpx.ConnectError("refused", request=REQUEST), False),
        (httpx.ConnectTimeout("slow", request=REQUEST), False),
        (httpx.ReadTimeout("slow", request=REQUEST), True),
        (httpx.RemoteProtocolError("closed", request=REQUEST), True),
    ],
)
def test_transport_failures_are_retriable_and_know_whether_they_were_sent(
    exc: httpx.HTTPError, sent: bool
) -> None:
    """Timeouts and connection failures are TransportError; connect failures were never sent."""
    error = classify(exc)
    assert isinstance(error, TransportError)
    assert never_sent(exc) is (not sent)
    wrapped = TransportError("x")
    wrapped.__cause__ = exc
    assert never_sent(wrapped) is (not sent)
