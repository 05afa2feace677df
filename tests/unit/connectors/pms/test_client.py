"""The PMS connector's HTTP behaviour, against scripted responses (httpx.MockTransport)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tolken.config import PMSSettings
from tolken.connectors import _http
from tolken.connectors.base import Connector
from tolken.connectors.pms import PMSClient
from tolken.errors import (
    AuthError,
    Fatal,
    InUse,
    NotFound,
    RateLimited,
    ServerError,
    StaleVersion,
    Stopped,
    TransportError,
    Unreachable,
    ValidationFailed,
)

BASE = "http://pms.test/api/v1"
KEY = "pms-secret-key"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with _http.testing():
        yield


def _client(handler: Handler, **settings: object) -> tuple[PMSClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = httpx.Client(transport=httpx.MockTransport(record))
    cfg = PMSSettings.model_validate({"base_url": BASE, "api_key": KEY, **settings})
    return PMSClient(cfg, http=http), seen


def _customer(cid: str, version: int = 1, updated: str = "2026-01-01T00:00:00.000001Z") -> dict:
    return {"id": cid, "kind": "company", "name": cid, "version": version, "updated_at": updated}


def test_client_satisfies_the_connector_protocol() -> None:
    """PMSClient is a Connector the engine can use like any other."""
    client, _ = _client(lambda _: httpx.Response(200, json={}))
    assert isinstance(client, Connector)
    assert client.resources() == ("customers", "projects")


def test_list_follows_cursors_and_sends_the_key() -> None:
    """Listing streams every page until next_cursor is null, with Bearer auth and the page size."""
    pages = {
        None: {"items": [_customer("c1"), _customer("c2")], "next_cursor": "p2"},
        "p2": {"items": [_customer("c3", version=4)], "next_cursor": None},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    client, seen = _client(handler, page_size=2)
    after = datetime(2026, 1, 1, tzinfo=UTC)
    records = list(client.list("customers", changed_after=after))
    assert [r.id for r in records] == ["c1", "c2", "c3"]
    assert records[2].version == 4
    assert records[0].changed_at == datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in seen)
    assert seen[0].url.params["limit"] == "2"
    assert seen[0].url.params["updated_after"] == "2026-01-01T00:00:00+00:00"
    assert seen[1].url.params["cursor"] == "p2"


def test_a_repeated_cursor_stops_paging() -> None:
    """A PMS that hands out the same cursor again gets an error, not an endless loop."""
    pages = iter(range(1, 10))

    def answer(_request: httpx.Request) -> httpx.Response:
        fresh = _customer(f"c{next(pages)}")  # new items, but the cursor never moves
        return httpx.Response(200, json={"items": [fresh], "next_cursor": "same"})

    client, seen = _client(answer)
    with pytest.raises(Fatal, match="GET /api/v1/customers handed out the cursor 'same' again"):
        list(client.list("customers"))
    assert len(seen) == 2


def test_create_retries_with_the_same_idempotency_key() -> None:
    """A create that meets a 503 is retried with the very same Idempotency-Key and body."""
    answers = iter([httpx.Response(503, text="busy"), httpx.Response(201, json=_customer("c9"))])
    client, seen = _client(lambda _: next(answers))
    record = client.create("customers", {"kind": "company", "name": "A"}, idempotency_key="k-1")
    assert record.id == "c9"
    assert [r.headers["Idempotency-Key"] for r in seen] == ["k-1", "k-1"]
    assert seen[0].content == seen[1].content
    assert json.loads(seen[0].content)["external_ref"] == "k-1"


def test_create_keeps_a_given_external_ref() -> None:
    """The key only fills external_ref when the engine did not set one."""
    client, seen = _client(lambda _: httpx.Response(201, json=_customer("c9")))
    client.create("customers", {"name": "A", "external_ref": "po:7"}, idempotency_key="k-2")
    assert json.loads(seen[0].content)["external_ref"] == "po:7"


def test_422_field_errors_reach_the_user_verbatim() -> None:
    """A 422 becomes ValidationFailed carrying the PMS's own field errors, not retried."""
    body = {"errors": [{"field": "email", "message": "is not an e-mail address"}]}
    client, seen = _client(lambda _: httpx.Response(422, json=body))
    with pytest.raises(ValidationFailed) as info:
        client.create("customers", {"email": "x"}, idempotency_key="k")
    assert [(e.field, e.message) for e in info.value.field_errors] == [
        ("email", "is not an e-mail address")
    ]
    assert str(info.value) == "pms: email: is not an e-mail address"
    assert len(seen) == 1


def test_update_is_a_conditional_merge_patch() -> None:
    """update sends flat field paths as a nested JSON Merge Patch with If-Match and nulls, and
    returns the new version."""
    client, seen = _client(lambda _: httpx.Response(200, json=_customer("c1", version=3)))
    record = client.update(
        "customers", "c1", {"phone": None, "address.city": "Oslo", "address.line2": None}, version=2
    )
    assert record.version == 3
    request = seen[0]
    assert request.method == "PATCH"
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    assert request.headers["If-Match"] == '"2"'
    assert request.content == b'{"phone": null, "address": {"city": "Oslo", "line2": null}}'


