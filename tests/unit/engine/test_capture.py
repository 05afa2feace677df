"""Change capture per side.

PowerOffice: full first read, overlap dedupe, waits hold the cursor. PMS: the
changes feed (with tombstones) or the updated-after listing, and the stored
cursors of earlier versions still read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tolken.config import PMSSettings
from tolken.connectors import _http
from tolken.connectors.base import (
    ChangeFeed,
    FeedItem,
    FeedPage,
    RemoteRecord,
    UpdatedAfterListing,
    WebhookSource,
)
from tolken.connectors.pms import PMSClient
from tolken.engine.capture import (
    UNCHANGED_PAGE,
    PMSCapture,
    PowerOfficeCapture,
    feed_pages,
    load_po_cursor,
    read_poweroffice,
    save_po_cursor,
)
from tolken.engine.cursor import RESOLUTION, CursorState, Outcome, advance, content_hash
from tolken.engine.staging import Staging
from tolken.errors import Fatal, Stopped
from tolken.store import TenantStore, open_store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(minutes=2)


class FakePowerOffice:
    """An in-memory resource that filters by ``changed_after`` like PowerOffice."""

    system = "poweroffice"

    def __init__(self) -> None:
        self.records: dict[str, RemoteRecord] = {}
        self.reads: list[datetime | None] = []

    def put(self, record_id: str, name: str, at: datetime) -> None:
        data = {"Id": int(record_id), "Name": name}
        self.records[record_id] = RemoteRecord("Customers", record_id, data, changed_at=at)

    def list(
        self, _resource: str, *, changed_after: datetime | None = None
    ) -> Iterator[RemoteRecord]:
        self.reads.append(changed_after)
        for record in sorted(self.records.values(), key=lambda r: r.changed_at or T0):
            if changed_after is None or (record.changed_at and record.changed_at > changed_after):
                yield record


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TenantStore]:
    with open_store(f"sqlite:///{tmp_path / 'tolken.db'}") as opened:
        yield opened.for_tenant("t")


def _capture(
    po: FakePowerOffice,
    store: TenantStore,
    staging: Staging,
    *,
    full: bool,
    unchanged: Callable[[Sequence[tuple[str, str]]], Collection[str]] | None = None,
) -> PowerOfficeCapture:
    """``read_poweroffice`` of the customers into ``staging``, the test's overlap."""
    return read_poweroffice(
        po,  # type: ignore[arg-type]
        store,
        "Customers",
        overlap=OVERLAP,
        full=full,
        staging=staging,
        unchanged=unchanged,
    )


def _read(
    po: FakePowerOffice,
    store: TenantStore,
    full: bool = False,
    *,
    saved_at: datetime | None = None,
    held: frozenset[str] = frozenset(),
) -> list[str]:
    """One PowerOffice read; with ``saved_at``, the cursor saved as a cycle started then."""
    with Staging() as staging:
        capture = _capture(po, store, staging, full=full)
        if saved_at is not None:
            save_po_cursor(store, capture, held, run_started_at=saved_at, overlap=OVERLAP)
        return [r.id for r in capture.records]


def _cycle(
    po: FakePowerOffice, store: TenantStore, now: datetime, held: frozenset[str] = frozenset()
) -> list[str]:
    return _read(po, store, saved_at=now, held=held)


def test_the_first_read_is_a_full_listing_and_later_reads_are_incremental(
    store: TenantStore,
) -> None:
    """No cursor: everything; then only what changed, from the cursor minus the overlap."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    po.put("2", "B", T0 + timedelta(minutes=10))
    assert _cycle(po, store, T0 + timedelta(hours=1)) == ["1", "2"]
    assert po.reads == [None]
    po.put("3", "C", T0 + timedelta(minutes=30))
    assert _cycle(po, store, T0 + timedelta(hours=2)) == ["3"]
    assert po.reads[-1] == T0 + timedelta(minutes=10) - OVERLAP


def test_records_re_read_in_the_overlap_are_skipped_unless_they_changed(store: TenantStore) -> None:
    """The overlap re-reads a record; the same content is skipped, new content is not."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    _cycle(po, store, T0 + timedelta(hours=1))
    assert _cycle(po, store, T0 + timedelta(hours=1)) == []
    po.put("1", "A2", T0 + timedelta(seconds=30))  # a late write inside the overlap window
    assert _cycle(po, store, T0 + timedelta(hours=1)) == ["1"]


