"""Change capture, one per side: what changed since the stored cursors.

The rules are the pure functions of :mod:`tolken.engine.cursor`; this module
reads the connectors and the store.

PowerOffice (:func:`read_poweroffice`, giving a :class:`PowerOfficeCapture`, then
:func:`save_po_cursor`): per resource, the updated-after listing from the cursor
minus the overlap, deduplicated by ``(id, content hash)``; the cursor is capped
at the run start and never passes a record that must wait or failed, and the
overlap is no longer re-read once PowerOffice's clock before a read was past it
(:class:`~tolken.connectors.base.ServerClock`, cursor rule 5). The first run
(no cursor) and a reconcile read the full listing.

PMS (:class:`PMSCapture`): the connector's changes feed when it offers one
(:class:`~tolken.connectors.base.ChangeFeed`) and ``pms.change_capture`` is
``changes``: the last operation per record, each upsert taken from the feed
when the item carries its record (``include=record``) and read with a GET
otherwise, deletes as tombstones (``deleted=True``). Otherwise the updated-after listing,
in the PMS's own timestamp spelling when the connector offers that
(:class:`~tolken.connectors.base.UpdatedAfterListing`); a listing cannot see
deletes (the engine's reconcile does). Departments and customers share the PMS
``customers`` resource, so each resource is read once per cycle and its cursor
saved at the end of the cycle (:meth:`PMSCapture.commit`), unless a flow held it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from tolken.connectors.base import (
    ChangeFeed,
    Connector,
    FeedItem,
    FeedPage,
    RemoteRecord,
    ServerClock,
    UpdatedAfterListing,
)
from tolken.engine.cursor import (
    CursorState,
    FeedPosition,
    ListingPosition,
    Outcome,
    PMSPosition,
    advance,
    collapse_feed,
    content_hash,
    feed_next,
    feed_read_on,
    feed_stuck,
    format_pms_cursor,
    format_po_cursor,
    is_duplicate,
    listing_next,
    parse_pms_cursor,
    parse_po_cursor,
)
from tolken.engine.cursor import read_after as cursor_read_after
from tolken.errors import Fatal, NotFound, Stopped
from tolken.store import TenantStore

__all__ = [
    "FEED_MAX_PAGES",
    "FEED_PAGE_LIMIT",
    "UNCHANGED_PAGE",
    "PMSCapture",
    "PowerOfficeCapture",
    "feed_pages",
    "load_po_cursor",
    "read_poweroffice",
    "save_po_cursor",
    "stop_aware",
]

T = TypeVar("T")

UNCHANGED_PAGE = 1000
"""Listed PowerOffice records asked about at once (one store query keyed by their ids)."""

FEED_PAGE_LIMIT = 1000
"""Items asked for per changes-feed page."""

FEED_MAX_PAGES = 10_000
"""The most changes-feed pages one read takes (ten million changes): a feed that
keeps reporting more past that ends the run with a clear error instead."""


@dataclass
class PowerOfficeCapture:
    """PowerOffice records read for one resource, and the cursor they were read from.

    ``unchanged`` are the listed records the caller's test found equal to what it
    already holds: only their id and time are kept (the cursor and a reconcile's
    delete check need them), not their data, so a full listing of 100,000
    records is not held in memory. ``listed_at`` is PowerOffice's clock before
    the read began (:class:`~tolken.connectors.base.ServerClock`; None when the
    connector cannot tell): the cursor's rule 5 settles on it.
    """

    resource: str
    records: list[RemoteRecord]
    digests: dict[str, str]
    state: CursorState
    full: bool
    unchanged: list[tuple[str, datetime | None]] = field(default_factory=list)
    listed_at: datetime | None = None

    def listed_ids(self) -> list[str]:
        """The ids of every record read (kept or unchanged), deduplicated ones excepted."""
        return [r.id for r in self.records] + [record_id for record_id, _ in self.unchanged]


def load_po_cursor(store: TenantStore, resource: str) -> CursorState:
    """The stored PowerOffice cursor of ``resource`` (empty before the first run)."""
    return parse_po_cursor(store.get_cursor("poweroffice", resource))


def read_poweroffice(
    connector: Connector,
    store: TenantStore,
    resource: str,
    *,
    overlap: timedelta,
    full: bool,
    unchanged: Callable[[Sequence[tuple[str, str]]], Collection[str]] | None = None,
) -> PowerOfficeCapture:
    """Read changed records (all records when ``full`` or before the first run), deduplicated.

    ``unchanged(page)`` is asked with each page of up to :data:`UNCHANGED_PAGE`
    ``(id, content_hash)`` pairs; the ids it returns are set aside without
    their data (:attr:`PowerOfficeCapture.unchanged`).
    """
    state = load_po_cursor(store, resource)
    since = None if full else cursor_read_after(state, overlap)
    # The clock of an answer received before the read: never later than its start.
    listed_at = connector.server_time() if isinstance(connector, ServerClock) else None
    records: list[RemoteRecord] = []
    digests: dict[str, str] = {}
    same: list[tuple[str, datetime | None]] = []
    page: list[tuple[RemoteRecord, str]] = []

    def sort_out() -> None:
        # One question per page of records: which are unchanged (their data is dropped).
        same_ids = unchanged([(r.id, d) for r, d in page]) if unchanged is not None else ()
        for record, _digest in page:
            if record.id in same_ids:
                same.append((record.id, record.changed_at))
            else:
                records.append(record)
        page.clear()

    for record in connector.list(resource, changed_after=since):
        digest = content_hash(record.data)
        if not full and is_duplicate(state, record.id, digest):
            continue
        digests[record.id] = digest
        page.append((record, digest))
        if len(page) >= UNCHANGED_PAGE:
            sort_out()
    sort_out()
    return PowerOfficeCapture(
        resource, records, digests, state, full or since is None, same, listed_at
    )


def save_po_cursor(
    store: TenantStore,
    capture: PowerOfficeCapture,
    held: Iterable[str],
    *,
    run_started_at: datetime,
    overlap: timedelta,
) -> None:
    """Advance the cursor over the captured records; ``held`` ids (waiting, failed) keep it back."""
    held = set(held)
    listed = [(r.id, r.changed_at) for r in capture.records] + capture.unchanged
    outcomes = [
        Outcome(record_id, capture.digests[record_id], changed_at, record_id not in held)
        for record_id, changed_at in listed
    ]
    state = advance(
        capture.state,
        outcomes,
        run_started_at=run_started_at,
        overlap=overlap,
        listed_at=capture.listed_at,
    )
    if state != capture.state:
        store.set_cursor("poweroffice", capture.resource, format_po_cursor(state))


def feed_pages(
    feed: ChangeFeed,
    after: int,
    *,
    limit: int = FEED_PAGE_LIMIT,
    stop: Callable[[], bool] = lambda: False,
    max_pages: int = FEED_MAX_PAGES,
) -> Iterator[FeedPage]:
    """Every non-empty page of the feed after ``after``, up to its head when read.

    Bounded: a page that reports ``has_more`` must move the position forward
    (:func:`~tolken.engine.cursor.feed_stuck`), at most ``max_pages`` pages are
    read, and ``stop()`` true between pages ends the read with
    :class:`~tolken.errors.Stopped`. The first two raise :class:`~tolken.errors.Fatal`.
    """
    pages = 0
    while True:
        if stop():
            raise Stopped("stopping: the changes feed read was cut short", system="pms")
        page = feed.changes(after, limit=limit)
        pages += 1
        if feed_stuck(after, page):
            raise Fatal(
                f"the changes feed reported has_more after seq {after} but sent nothing "
                f"newer: stopped rather than reading it forever",
                system="pms",
            )
        if page.items:
            yield page
        if not feed_read_on(after, page):
            return
        if pages >= max_pages:
            raise Fatal(
                f"the changes feed needs more than {max_pages} pages of {limit} after seq "
                f"{after}: stopped rather than reading on",
                system="pms",
            )
        after = feed_next(after, page)


def stop_aware(records: Iterable[T], stop: Callable[[], bool], what: str) -> Iterator[T]:
    """``records`` as they come, ending with :class:`~tolken.errors.Stopped` once ``stop()``.

    For any connector's listing, built-in or not: a listing cut short is never used.
    """
    for record in records:
        if stop():
            raise Stopped(f"stopping: the listing of {what} was cut short")
        yield record


@dataclass
class PMSCapture:
    """The PMS changes of one cycle, read once per resource and shared by the flows.

    ``use_feed`` is ``pms.change_capture == "changes"``: read the changes feed
    when the connector offers one. ``commit`` stores the new positions.
    ``stop()`` true ends a feed read or listing with :class:`~tolken.errors.Stopped`.
    """

    connector: Connector
    store: TenantStore
    use_feed: bool = True
    feed_limit: int = FEED_PAGE_LIMIT
    stop: Callable[[], bool] = lambda: False
    _batches: dict[str, tuple[list[RemoteRecord], PMSPosition | None]] = field(default_factory=dict)
    _listings: dict[str, list[RemoteRecord]] = field(default_factory=dict)
    _held: set[str] = field(default_factory=set)

    def changes(self, resource: str) -> list[RemoteRecord]:
        """Records (and tombstones) of ``resource`` changed since the stored cursor."""
        if resource not in self._batches:
            stored = self.store.get_cursor("pms", resource)
            position = parse_pms_cursor(stored)
            batch: tuple[list[RemoteRecord], PMSPosition | None]
            if self.use_feed and isinstance(self.connector, ChangeFeed):
                batch = self._from_feed(self.connector, resource, position)
            else:
                batch = self._by_listing(resource, position)
            if stored is None:
                # A first read is a full listing: keep it as the candidate pool too.
                self._listings[resource] = [r for r in batch[0] if not r.deleted]
            self._batches[resource] = batch
        return self._batches[resource][0]

    def _from_feed(
        self, feed: ChangeFeed, resource: str, position: PMSPosition | None
    ) -> tuple[list[RemoteRecord], FeedPosition]:
        if not isinstance(position, FeedPosition):
            # Read the head first: anything changing during the listing is in
            # the feed after it, so the next read sees it (maybe twice; the
            # engine deduplicates by content).
            head = 0
            for page in feed_pages(feed, 0, limit=self.feed_limit, stop=self.stop):
                head = feed_next(head, page)
            return self._list(resource), FeedPosition(head)
        items: list[FeedItem] = []
        head = position.seq
        for page in feed_pages(feed, position.seq, limit=self.feed_limit, stop=self.stop):
            items.extend(page.items)
            head = feed_next(head, page)
        records = [
            self._current(resource, item) for item in collapse_feed(items, resource).values()
        ]
        return records, FeedPosition(head)

    def _current(self, resource: str, item: FeedItem) -> RemoteRecord:
        """The record as it is now (sent with the item, or read); a tombstone when it was
        deleted (or is gone already)."""
        if item.op == "upsert" and item.record is not None:
            return item.record
        if item.op == "upsert":
            try:
                return self.connector.get(resource, item.id)
            except NotFound:
                pass
        return RemoteRecord(resource=resource, id=item.id, data={}, deleted=True)

    def _by_listing(
        self, resource: str, position: PMSPosition | None
    ) -> tuple[list[RemoteRecord], ListingPosition | None]:
        after = position if isinstance(position, ListingPosition) else None
        if isinstance(self.connector, UpdatedAfterListing):
            listed = list(
                stop_aware(
                    self.connector.list_updated_after(resource, after.stamp if after else None),
                    self.stop,
                    f"PMS {resource}",
                )
            )
            records = [entry.record for entry in listed]
            stamps = [entry.stamp for entry in listed]
        else:
            since = after.at if after is not None else None
            records = self._list(resource, since)
            stamps = [r.changed_at.isoformat() if r.changed_at else None for r in records]
        return records, listing_next(after, stamps)

    def listing(self, resource: str) -> list[RemoteRecord]:
        """Every record of ``resource`` (read at most once per cycle)."""
        if resource not in self._listings:
            self._listings[resource] = self._list(resource)
        return self._listings[resource]

    def _list(self, resource: str, since: datetime | None = None) -> list[RemoteRecord]:
        listing = self.connector.list(resource, changed_after=since)
        return list(stop_aware(listing, self.stop, f"PMS {resource}"))

    def hold(self, resource: str) -> None:
        """Do not move ``resource``'s cursor this cycle (a record could not be handled)."""
        self._held.add(resource)

    def commit(self) -> None:
        """Save the positions of the resources read this cycle and not held."""
        for resource, (_records, position) in self._batches.items():
            if position is not None and resource not in self._held:
                self.store.set_cursor("pms", resource, format_pms_cursor(position))
