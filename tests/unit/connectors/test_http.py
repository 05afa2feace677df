"""Shared HTTP helpers: Retry-After parsing, the retry policy and the cookie-less client."""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from tolken.connectors import _http
from tolken.connectors._http import RetryPolicy, TokenClient, UnsentOnlyPolicy, parse_retry_after
from tolken.errors import NotFound, RateLimited, ServerError, Stopped, ValidationFailed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_header_forms(value: str | None, expected: float | None) -> None:
    """Retry-After is read as seconds or as an HTTP date; junk gives no hint."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_retry_after_wait_has_a_floor_and_a_cap() -> None:
    """A 0-second hint still waits the floor; an absurd hint is capped."""
    policy = RetryPolicy(retry_after_floor=1.0, retry_after_cap=30.0)
    assert policy.retry_after_wait(0) == 1.0
    assert policy.retry_after_wait(None) == 1.0
    assert policy.retry_after_wait(5) == 5.0
    assert policy.retry_after_wait(3600) == 30.0


def test_backoff_hook_retries_only_retriable_errors() -> None:
    """429 (or a 5xx with a hint) waits its Retry-After, 5xx backs off, 4xx is not retried."""
    policy = RetryPolicy(retry_after_jitter=0.0)
    assert policy.backoff(RateLimited("x", retry_after=4.0)) == 4.0
    assert policy.backoff(ServerError("x")) is True
    assert policy.backoff(ServerError("x", retry_after=3.0)) == 3.0
    assert policy.backoff(ValidationFailed("x")) is False
    assert policy.backoff(NotFound("x")) is False


def test_unsent_only_policy_retries_what_the_server_cannot_have_acted_on() -> None:
    policy = UnsentOnlyPolicy(retry_after_jitter=0)
    never_connected = ServerError("no connection", system="pms")
    never_connected.__cause__ = httpx.ConnectError("refused")
    assert policy.backoff(RateLimited("slow down", system="pms", retry_after=2)) == 2
    assert policy.backoff(never_connected) is True
    # A 5xx or a timeout may come after the server acted: a create is not sent again.
    assert policy.backoff(ServerError("boom", system="pms", status=500)) is False
    timed_out = ServerError("timeout", system="pms")
    timed_out.__cause__ = httpx.ReadTimeout("read")
    assert policy.backoff(timed_out) is False


def test_policy_retries_a_bounded_number_of_times_without_waiting_in_tests() -> None:
    """With waits removed, a failing call is still tried exactly `attempts` times."""
    calls = 0

    def always_503() -> None:
        nonlocal calls
        calls += 1
        raise ServerError("down", retry_after=60)

    with _http.testing(), pytest.raises(ServerError):
        RetryPolicy(attempts=4).call(always_503)
    assert calls == 4


def test_policy_retry_if_stops_retries_for_one_call() -> None:
    """A narrowing predicate (used for ambiguous POSTs) raises after the first try."""
    calls = 0

    def fail() -> None:
        nonlocal calls
        calls += 1
        raise ServerError("maybe done")

    with _http.testing(), pytest.raises(ServerError):
        RetryPolicy(attempts=4).call(fail, retry_if=lambda _: False)
    assert calls == 1


def test_policy_returns_the_first_success() -> None:
    """A call that fails twice then succeeds returns its value after three tries."""
    results: list[Exception | str] = [
        RateLimited("slow down", retry_after=0),
        ServerError("x"),
        "ok",
    ]
    items = iter(results)

    def flaky() -> str:
        item = next(items)
        if isinstance(item, Exception):
            raise item
        return item

    with _http.testing():
        assert RetryPolicy(attempts=5).call(flaky) == "ok"


def test_a_stop_ends_a_long_retry_after_wait_within_a_second() -> None:
    """A stop request during a 30 s Retry-After wait ends it at once, without another try."""
    calls = 0

    def refused() -> str:
        nonlocal calls
        calls += 1
        raise RateLimited("slow down", retry_after=30.0)

    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        RetryPolicy(retry_after_jitter=0).call(refused, stop=stop)
    assert time.monotonic() - started < 1.0
    assert calls == 1


def test_a_stop_ends_the_exponential_backoff_too() -> None:
    """A stop during the backoff after a 5xx ends the wait at once."""
    stop = threading.Event()

    def failing() -> str:
        raise ServerError("busy")

    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        RetryPolicy(wait_initial=20.0, wait_max=20.0).call(failing, stop=stop)
    assert time.monotonic() - started < 1.0


def _echo(request: httpx.Request, body: str, kind: str = "text/plain") -> httpx.Response:
    return httpx.Response(401, text=body, headers={"content-type": kind}, request=request)


def test_error_bodies_lose_the_credentials_their_request_carried() -> None:
    """A body echoing the bearer token, Basic keys or subscription key reads [redacted]."""
    request = httpx.Request(
        "POST",
        "https://remote.example/OAuth/Token",
        headers={
            "Authorization": "Basic "
            + base64.b64encode(b"echo-app-key-3141:echo-client-key-2718").decode(),
            "Ocp-Apim-Subscription-Key": "echo-subscription-1618",
        },
    )
    text = _echo(request, "keys echo-app-key-3141 / echo-client-key-2718 / echo-subscription-1618")
    assert _http.plain_text(text, 500) == "keys [redacted] / [redacted] / [redacted]"
    bearer = httpx.Request(
        "GET", "https://remote.example/x", headers={"Authorization": "Bearer tok-0123456789"}
    )
    body = _echo(
        bearer,
        '{"errors": [{"message": "bad credentials: Bearer tok-0123456789"}]}',
        "application/json",
    )
    assert _http.json_or_none(body) == {
        "errors": [{"message": "bad credentials: Bearer [redacted]"}]
    }


def test_a_secret_cut_by_the_text_limit_is_still_redacted() -> None:
    """A key straddling the length limit is redacted before the cut, so no half of it shows."""
    request = httpx.Request(
        "GET", "https://remote.example/x", headers={"X-Api-Key": "half-shown-key-42"}
    )
    assert _http.plain_text(_echo(request, "key: half-shown-key-42"), 12) == "key: [redact"


def test_a_token_client_sends_no_cookie_a_response_set() -> None:
    """Each answer sets a cookie; no later request carries one, and the client holds none."""
    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"Set-Cookie": "session=abc; Path=/"})

    with TokenClient(transport=httpx.MockTransport(answer)) as client:
        for _ in range(3):
            client.get("http://pms.test/api/v1/customers")
        assert not client.cookies
    assert sent == [None, None, None]


def test_a_plain_client_would_send_the_cookie_back() -> None:
    """The check above can fail: httpx's own client returns the cookie it was set."""
    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"Set-Cookie": "session=abc; Path=/"})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        client.get("http://pms.test/api/v1/customers")
        client.get("http://pms.test/api/v1/customers")
    assert sent == [None, "session=abc"]