def test_a_waiting_record_holds_the_cursor_so_it_is_read_again(store: TenantStore) -> None:
    """A project that waits for its customer's link is read again by the next cycle."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    po.put("2", "waits", T0 + timedelta(minutes=5))
    po.put("3", "C", T0 + timedelta(minutes=10))
    _cycle(po, store, T0 + timedelta(hours=1), held=frozenset({"2"}))
    position = load_po_cursor(store, "Customers").position
    assert position is not None
    assert position < T0 + timedelta(minutes=5)
    assert _cycle(po, store, T0 + timedelta(hours=1)) == ["2"]


def test_the_cursor_never_passes_the_run_start(store: TenantStore) -> None:
    """A record stamped after the run started (clock skew) is read again next time."""
    po = FakePowerOffice()
    po.put("1", "A", T0 + timedelta(minutes=5))
    _cycle(po, store, T0)
    assert load_po_cursor(store, "Customers").position == T0


def test_a_reconcile_reads_everything_again(store: TenantStore) -> None:
    """A full read ignores the cursor and the dedupe set."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    _cycle(po, store, T0 + timedelta(hours=1))
    assert _read(po, store, full=True) == ["1"]


def test_records_the_caller_holds_unchanged_are_set_aside_without_their_data(
    store: TenantStore,
) -> None:
    """An unchanged record is not handed on, yet still counts as listed and moves the cursor."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    po.put("2", "B", T0 + timedelta(minutes=10))
    with Staging() as staging:
        capture = _capture(
            po,
            store,
            staging,
            full=True,
            unchanged=lambda page: {record_id for record_id, _digest in page if record_id == "2"},
        )
        assert [r.id for r in capture.records] == ["1"]
        assert capture.unchanged == 1
        assert sorted(capture.listed_ids()) == ["1", "2"]
        assert "2" in capture.listed_ids()
        assert "3" not in capture.listed_ids()
        now = T0 + timedelta(hours=1)
        save_po_cursor(store, capture, (), run_started_at=now, overlap=OVERLAP)
    assert load_po_cursor(store, "Customers").position == T0 + timedelta(minutes=10)


def test_unchanged_records_are_asked_about_a_page_at_a_time(store: TenantStore) -> None:
    """A long listing asks which records are unchanged per page, so no listing is held whole."""
    po = FakePowerOffice()
    total = UNCHANGED_PAGE * 2 + 5
    for i in range(total):
        po.put(str(i), f"N{i}", T0 + timedelta(seconds=i))
    pages: list[int] = []

    def unchanged(page: Sequence[tuple[str, str]]) -> set[str]:
        pages.append(len(page))
        return {record_id for record_id, _ in page if int(record_id) % 2 == 0}

    with Staging() as staging:
        capture = _capture(po, store, staging, full=True, unchanged=unchanged)
        assert pages == [UNCHANGED_PAGE, UNCHANGED_PAGE, 5]
        assert sorted(int(r.id) for r in capture.records) == list(range(1, total, 2))
        assert capture.unchanged == UNCHANGED_PAGE + 3
        assert all(r.data for r in capture.records)
        assert len(capture.listed_ids()) == total


def test_the_cursor_after_a_long_listing_is_the_cursor_of_the_whole_listing(
    store: TenantStore,
) -> None:
    """Folded a page at a time from the staging, the saved cursor is :func:`advance` over every
    listed record at once: held ones keep it back, the boundary set is the overlap's records."""
    po = FakePowerOffice()
    total = UNCHANGED_PAGE * 2 + 5
    for i in range(total):
        po.put(str(i), f"N{i}", T0 + timedelta(seconds=i))
    now = T0 + timedelta(hours=1)
    held = {"1500", "1999", "nowhere"}
    with Staging() as staging:
        capture = _capture(
            po,
            store,
            staging,
            full=True,
            unchanged=lambda page: {record_id for record_id, _ in page if record_id != "7"},
        )
        save_po_cursor(store, capture, held, run_started_at=now, overlap=OVERLAP)
    whole = advance(
        CursorState(),
        [
            Outcome(r.id, content_hash(r.data), r.changed_at, r.id not in held)
            for r in po.records.values()
        ],
        run_started_at=now,
        overlap=OVERLAP,
    )
    saved = load_po_cursor(store, "Customers")
    assert saved == whole
    assert saved.position == T0 + timedelta(seconds=1500) - RESOLUTION
    assert {s.id for s in saved.seen} == {str(i) for i in range(1380, 1500)} | {
        str(i) for i in range(1501, total) if i != 1999
    }


# -- PMS ------------------------------------------------------------------------

PMS_BASE = "http://pms.test/api/v1"


@pytest.fixture
def _no_waits() -> Iterator[None]:
    with _http.testing():
        yield


