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
    Advance,
    CursorState,
    FeedPosition,
    ListingPosition,
    Outcome,
    PMSPosition,
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
from tolken.engine.paged import pages
from tolken.engine.staging import StagedIds, Staging
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

    Of every record listed (duplicates at the boundary excepted) only its id,
    content hash and time are kept, noted in ``staging`` under ``listed_kind``
    (the cursor's advance and a reconcile's delete check read them from there),
    so a full listing of 100,000 records is not held in memory. ``unchanged``
    counts the listed records the caller's test found equal to what it already
    holds (their data is dropped). ``listed_at`` is PowerOffice's clock before
    the read began (:class:`~tolken.connectors.base.ServerClock`; None when the
    connector cannot tell): the cursor's rule 5 settles on it.
    """

    resource: str
    records: list[RemoteRecord]
    state: CursorState
    full: bool
    staging: Staging
    listed_kind: str
    unchanged: int = 0
    listed_at: datetime | None = None
    newest: datetime | None = None
    """The latest ``changed_at`` listed (None: none had one)."""

    def listed_ids(self) -> StagedIds:
        """The ids of every record read (kept or unchanged), deduplicated ones excepted:
        a set read from the staging."""
        return self.staging.listed_ids(self.listed_kind)


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
    staging: Staging,
    listed_kind: str | None = None,
    unchanged: Callable[[Sequence[tuple[str, str]]], Collection[str]] | None = None,
    keep: Callable[[Sequence[tuple[RemoteRecord, str]]], object] | None = None,
) -> PowerOfficeCapture:
    """Read changed records (all records when ``full`` or before the first run), deduplicated.

    Each listed record's id, content hash and time is noted in ``staging``
    under ``listed_kind`` (default ``po-listed:<resource>``; emptied first).
    ``unchanged(page)`` is asked with each page of up to :data:`UNCHANGED_PAGE`
    ``(id, content_hash)`` pairs; the ids it returns are dropped (only counted).
    ``keep(page)``, when given, takes the changed records of each page, each with
    its content hash, instead of :attr:`PowerOfficeCapture.records`.
    """
    state = load_po_cursor(store, resource)
    since = None if full else cursor_read_after(state, overlap)
    kind = listed_kind if listed_kind is not None else f"po-listed:{resource}"
    staging.drop(kind)
    # The clock of an answer received before the read: never later than its start.
    listed_at = connector.server_time() if isinstance(connector, ServerClock) else None
    records: list[RemoteRecord] = []
    same = 0
    newest: datetime | None = None
    page: list[tuple[RemoteRecord, str]] = []

    def sort_out() -> None:
        # One question per page of records: which are unchanged (their data is dropped).
        nonlocal same, newest
        times = [r.changed_at for r, _ in page if r.changed_at is not None]
        if times:
            newest = max(times) if newest is None else max(newest, *times)
        staging.note_listed(kind, ((r.id, d, r.changed_at) for r, d in page))
        same_ids = unchanged([(r.id, d) for r, d in page]) if unchanged is not None else ()
        changed = [(record, d) for record, d in page if record.id not in same_ids]
        same += len(page) - len(changed)
        if keep is not None:
            keep(changed)
        else:
            records.extend(record for record, _ in changed)
        page.clear()

    for record in connector.list(resource, changed_after=since):
        digest = content_hash(record.data)
        if not full and is_duplicate(state, record.id, digest):
            continue
        page.append((record, digest))
        if len(page) >= UNCHANGED_PAGE:
            sort_out()
    sort_out()
    return PowerOfficeCapture(
        resource, records, state, full or since is None, staging, kind, same, listed_at, newest
    )


def save_po_cursor(
    store: TenantStore,
    capture: PowerOfficeCapture,
    held: Iterable[str],
    *,
    run_started_at: datetime,
    overlap: timedelta,
) -> None:
    """Advance the cursor over the captured records; ``held`` ids (waiting, failed) keep it back.

    The listed records are folded in a page at a time (:class:`~tolken.engine.cursor.Advance`):
    only those within the overlap of the position are held (none when PowerOffice's clock
    had passed the newest listed plus the overlap), not the listing.
    """
    held = set(held)
    staging, kind = capture.staging, capture.listed_kind
    failed = [Outcome(i, d, at, False) for i, d, at in staging.listed_rows(kind, held)]
    fold = Advance(
        capture.state,
        failed,
        run_started_at=run_started_at,
        overlap=overlap,
        listed_at=capture.listed_at,
        newest=capture.newest,
    )
    for page in staging.listed(kind):
        for record_id, digest, changed_at in page:
            if record_id not in held:
                fold.add(Outcome(record_id, digest, changed_at, True))
    state = fold.result()
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
    What was read is set aside in ``staging`` (:class:`~tolken.engine.staging.Staging`)
    and read back a page at a time, so a first run's full listing is not held.
    """

    connector: Connector
    store: TenantStore
    use_feed: bool = True
    feed_limit: int = FEED_PAGE_LIMIT
    stop: Callable[[], bool] = lambda: False
    staging: Staging = field(default_factory=Staging)
    _positions: dict[str, PMSPosition | None] = field(default_factory=dict)
    _stored: dict[str, str | None] = field(default_factory=dict)
    _listed: set[str] = field(default_factory=set)
    _staged_listings: set[str] = field(default_factory=set)
    _held: set[str] = field(default_factory=set)

    def close(self) -> None:
        """Drop what was set aside."""
        self.staging.close()

    def changes(self, resource: str) -> Iterator[list[RemoteRecord]]:
        """Records (and tombstones) of ``resource`` changed since the stored cursor, in pages."""
        if resource not in self._positions:
            stored = self.store.get_cursor("pms", resource)
            self._stored[resource] = stored
            position = parse_pms_cursor(stored)
            after: PMSPosition | None
            if self.use_feed and isinstance(self.connector, ChangeFeed):
                after = self._from_feed(self.connector, resource, position)
            else:
                after = self._by_listing(resource, position)
            if stored is None:
                # A first read is a full listing: it serves as the candidate pool too.
                self._listed.add(resource)
            self._positions[resource] = after
        return self.staging.pages(_changes_kind(resource))

    def _from_feed(
        self, feed: ChangeFeed, resource: str, position: PMSPosition | None
    ) -> FeedPosition:
        if not isinstance(position, FeedPosition):
            # Read the head first: anything changing during the listing is in
            # the feed after it, so the next read sees it (maybe twice; the
            # engine deduplicates by content).
            head = 0
            for page in feed_pages(feed, 0, limit=self.feed_limit, stop=self.stop):
                head = feed_next(head, page)
            self._stage_listing(_changes_kind(resource), resource)
            return FeedPosition(head)
        items: list[FeedItem] = []
        head = position.seq
        for page in feed_pages(feed, position.seq, limit=self.feed_limit, stop=self.stop):
            items.extend(page.items)
            head = feed_next(head, page)
        self.staging.put(
            _changes_kind(resource),
            (self._current(resource, item) for item in collapse_feed(items, resource).values()),
        )
        return FeedPosition(head)

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

    def _by_listing(self, resource: str, position: PMSPosition | None) -> ListingPosition | None:
        after = position if isinstance(position, ListingPosition) else None
        kind = _changes_kind(resource)
        if isinstance(self.connector, UpdatedAfterListing):
            listed = stop_aware(
                self.connector.list_updated_after(resource, after.stamp if after else None),
                self.stop,
                f"PMS {resource}",
            )
            new = after
            for chunk in pages(listed, STAGE_PAGE):
                self.staging.put(kind, (entry.record for entry in chunk))
                # The newest stamp, never back: folding page by page is the same as at once.
                new = listing_next(new, (entry.stamp for entry in chunk))
            return new
        return self._stage_listing(kind, resource, after)

    def changes_kind(self, resource: str) -> str:
        """The staging kind :meth:`changes` reads ``resource``'s changes from."""
        return _changes_kind(resource)

    def listed_as_changes(self, resource: str) -> bool:
        """Whether this cycle's changes of ``resource`` were a full listing (a first read): then
        :meth:`listing` reads back exactly the records :meth:`changes` gave."""
        return resource in self._listed

    def listing(self, resource: str) -> Iterator[list[RemoteRecord]]:
        """Every record of ``resource`` (read at most once per cycle), in pages."""
        if resource in self._listed:
            kind = _changes_kind(resource)
            return ([r for r in page if not r.deleted] for page in self.staging.pages(kind))
        return self.staging.pages(self._listing(resource))

    def listing_ids(self, resource: str) -> StagedIds:
        """The ids of every record of ``resource`` (read at most once per cycle), as a set read
        from the staging (a first read's listing has no tombstones)."""
        if resource in self._listed:
            return self.staging.ids(_changes_kind(resource))
        return self.staging.ids(self._listing(resource))

    def _listing(self, resource: str) -> str:
        """The staging kind of ``resource``'s full listing, listed first if need be."""
        kind = _listing_kind(resource)
        if kind not in self._staged_listings:
            self._stage_listing(kind, resource)
            self._staged_listings.add(kind)
        return kind

    def _stage_listing(
        self, kind: str, resource: str, after: ListingPosition | None = None
    ) -> ListingPosition | None:
        """List ``resource`` (changed after ``after``) into ``kind``, a page at a time; the
        position after it (the newest time listed, never back)."""
        since = after.at if after is not None else None
        listing = stop_aware(
            self.connector.list(resource, changed_after=since), self.stop, f"PMS {resource}"
        )
        new = after
        for chunk in pages(listing, STAGE_PAGE):
            self.staging.put(kind, chunk)
            new = listing_next(
                new, [r.changed_at.isoformat() if r.changed_at else None for r in chunk]
            )
        return new

    def hold(self, resource: str) -> None:
        """Do not move ``resource``'s cursor this cycle (a record could not be handled)."""
        self._held.add(resource)

    def commit(self) -> None:
        """Save the positions of the resources read this cycle and not held (a position that
        did not move is not written again: an idle cycle writes no cursor)."""
        for resource, position in self._positions.items():
            if position is None or resource in self._held:
                continue
            value = format_pms_cursor(position)
            if value != self._stored.get(resource):
                self.store.set_cursor("pms", resource, value)


STAGE_PAGE = 1000
"""Records listed from the PMS per write to the staging."""


def _changes_kind(resource: str) -> str:
    return f"pms-changes:{resource}"


def _listing_kind(resource: str) -> str:
    return f"pms-listing:{resource}"
