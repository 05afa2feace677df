"""Random list and changes-feed pages through the real connectors: only TolkenError, no hang.

Each example serves a few drawn pages and then repeats the last one forever,
the shape of a remote that never stops handing out "more": the listing guard
must end that with an error, not loop.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from fuzz.conftest import FUZZ
from tolken.config import PMSSettings, PowerOfficeSettings
from tolken.connectors import _http
from tolken.connectors._http import RetryPolicy
from tolken.connectors._listing import ListingLimits
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import memory_limiter
from tolken.errors import TolkenError

SECONDS_PER_EXAMPLE = 5.0
TOKEN = {"access_token": "t", "token_type": "Bearer", "expires_in": 1200}

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["2026-01-01T00:00:00Z", "2026-13-40T99:00:00", "1e999", "cus_1", "42"])
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=15,
)
_pms_items = st.fixed_dictionaries(
    {},
    optional={
        "id": _scalars,
        "kind": st.sampled_from(["company", "person", "department"]) | _scalars,
        "name": _scalars,
        "version": _scalars,
        "updated_at": _scalars,
        "address": _json,
        "deleted": _scalars,
    },
)
_pms_pages = (
    st.fixed_dictionaries(
        {},
        optional={
            "items": st.lists(_pms_items | _json, max_size=5) | _json,
            "next_cursor": st.none() | st.text(max_size=8) | _scalars,
        },
    )
    | _json
)
_feed_items = st.fixed_dictionaries(
    {},
    optional={
        "seq": st.integers(-5, 2**70) | _scalars,
        "type": st.sampled_from(["customer", "project"]) | _scalars,
        "id": _scalars,
        "op": st.sampled_from(["upsert", "delete"]) | _scalars,
    },
)
_feed_pages = (
    st.fixed_dictionaries(
        {},
        optional={
            "items": st.lists(_feed_items | _json, max_size=5) | _json,
            "last_seq": _scalars,
            "has_more": _scalars,
        },
    )
    | _json
)
_po_items = st.fixed_dictionaries(
    {},
    optional={
        "Id": st.integers(-5, 2**70) | _scalars,
        "id": _scalars,
        "Name": _scalars,
        "Code": _scalars,
        "LastChangedDateTimeOffset": _scalars,
        "MailAddress": _json,
        "CustomerCreatedDateTimeOffset": _scalars,
        "CustomerSince": _scalars,
    },
)
_po_pages = st.tuples(
    st.lists(_po_items | _json, max_size=5) | _json,
    st.none() | st.text(max_size=60) | _json.map(json.dumps),
)
_bodies = st.one_of(st.binary(max_size=40), st.just(b""))


Served = list[tuple[int, bytes, dict[bytes, bytes]]]


def _serve(pages: Served) -> httpx.Client:
    """A client whose API answers the drawn pages in turn, then the last one forever."""
    served = iter(pages)
    last = pages[-1]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Token"):
            return httpx.Response(200, json=TOKEN)
        status, body, headers = next(served, last)
        return httpx.Response(status, content=body, headers=headers)

    return httpx.Client(transport=httpx.MockTransport(handler))


def _only_tolken_errors(run: Callable[[], object]) -> None:
    started = time.monotonic()
    with contextlib.suppress(TolkenError):
        run()
    assert time.monotonic() - started < SECONDS_PER_EXAMPLE


def _json_pages(drawn: list[Any], statuses: list[int]) -> Served:
    return [
        (status, json.dumps(page).encode(), {b"Content-Type": b"application/json"})
        for page, status in zip(drawn, statuses, strict=False)
    ]


_statuses = st.lists(st.sampled_from([200, 200, 200, 204, 400, 404, 409, 422, 500]), min_size=5)


def _pms(http: httpx.Client) -> PMSClient:
    settings = PMSSettings.model_validate(
        {"base_url": "http://pms.test/api/v1", "api_key": "pms-key-1", "page_size": 5}
    )
    return PMSClient(settings, http=http, limits=ListingLimits(pages=50, seconds=3.0))


@FUZZ
@given(pages=st.lists(_pms_pages, min_size=1, max_size=4), statuses=_statuses, raw=_bodies)
def test_pms_list_pages_of_any_shape_end_in_records_or_a_tolken_error(
    pages: list[Any], statuses: list[int], raw: bytes
) -> None:
    """Random PMS list pages (and a non-JSON one) give records or a TolkenError, in bounded time."""
    served = [*_json_pages(pages, statuses), (200, raw, {})]
    after = datetime(2026, 1, 1, tzinfo=UTC)
    with _http.testing():
        _only_tolken_errors(lambda: list(_pms(_serve(served[:-1] or served)).list("customers")))
        _only_tolken_errors(lambda: list(_pms(_serve(served)).list_updated_after("projects", None)))
        _only_tolken_errors(
            lambda: list(_pms(_serve(served)).list("customers", changed_after=after))
        )


@FUZZ
@given(page=_feed_pages, status=_statuses, after=st.integers(0, 2**62))
def test_changes_feed_pages_of_any_shape_give_a_page_or_a_tolken_error(
    page: Any, status: list[int], after: int
) -> None:
    """A random changes-feed answer is parsed into a page or refused with a TolkenError."""
    with _http.testing():
        client = _pms(_serve(_json_pages([page], status)))
        _only_tolken_errors(lambda: client.changes(after, limit=100))


def _po(http: httpx.Client, *, read_ahead: bool) -> PowerOfficeClient:
    settings = PowerOfficeSettings.model_validate(
        {
            "base_url": "http://po.test/v2",
            "token_url": "http://po.test/OAuth/Token",
            "application_key": "app-key-1",
            "client_key": "client-key-1",
            "subscription_key": "sub-key-1",
            "page_size": 5,
        }
    )
    return PowerOfficeClient(
        settings,
        http=http,
        rate_limiter=memory_limiter(1e6),
        retry=RetryPolicy(attempts=2),
        read_ahead=read_ahead,
    )


@FUZZ
@given(pages=st.lists(_po_pages, min_size=1, max_size=4), statuses=_statuses, ahead=st.booleans())
def test_poweroffice_list_pages_of_any_shape_end_in_records_or_a_tolken_error(
    pages: list[tuple[Any, str | None]], statuses: list[int], ahead: bool
) -> None:
    """Random PowerOffice list pages and X-Pagination headers give records or a TolkenError."""
    served: Served = []
    for (items, pagination), status in zip(pages, statuses, strict=False):
        headers = {b"Content-Type": b"application/json"}
        if pagination is not None:
            headers[b"X-Pagination"] = pagination.encode("utf-8").replace(b"\n", b" ")
        served.append((status, json.dumps(items).encode(), headers))
    with _http.testing():
        client = _po(_serve(served), read_ahead=ahead)
        _only_tolken_errors(lambda: list(client.list("Customers")))