class FakeFeedPMS:
    """Just enough of a PMS: records by id, a changes feed, updated_after listing.

    ``has_more`` None leaves the field out of feed pages, as some PMSs do.
    ``bodies``: what it does with ``include=record``: ``ignore`` it (bare
    items), ``send`` each upsert's record along, or ``refuse`` it (422).
    """

    def __init__(self, has_more: bool | None = None, bodies: str = "ignore") -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.feed: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.has_more = has_more
        self.bodies = bodies

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
            include = params.get("include") == "record"
            if include and self.bodies == "refuse":
                return httpx.Response(422, json={"errors": [{"field": "include", "message": "?"}]})
            after, limit = int(params["after"]), int(params["limit"])
            later = [i for i in self.feed if i["seq"] > after]
            if include and self.bodies == "send":
                later = [
                    {**i, "record": self.records[i["id"]]} if i["id"] in self.records else i
                    for i in later
                ]
            page: dict[str, Any] = {"items": later[:limit], "last_seq": len(self.feed)}
            if self.has_more is not None:
                page["has_more"] = len(later) > limit
            return httpx.Response(200, json=page)
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

    def feed_reads(self) -> int:
        return sum(1 for r in self.requests if r.url.path.endswith("/changes"))

    def record_reads(self) -> int:
        return sum(1 for r in self.requests if r.url.path.startswith("/api/v1/customers/"))


def _pms(pms: FakeFeedPMS, mode: str) -> PMSClient:
    settings = PMSSettings.model_validate(
        {"base_url": PMS_BASE, "api_key": "pms-api-key", "change_capture": mode}
    )
    return PMSClient(settings, http=httpx.Client(transport=httpx.MockTransport(pms)))


def _cycle_pms(
    client: Any, store: TenantStore, resource: str = "customers", *, use_feed: bool = True
) -> tuple[list[RemoteRecord], str | None]:
    """One cycle's capture of ``resource``, committed: the records and the stored cursor."""
    capture = PMSCapture(client, store, use_feed=use_feed)
    records = [record for page in capture.changes(resource) for record in page]
    capture.commit()
    capture.close()
    return records, store.get_cursor("pms", resource)


@pytest.mark.usefixtures("_no_waits")
def test_the_pms_connector_offers_its_capabilities() -> None:
    """PMSClient is a ChangeFeed, UpdatedAfterListing and WebhookSource (found by isinstance)."""
    client = _pms(FakeFeedPMS(), "changes")
    assert isinstance(client, ChangeFeed)
    assert isinstance(client, UpdatedAfterListing)
    assert isinstance(client, WebhookSource)


@pytest.mark.usefixtures("_no_waits")
def test_feed_capture_starts_with_a_full_listing_then_reads_the_feed(store: TenantStore) -> None:
    """The first call lists everything; later calls return only what the feed says changed."""
    pms = FakeFeedPMS()
    pms.put("c1", "2026-01-01T00:00:01Z")
    client = _pms(pms, "changes")
    first, cursor = _cycle_pms(client, store)
    assert [r.id for r in first] == ["c1"]
    assert cursor == "seq:1"
    pms.put("c2", "2026-01-01T00:00:02Z")
    pms.put("c2", "2026-01-01T00:00:03Z")
    pms.put("p1", "2026-01-01T00:00:03Z", kind="project")
    second, cursor = _cycle_pms(client, store)
    assert [(r.id, r.deleted) for r in second] == [("c2", False)]
    assert cursor == "seq:4"
    assert _cycle_pms(client, store)[0] == []


@pytest.mark.usefixtures("_no_waits")
def test_feed_deletes_become_tombstones(store: TenantStore) -> None:
    """A delete in the feed, or a record gone before we read it, comes back as deleted=True."""
    pms = FakeFeedPMS()
    client = _pms(pms, "changes")
    _cycle_pms(client, store)
    pms.put("c1", "2026-01-01T00:00:01Z")
    pms.put("c2", "2026-01-01T00:00:02Z")
    pms.remove("c1")
    del pms.records["c2"]  # gone without a feed entry yet: the GET answers 404
    batch, _ = _cycle_pms(client, store)
    assert {(r.id, r.deleted) for r in batch} == {("c1", True), ("c2", True)}


@pytest.mark.usefixtures("_no_waits")
def test_feed_is_read_page_by_page_from_the_last_item() -> None:
    """Long feeds are paged with after = the last seq received, skipping nothing."""
    pms = FakeFeedPMS()
    for n in range(5):
        pms.put(f"c{n}", f"2026-01-01T00:00:0{n}Z")
    client = _pms(pms, "changes")
    pages = list(feed_pages(client, 0, limit=2))
    assert [[c.seq for c in p.items] for p in pages] == [[1, 2], [3, 4], [5]]


