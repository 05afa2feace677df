"""PMS change capture: the changes feed (with tombstones) and updated_after polling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tolken.config import PMSSettings
from tolken.connectors import _http
from tolken.connectors.pms import Change, PMSClient
from tolken.connectors.pms._records import collapse_changes, parse_change
from tolken.errors import ServerError

BASE = "http://pms.test/api/v1"


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with _http.testing():
        yield


class FakeFeedPMS:
    """Just enough of a PMS: records by id, a changes feed, updated_after listing."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.feed: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []

    def put(self, rid: str, updated: str, kind: str = "customer") -> None:
        self.records[rid] = {"id": rid, "name": rid, "version": 1, "updated_at": updated}
        self.feed.append({"seq": len(self.feed) + 1, "type": kind, "id": rid, "op": "upsert"})

    def remove(self, rid: str, kind: str = "customer") -> None:
        self.records.pop(rid, None)
        self.feed.append({"seq": len(self.feed) + 1, "type": kind, "id": rid, "op": "delete"})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1/")
        params = request.url.params
        if path == "changes":
            after, limit = int(params["after"]), int(params["limit"])
            items = [i for i in self.feed if i["seq"] > after][:limit]
            return httpx.Response(200, json={"items": items, "last_seq": len(self.feed)})
        if path == "customers":
            after_ts = params.get("updated_after")
            items = sorted(self.records.values(), key=lambda r: (r["updated_at"], r["id"]))
            if after_ts is not None:
                items = [r for r in items if r["updated_at"] > after_ts]
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        rid = path.removeprefix("customers/")
        if rid in self.records:
            return httpx.Response(200, json=self.records[rid])
        return httpx.Response(404, json={"errors": [{"field": None, "message": "not found"}]})


def _client(pms: FakeFeedPMS, mode: str) -> PMSClient:
    settings = PMSSettings.model_validate(
        {"base_url": BASE, "api_key": "pms-api-key", "change_capture": mode}
    )
    return PMSClient(settings, http=httpx.Client(transport=httpx.MockTransport(pms)))


def test_feed_capture_starts_with_a_full_listing_then_reads_the_feed() -> None:
    """The first call lists everything; later calls return only what the feed says changed."""
    pms = FakeFeedPMS()
    pms.put("c1", "2026-01-01T00:00:01Z")
    client = _client(pms, "changes")
    first = client.changes_since("customers", None)
    assert [r.id for r in first.records] == ["c1"]
    assert first.cursor == "seq:1"
    pms.put("c2", "2026-01-01T00:00:02Z")
    pms.put("c2", "2026-01-01T00:00:03Z")
    pms.put("p1", "2026-01-01T00:00:03Z", kind="project")
    second = client.changes_since("customers", first.cursor)
    assert [(r.id, r.deleted) for r in second.records] == [("c2", False)]
    assert second.cursor == "seq:4"
    assert client.changes_since("customers", second.cursor).records == ()


def test_feed_deletes_become_tombstones() -> None:
    """A delete in the feed, or a record gone before we read it, comes back as deleted=True."""
    pms = FakeFeedPMS()
    client = _client(pms, "changes")
    cursor = client.changes_since("customers", None).cursor
    pms.put("c1", "2026-01-01T00:00:01Z")
    pms.put("c2", "2026-01-01T00:00:02Z")
    pms.remove("c1")
    del pms.records["c2"]  # gone without a feed entry yet: the GET answers 404
    batch = client.changes_since("customers", cursor)
    assert {(r.id, r.deleted) for r in batch.records} == {("c1", True), ("c2", True)}


def test_feed_is_read_page_by_page_from_the_last_item() -> None:
    """Long feeds are paged with after = the last seq received, skipping nothing."""
    pms = FakeFeedPMS()
    for n in range(5):
        pms.put(f"c{n}", f"2026-01-01T00:00:0{n}Z")
    client = _client(pms, "changes")
    pages = list(client.iter_changes(0, limit=2))
    assert [[c.seq for c in p.items] for p in pages] == [[1, 2], [3, 4], [5]]


def test_polling_capture_uses_exclusive_updated_after() -> None:
    """Polling mode passes back the newest updated_at it saw, spelt as the PMS spelt it."""
    pms = FakeFeedPMS()
    pms.put("c1", "2026-01-01T00:00:01.000001Z")
    client = _client(pms, "polling")
    first = client.changes_since("customers", None)
    assert first.cursor == "updated_after:2026-01-01T00:00:01.000001Z"
    pms.put("c2", "2026-01-01T00:00:02.000001Z")
    second = client.changes_since("customers", first.cursor)
    assert [r.id for r in second.records] == ["c2"]
    assert pms.requests[-1].url.params["updated_after"] == "2026-01-01T00:00:01.000001Z"
    assert not any(r.url.path.endswith("/changes") for r in pms.requests)
    third = client.changes_since("customers", second.cursor)
    assert third.records == ()
    assert third.cursor == second.cursor


def test_collapse_keeps_the_last_operation_per_record() -> None:
    """Several feed items for one record reduce to the latest, ordered by that latest seq."""
    changes = [
        Change(1, "customers", "a", "upsert"),
        Change(2, "customers", "b", "upsert"),
        Change(3, "customers", "a", "delete"),
        Change(4, "projects", "a", "upsert"),
    ]
    collapsed = collapse_changes(changes, "customers")
    assert list(collapsed) == ["b", "a"]
    assert collapsed["a"].op == "delete"


def test_malformed_feed_items_are_reported() -> None:
    """A feed item without the contract's fields is a clear PMS error."""
    with pytest.raises(ServerError, match="malformed item"):
        parse_change({"seq": 1, "id": "x", "op": "upsert"})
    with pytest.raises(ServerError, match="unknown op"):
        parse_change({"seq": 1, "type": "customer", "id": "x", "op": "merge"})
