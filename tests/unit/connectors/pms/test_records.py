"""The PMS wire format as tolken values: changes-feed items and pages."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tolken.config import PMSSettings
from tolken.connectors import _http
from tolken.connectors.base import FeedItem, FeedPage
from tolken.connectors.pms import PMSClient
from tolken.connectors.pms._records import parse_change, parse_changes_page
from tolken.errors import ServerError

BASE = "http://pms.test/api/v1"


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with _http.testing():
        yield


def test_malformed_feed_items_are_reported() -> None:
    """A feed item without the contract's fields is a clear PMS error."""
    with pytest.raises(ServerError, match="malformed item"):
        parse_change({"seq": 1, "id": "x", "op": "upsert"})
    with pytest.raises(ServerError, match="unknown op"):
        parse_change({"seq": 1, "type": "customer", "id": "x", "op": "merge"})


def test_feed_items_name_the_resource_whatever_the_type_spelling() -> None:
    """``customer`` or ``Customers`` on the wire is the ``customers`` resource."""
    assert parse_change({"seq": 3, "type": "Customers", "id": 7, "op": "delete"}) == FeedItem(
        3, "customers", "7", "delete"
    )


def test_a_feed_page_keeps_what_the_pms_reported() -> None:
    """``last_seq`` and ``has_more`` come through as sent; left out or mistyped, they are None."""
    item = {"seq": 1, "type": "project", "id": "p", "op": "upsert"}
    page = parse_changes_page({"items": [item], "last_seq": 9, "has_more": True})
    assert page == FeedPage((FeedItem(1, "projects", "p", "upsert"),), last_seq=9, has_more=True)
    assert parse_changes_page({"items": [], "last_seq": "9", "has_more": "no"}) == FeedPage(())
    with pytest.raises(ServerError, match="no items array"):
        parse_changes_page({"last_seq": 1})


def test_changes_reads_one_raw_page_of_the_feed() -> None:
    """``changes(after, limit=N)`` asks the contract's /changes for one page and parses it."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        items = [{"seq": 5, "type": "customer", "id": "c", "op": "upsert"}]
        return httpx.Response(200, json={"items": items, "last_seq": 5, "has_more": False})

    settings = PMSSettings(base_url=BASE, api_key="pms-api-key")
    client = PMSClient(settings, http=httpx.Client(transport=httpx.MockTransport(handler)))
    page = client.changes(4, limit=50)
    assert page.items == (FeedItem(5, "customers", "c", "upsert"),)
    assert page.has_more is False
    assert [(r.url.path, dict(r.url.params)) for r in seen] == [
        ("/api/v1/changes", {"after": "4", "limit": "50", "include": "record"})
    ]


def test_a_feed_item_keeps_the_record_sent_with_it() -> None:
    """An upsert that carries its record (include=record) is parsed with it; a body of
    another record, or one sent with a delete, is not taken for the item's record."""
    body = {"id": "c", "name": "Acme", "version": 3, "updated_at": "2026-01-01T00:00:00Z"}
    item = parse_change({"seq": 1, "type": "customer", "id": "c", "op": "upsert", "record": body})
    assert item.record is not None
    assert (item.record.id, item.record.data["name"], item.record.version) == ("c", "Acme", 3)
    other = {**body, "id": "d"}
    wrong = parse_change({"seq": 2, "type": "customer", "id": "c", "op": "upsert", "record": other})
    assert wrong.record is None
    gone = parse_change({"seq": 3, "type": "customer", "id": "c", "op": "delete", "record": body})
    assert gone.record is None