def test_create_nests_flat_field_paths_into_the_record_body() -> None:
    """create posts flat field paths as the nested record the contract defines, key last."""
    client, seen = _client(lambda _: httpx.Response(201, json=_customer("c9")))
    client.create(
        "customers",
        {"kind": "company", "address.line1": "Gate 1", "name": "A", "address.city": "Oslo"},
        idempotency_key="k-3",
    )
    assert json.loads(seen[0].content) == {
        "kind": "company",
        "address": {"line1": "Gate 1", "city": "Oslo"},
        "name": "A",
        "external_ref": "k-3",
    }
    assert list(json.loads(seen[0].content)) == ["kind", "address", "name", "external_ref"]


def test_412_is_stale_version() -> None:
    """A 412 on If-Match raises StaleVersion with the current version when the PMS tells it."""
    client, _ = _client(
        lambda _: httpx.Response(
            412,
            json={"errors": [{"field": "If-Match", "message": "stale"}]},
            headers={"ETag": '"5"'},
        )
    )
    with pytest.raises(StaleVersion) as info:
        client.update("customers", "c1", {"name": "B"}, version=2)
    assert info.value.current_version == 5


def test_429_honours_retry_after_then_succeeds() -> None:
    """A 429 is retried (bounded) and the request then goes through."""
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "2"}, json={"errors": []}),
            httpx.Response(200, json=_customer("c1")),
        ]
    )
    client, seen = _client(lambda _: next(answers))
    assert client.get("customers", "c1").id == "c1"
    assert len(seen) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_an_overloaded_pms_gets_fewer_creates_at_once(status: int) -> None:
    """After a 429 or 503 the engine may have fewer creates in flight; good answers win it back."""
    answers = iter([httpx.Response(status), *[httpx.Response(201, json=_customer("c1"))] * 5])
    client, _ = _client(lambda _: next(answers), max_concurrency=4)
    assert client.write_concurrency == 4
    client.create("customers", {"name": "c1"}, idempotency_key="k1")
    assert client.write_concurrency == 2  # halved by the overload; the retry went through
    client.create("customers", {"name": "c1"}, idempotency_key="k2")
    assert client.write_concurrency == 3  # two good answers in a row at width 2
    for n in range(3, 6):
        client.create("customers", {"name": "c1"}, idempotency_key=f"k{n}")
    assert client.write_concurrency == 4


def test_a_record_error_does_not_lower_the_concurrency() -> None:
    """Only an overload answer makes the engine send fewer creates at once."""
    client, _ = _client(lambda _: httpx.Response(422, json={"errors": []}))
    with pytest.raises(ValidationFailed):
        client.create("customers", {"name": "c1"}, idempotency_key="k1")
    assert client.write_concurrency == 4


def test_persistent_429_gives_up_with_retry_after() -> None:
    """A PMS that keeps answering 429 yields RateLimited after a bounded number of tries."""
    client, seen = _client(lambda _: httpx.Response(429, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimited) as info:
        client.get("customers", "c1")
    assert info.value.retry_after == 7
    assert len(seen) == 5


def test_bad_key_is_fatal_and_not_retried() -> None:
    """401 raises AuthError at once, and the message never contains the key."""
    client, seen = _client(lambda _: httpx.Response(401, json={"errors": [{"message": "bad key"}]}))
    with pytest.raises(AuthError) as info:
        list(client.list("projects"))
    assert len(seen) == 1
    assert KEY not in str(info.value)
    assert "bad key" in str(info.value)


def test_webhook_registration_is_not_blindly_retried() -> None:
    """A POST without an Idempotency-Key is not repeated after a 5xx (it may have worked)."""
    client, seen = _client(lambda _: httpx.Response(502, text="bad gateway"))
    with pytest.raises(ServerError, match="bad gateway"):
        client.register_webhook("http://127.0.0.1:1/hook", "s")
    assert len(seen) == 1


def test_webhook_registration_is_retried_after_429() -> None:
    """A 429 means the PMS did nothing, so registering is retried."""
    answers = iter([httpx.Response(429), httpx.Response(201, json={"id": "wh1"})])
    client, seen = _client(lambda _: next(answers))
    assert client.register_webhook("http://127.0.0.1:1/hook", "s") == {"id": "wh1"}
    assert json.loads(seen[1].content) == {"url": "http://127.0.0.1:1/hook", "secret": "s"}


def test_timeouts_are_retried_then_reported() -> None:
    """Timeouts are retried with the bound and end as a TransportError."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    client, seen = _client(handler)
    with pytest.raises(TransportError, match="timed out"):
        client.get("customers", "c1")
    assert len(seen) == 5


def test_refused_connection_is_unreachable() -> None:
    """A PMS that cannot be connected to at all, after retries, is Unreachable (fatal)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = _client(handler)
    with pytest.raises(Unreachable, match="cannot reach the PMS"):
        client.get("customers", "c1")


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, NotFound), (409, InUse), (400, ValidationFailed), (413, ValidationFailed)],
)
def test_record_errors_are_classified(status: int, error: type[Exception]) -> None:
    """Record-level statuses map to the taxonomy and keep the PMS's text."""
    client, _ = _client(lambda _: httpx.Response(status, text="the PMS says no"))
    with pytest.raises(error, match="the PMS says no"):
        client.delete("customers", "c1")