@pytest.mark.usefixtures("_no_waits")
def test_a_feed_page_without_more_is_the_last_one_read(store: TenantStore) -> None:
    """A page that says has_more: false ends the read: no request for an empty page after it."""
    pms = FakeFeedPMS(has_more=True)
    client = _pms(pms, "changes")
    _cycle_pms(client, store)
    pms.put("c1", "2026-01-01T00:00:01Z")
    before = pms.feed_reads()
    records, cursor = _cycle_pms(client, store)
    assert [r.id for r in records] == ["c1"]
    assert cursor == "seq:1"
    assert pms.feed_reads() - before == 1
    for n in range(3):
        pms.put(f"d{n}", f"2026-01-01T00:00:0{n + 2}Z")
    before = pms.feed_reads()
    assert [p.has_more for p in feed_pages(client, 1, limit=2)] == [True, False]
    assert pms.feed_reads() - before == 2


@pytest.mark.usefixtures("_no_waits")
def test_polling_capture_uses_exclusive_updated_after(store: TenantStore) -> None:
    """Polling mode passes back the newest updated_at it saw, spelt as the PMS spelt it."""
    pms = FakeFeedPMS()
    pms.put("c1", "2026-01-01T00:00:01.000001Z")
    client = _pms(pms, "polling")
    _, first_cursor = _cycle_pms(client, store, use_feed=False)
    assert first_cursor == "updated_after:2026-01-01T00:00:01.000001Z"
    pms.put("c2", "2026-01-01T00:00:02.000001Z")
    second, second_cursor = _cycle_pms(client, store, use_feed=False)
    assert [r.id for r in second] == ["c2"]
    assert pms.requests[-1].url.params["updated_after"] == "2026-01-01T00:00:01.000001Z"
    assert not any(r.url.path.endswith("/changes") for r in pms.requests)
    third, third_cursor = _cycle_pms(client, store, use_feed=False)
    assert third == []
    assert third_cursor == second_cursor


class PlainPMS:
    """A custom connector with neither a feed nor its own timestamp spelling: list only."""

    system = "pms"

    def __init__(self) -> None:
        self.records: dict[str, RemoteRecord] = {}
        self.reads: list[datetime | None] = []

    def put(self, record_id: str, at: datetime) -> None:
        self.records[record_id] = RemoteRecord("customers", record_id, {"id": record_id}, at)

    def list(
        self, _resource: str, *, changed_after: datetime | None = None
    ) -> Iterator[RemoteRecord]:
        self.reads.append(changed_after)
        for record in sorted(self.records.values(), key=lambda r: r.changed_at or T0):
            if changed_after is None or (record.changed_at and record.changed_at > changed_after):
                yield record


def test_a_connector_without_a_feed_is_captured_by_its_updated_after_listing(
    store: TenantStore,
) -> None:
    """No ChangeFeed: the PMS is listed from the newest change seen, which is stored."""
    pms = PlainPMS()
    pms.put("a", T0)
    first, cursor = _cycle_pms(pms, store)
    assert [r.id for r in first] == ["a"]
    assert pms.reads == [None]
    assert cursor == f"updated_after:{T0.isoformat()}"
    pms.put("b", T0 + timedelta(minutes=1))
    second, _ = _cycle_pms(pms, store)
    assert [r.id for r in second] == ["b"]
    assert pms.reads[-1] == T0


@pytest.mark.usefixtures("_no_waits")
@pytest.mark.parametrize(
    ("stored", "mode", "expected"),
    [
        # Written by earlier versions: the feed position, the PMS's own spelling when polling.
        ("seq:1", "changes", {"after": "1"}),
        (
            "updated_after:2026-01-01T00:00:01.000001Z",
            "polling",
            {"updated_after": "2026-01-01T00:00:01.000001Z"},
        ),
        # A cursor of the other mode (change_capture was switched): a full listing.
        ("updated_after:2026-01-01T00:00:01.000001Z", "changes", {}),
        ("seq:1", "polling", {}),
    ],
)
def test_pms_cursors_stored_by_earlier_versions_still_read(
    store: TenantStore, stored: str, mode: str, expected: dict[str, str]
) -> None:
    """An existing database's PMS cursor resumes where it was, or lists all when it does not fit."""
    pms = FakeFeedPMS()
    pms.put("c1", "2026-01-01T00:00:01.000001Z")
    pms.put("c2", "2026-01-01T00:00:02.000001Z")
    store.set_cursor("pms", "customers", stored)
    records, _ = _cycle_pms(_pms(pms, mode), store, use_feed=mode == "changes")
    if expected:
        assert [r.id for r in records] == ["c2"]
        first_read = pms.requests[0].url.params
        assert {k: first_read[k] for k in expected} == expected
    else:
        assert [r.id for r in records] == ["c1", "c2"]


def test_a_listing_cursor_of_an_earlier_version_still_reads(store: TenantStore) -> None:
    """``changed_after:`` (earlier versions, connectors without a feed) resumes from its time."""
    pms = PlainPMS()
    pms.put("a", T0)
    pms.put("b", T0 + timedelta(minutes=1))
    store.set_cursor("pms", "customers", f"changed_after:{T0.isoformat()}")
    records, _ = _cycle_pms(pms, store)
    assert [r.id for r in records] == ["b"]
    assert pms.reads == [T0]


def test_a_held_resource_keeps_its_pms_cursor(store: TenantStore) -> None:
    """A resource a flow held (a record could not be handled) is read again next cycle."""
    pms = PlainPMS()
    pms.put("a", T0)
    capture = PMSCapture(pms, store)  # type: ignore[arg-type]
    capture.changes("customers")
    capture.hold("customers")
    capture.commit()
    assert store.get_cursor("pms", "customers") is None
    assert [r.id for r in _cycle_pms(pms, store)[0]] == ["a"]


class _StuckFeed:
    """A changes feed that keeps saying has_more without sending anything newer."""

    def __init__(self) -> None:
        self.reads = 0

    def changes(self, after: int, *, limit: int) -> FeedPage:  # noqa: ARG002 (the ChangeFeed signature)
        self.reads += 1
        return FeedPage(
            (FeedItem(after, "customers", "c1", "upsert"),), last_seq=after, has_more=True
        )


def test_a_feed_whose_position_does_not_move_while_it_has_more_is_a_clear_error() -> None:
    """has_more with no item past the position ends the read with an error, not a loop."""
    feed = _StuckFeed()
    with pytest.raises(Fatal, match="pms: the changes feed reported has_more after seq 7"):
        list(feed_pages(feed, 7))
    assert feed.reads == 1


def test_a_stop_ends_a_feed_read_between_pages() -> None:
    """A stop request ends a long feed read before the next page."""
    stop = threading.Event()
    reads = 0

    class LongFeed:
        def changes(self, after: int, *, limit: int) -> FeedPage:  # noqa: ARG002 (the ChangeFeed signature)
            nonlocal reads
            reads += 1
            stop.set()
            return FeedPage((FeedItem(after + 1, "customers", "c1", "upsert"),), has_more=True)

    with pytest.raises(Stopped):
        list(feed_pages(LongFeed(), 0, stop=stop.is_set))
    assert reads == 1


@pytest.mark.usefixtures("_no_waits")
def test_feed_items_that_carry_their_record_need_no_read_of_it(store: TenantStore) -> None:
    """A PMS that sends each change's record with the feed (include=record) is not asked
    for the record again: one request per PMS edit fewer."""
    pms = FakeFeedPMS(has_more=True, bodies="send")
    client = _pms(pms, "changes")
    _cycle_pms(client, store)
    pms.put("c1", "2026-01-01T00:00:01Z")
    pms.put("c2", "2026-01-01T00:00:02Z")
    pms.remove("c2")
    records, cursor = _cycle_pms(client, store)
    assert [(r.id, r.deleted, r.data.get("name"), r.version) for r in records] == [
        ("c1", False, "c1", 1),
        ("c2", True, None, None),
    ]
    assert cursor == "seq:3"
    assert pms.record_reads() == 0
    assert all(r.url.params.get("include") == "record" for r in pms.requests[-1:])


@pytest.mark.parametrize("bodies", ["ignore", "refuse"])
@pytest.mark.usefixtures("_no_waits")
def test_a_pms_without_feed_bodies_has_each_changed_record_read(
    store: TenantStore, bodies: str
) -> None:
    """A PMS that ignores or refuses include=record still syncs: each change is read with a
    GET, and one that refused is not asked again."""
    pms = FakeFeedPMS(has_more=True, bodies=bodies)
    client = _pms(pms, "changes")
    _cycle_pms(client, store)
    pms.put("c1", "2026-01-01T00:00:01Z")
    records, _ = _cycle_pms(client, store)
    assert [(r.id, r.data.get("name")) for r in records] == [("c1", "c1")]
    assert pms.record_reads() == 1
    asked = [r.url.params.get("include") for r in pms.requests if r.url.path.endswith("/changes")]
    if bodies == "refuse":
        assert asked == ["record", None, None]  # refused once, then asked without it