def test_unknown_resource_is_a_config_error() -> None:
    """Asking for a resource the contract does not have fails before any request."""
    client, seen = _client(lambda _: httpx.Response(200))
    with pytest.raises(Exception, match="no resource 'orders'"):
        client.get("orders", "1")
    assert seen == []


def test_find_by_idempotency_key_uses_external_ref() -> None:
    """Recovery finds the record by external_ref, checking items even if the filter is ignored."""
    items = [_customer("c1") | {"external_ref": "other"}, _customer("c2") | {"external_ref": "k"}]
    client, seen = _client(
        lambda _: httpx.Response(200, json={"items": items, "next_cursor": None})
    )
    found = client.find_by_idempotency_key("customers", "k")
    assert found is not None
    assert found.id == "c2"
    assert seen[0].url.params["external_ref"] == "k"
    assert all(r.method == "GET" for r in seen)
    assert client.find_by_idempotency_key("customers", "missing") is None


def test_find_by_idempotency_key_falls_back_when_filter_refused() -> None:
    """A PMS that rejects the external_ref filter is scanned without it."""

    def handler(request: httpx.Request) -> httpx.Response:
        if "external_ref" in request.url.params:
            return httpx.Response(400, json={"errors": [{"field": "external_ref", "message": "?"}]})
        items = [_customer("c2") | {"external_ref": "k"}]
        return httpx.Response(200, json={"items": items, "next_cursor": None})

    client, _ = _client(handler)
    found = client.find_by_idempotency_key("customers", "k")
    assert found is not None
    assert found.id == "c2"


def test_ensure_webhook_just_registers_when_the_pms_cannot_list() -> None:
    """A PMS without GET /webhooks (404) still gets the registration, once."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"errors": [{"field": None, "message": "no route"}]})
        return httpx.Response(201, json={"id": "wh9", "url": "u"})

    client, seen = _client(handler)
    assert client.ensure_webhook("http://127.0.0.1:1/h", "s") == {"id": "wh9", "url": "u"}
    assert [r.method for r in seen] == ["GET", "POST"]


def test_a_fresh_cursor_over_the_same_items_ends_with_a_clear_error() -> None:
    """A new next_cursor on every page with the same items: Fatal naming the PMS request."""
    client, seen = _client(
        lambda _r: httpx.Response(
            200, json={"items": [_customer("c1")], "next_cursor": f"n{len(seen)}"}
        )
    )
    with pytest.raises(
        Fatal, match="the PMS listing GET /api/v1/customers sent page 2 with the same"
    ):
        list(client.list("customers"))
    assert len(seen) == 2


def test_a_stop_ends_a_pms_listing_between_pages() -> None:
    """A stop request while the PMS is paged ends the listing before the next page."""
    stop = threading.Event()
    pages = 0

    def answer(_request: httpx.Request) -> httpx.Response:
        nonlocal pages
        pages += 1
        if pages == 2:
            stop.set()
        items = [_customer(f"c{pages}", updated=f"2026-01-01T00:00:{pages:02d}Z")]
        return httpx.Response(200, json={"items": items, "next_cursor": f"p{pages}"})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    cfg = PMSSettings.model_validate({"base_url": BASE, "api_key": KEY})
    with pytest.raises(Stopped):
        list(PMSClient(cfg, http=http, stop=stop).list("customers"))
    assert pages == 2


def test_a_feed_page_with_more_but_nothing_newer_is_a_clear_error() -> None:
    """has_more with no item past `after`: Fatal naming GET /api/v1/changes, not a loop."""
    client, _ = _client(
        lambda _r: httpx.Response(200, json={"items": [], "last_seq": 5, "has_more": True})
    )
    with pytest.raises(Fatal, match="GET /api/v1/changes after seq 5 with has_more"):
        client.changes(5, limit=10)


def test_a_client_handed_in_keeps_its_own_cookie_policy() -> None:
    """The connector leaves a caller's client as it is: a cookie the PMS set goes back with
    the next request (only the client the connector makes itself keeps none)."""

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {} if "cookie" in request.headers else {"Set-Cookie": "session=abc; Path=/"}
        return httpx.Response(200, json=_customer("c1"), headers=headers)

    client, seen = _client(answer)
    client.get("customers", "c1")
    client.get("customers", "c1")
    assert [r.headers.get("cookie") for r in seen] == [None, "session=abc"]
