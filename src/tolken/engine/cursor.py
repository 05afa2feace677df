"""Change-capture cursor rules (pure): what to read next and how far the cursor may move.

Both sides' rules live here, as functions over values; :mod:`tolken.engine.capture`
does the reading and the storing.

PowerOffice
-----------

A cursor is a position on a system's modification time (for PowerOffice,
``LastChangedDateTimeOffset``) plus the records already handled near it.
The rules, each a function here, make incremental capture correct by
construction (DESIGN §4 "Change capture"):

1. **Overlap.** Reading starts ``overlap`` before the stored position
   (:func:`read_after`), so a record committed late with an earlier timestamp
   (replica lag, clock skew) is still seen.
2. **Dedupe at the boundary.** Records re-read inside the overlap are skipped
   when their ``(id, content hash)`` was already handled (:func:`is_duplicate`);
   a record that changed again has a new hash and is handled again.
3. **Capped at the run start.** The new position never passes the moment the
   run started (:func:`advance`), so a record changed *during* the run is read
   again next time.
4. **Never past a failure.** The new position stays strictly before the
   earliest record that failed, so the next run reads it again; failed records
   are never remembered as handled.
5. **Quiet once the window has passed.** The overlap is there for records
   whose timestamps PowerOffice had not committed yet when it was read. A
   read that began when PowerOffice's own clock (its ``Date`` header) was
   already past the new position plus ``overlap`` saw everything stamped at
   or before that position: the position is then *settled*
   (:attr:`CursorState.settled`), the next read starts there instead of
   ``overlap`` before it, and the boundary set forgets what lies at or
   before it. So after a bulk change the window is re-read until one read
   started late enough, then no more (:func:`advance` with ``listed_at``).

The position only moves to timestamps actually seen; an empty read leaves it
where it was. Typical use::

    state = stored or CursorState()
    since = read_after(state, overlap)
    outcomes = []
    for record in connector.list(resource, changed_after=since):
        digest = content_hash(record.data)
        if is_duplicate(state, record.id, digest):
            continue
        ok = handle(record)
        outcomes.append(Outcome(record.id, digest, record.changed_at, ok))
    store(advance(state, outcomes, run_started_at=started, overlap=overlap))

:class:`Advance` is the same rule a record at a time, for a listing too long
to hold: given the failed records first, it keeps only the handled records
within the overlap of the position so far.

It is stored as JSON (:func:`format_po_cursor`, :func:`parse_po_cursor`).

PMS
---

A PMS position is one of two values, stored as text (:func:`format_pms_cursor`,
:func:`parse_pms_cursor`):

- :class:`FeedPosition`, ``seq:<n>``: after item ``n`` of the changes feed
  (:class:`tolken.connectors.base.ChangeFeed`). Reading on continues from the
  last item actually received, whatever the PMS says ``last_seq`` is
  (:func:`feed_next`), and stops at an empty page, a page that does not move
  the position, or ``has_more: false`` (:func:`feed_read_on`); a page that
  says ``has_more`` without moving the position is a broken feed
  (:func:`feed_stuck`), never read on from. A run of items
  collapses to the last operation per record (:func:`collapse_feed`).
- :class:`ListingPosition`, ``updated_after:<stamp>``: records modified
  strictly after ``stamp``, kept as the PMS spelt it so no precision is lost.
  It moves to the newest stamp listed, never back (:func:`listing_next`).
  ``changed_after:<ISO>``, written by earlier versions for connectors without a
  feed, reads as the same position.

No stored text (or text of another kind, after ``pms.change_capture`` changed)
means no position: the next read is a full listing. A feed position starts at
the feed's head read *before* that listing, so a change made during it is read
again, never lost. Neither position ever moves backwards.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from tolken.connectors.base import FeedItem, FeedPage

__all__ = [
    "FEED_PREFIX",
    "LISTING_PREFIX",
    "Advance",
    "CursorState",
    "FeedPosition",
    "ListingPosition",
    "Outcome",
    "PMSPosition",
    "Seen",
    "advance",
    "collapse_feed",
    "content_hash",
    "feed_next",
    "feed_read_on",
    "feed_stuck",
    "format_pms_cursor",
    "format_po_cursor",
    "is_duplicate",
    "listing_next",
    "parse_pms_cursor",
    "parse_po_cursor",
    "parse_stamp",
    "read_after",
    "settled_at",
]

RESOLUTION = timedelta(microseconds=1)
"""The smallest step of a position: "strictly before" a failure is this much before it."""


@dataclass(frozen=True)
class Seen:
    """A record handled at the boundary: its id, content hash and modification time."""

    id: str
    digest: str
    changed_at: datetime


@dataclass(frozen=True)
class CursorState:
    """Stored cursor: the position (None = never read: full listing) and the boundary set.

    ``settled``: every record stamped at or before it has been read (rule 5);
    never after ``position``. None: nothing known beyond the overlap rule.
    """

    position: datetime | None = None
    seen: frozenset[Seen] = field(default_factory=frozenset)
    settled: datetime | None = None

    @cached_property
    def seen_keys(self) -> frozenset[tuple[str, str]]:
        """``(id, digest)`` of every seen record: one lookup per re-read record, not a scan."""
        return frozenset((s.id, s.digest) for s in self.seen)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for the store."""
        out: dict[str, Any] = {
            "position": self.position.isoformat() if self.position else None,
            "seen": sorted([s.id, s.digest, s.changed_at.isoformat()] for s in self.seen),
        }
        if self.settled is not None:
            out["settled"] = self.settled.isoformat()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CursorState:
        """Inverse of :meth:`to_json`."""
        position, settled = data.get("position"), data.get("settled")
        return cls(
            position=datetime.fromisoformat(position) if position else None,
            seen=frozenset(
                Seen(str(i), str(d), datetime.fromisoformat(t)) for i, d, t in data.get("seen", ())
            ),
            settled=datetime.fromisoformat(settled) if settled else None,
        )


@dataclass(frozen=True)
class Outcome:
    """What happened to one record read in a run."""

    id: str
    digest: str
    changed_at: datetime | None
    ok: bool


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
"""What ``json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)`` does, without
making an encoder for each record (a fifth of hashing one)."""


def content_hash(data: Mapping[str, Any]) -> str:
    """A stable hash of a record's content (key order does not matter)."""
    return hashlib.sha256(_CANONICAL_JSON(data).encode()).hexdigest()


def read_after(state: CursorState, overlap: timedelta) -> datetime | None:
    """The ``changed_after`` bound for the next read: position minus overlap (None = all),
    but never before the settled time (rule 5)."""
    if state.position is None:
        return None
    bound = state.position - overlap
    if state.settled is not None:
        bound = max(bound, min(state.settled, state.position))
    return bound


def is_duplicate(state: CursorState, record_id: str, digest: str) -> bool:
    """True when this exact content of this record was already handled at the boundary."""
    return (record_id, digest) in state.seen_keys


def advance(
    state: CursorState,
    outcomes: Iterable[Outcome],
    *,
    run_started_at: datetime,
    overlap: timedelta,
    listed_at: datetime | None = None,
) -> CursorState:
    """The cursor after a run, by rules 2-5 of the module docstring.

    New position: the latest ``changed_at`` of a handled record (or the old
    position), capped at ``run_started_at``, and strictly before the earliest
    failed record. ``listed_at`` is PowerOffice's clock when the read began
    (None: unknown); at or past the new position plus ``overlap``, the new
    position is settled. The boundary set keeps handled records (old and new)
    whose time is later than the new position minus ``overlap`` and later
    than the settled time, since only those can be read again.

    The same as :class:`Advance` given the failed outcomes, then the handled ones.
    """
    outcomes = list(outcomes)
    fold = Advance(
        state,
        [o for o in outcomes if not o.ok],
        run_started_at=run_started_at,
        overlap=overlap,
        listed_at=listed_at,
    )
    for outcome in outcomes:
        if outcome.ok:
            fold.add(outcome)
    return fold.result()


class Advance:
    """:func:`advance` a handled record at a time, holding only what the new cursor can need.

    Given the run's failed outcomes up front (they are few: records that wait
    or failed), the handled ones are added as they come, in any order. The
    position can only rise as handled records are added (the caps come from
    the failures, known already), and the boundary set keeps nothing at or
    before the position minus ``overlap``; so a record at or before the
    *running* position minus ``overlap`` is dropped at once. What is held is
    the records within the overlap of the running position (the boundary set
    to be), not the run's listing. :meth:`result` is the new cursor, equal to
    :func:`advance` over the same outcomes.

    ``newest``, when given, is no earlier than any handled record's time (the
    newest record listed). If the position it would give is settled by
    ``listed_at`` (rule 5), so is the real one, and the boundary set keeps
    only records past the position: then a record at or before the running
    position is dropped at once (after a bulk change whose records all lie
    within the overlap, nothing of it is held).
    """

    __slots__ = (
        "_cap",
        "_failed_ids",
        "_listed_at",
        "_newest",
        "_overlap",
        "_settles",
        "_state",
        "_window",
    )

    def __init__(
        self,
        state: CursorState,
        failed: Iterable[Outcome],
        *,
        run_started_at: datetime,
        overlap: timedelta,
        listed_at: datetime | None = None,
        newest: datetime | None = None,
    ) -> None:
        self._state, self._overlap, self._listed_at = state, overlap, listed_at
        failed = list(failed)
        self._failed_ids = frozenset(o.id for o in failed)
        cap = run_started_at
        failed_times = [o.changed_at for o in failed if o.changed_at is not None]
        if failed_times:
            cap = min(cap, min(failed_times) - RESOLUTION)
        if any(o.changed_at is None for o in failed) and state.position is not None:
            # A failure with no time cannot be placed: stay where we were.
            cap = min(cap, state.position)
        self._cap = cap
        self._newest = state.position
        # ``newest``: no handled record is later. When even that position would be
        # settled (rule 5), the boundary set keeps only what lies past the position.
        self._settles = False
        if newest is not None and listed_at is not None:
            bound = newest if state.position is None else max(newest, state.position)
            self._settles = listed_at >= min(bound, cap) + overlap
        # (changed_at, id, digest) of the handled records that may join the boundary set.
        self._window: list[tuple[datetime, str, str]] = []

    @property
    def position(self) -> datetime | None:
        """The position so far (None: nothing handled and none stored); it only rises."""
        return None if self._newest is None else min(self._newest, self._cap)

    @property
    def held(self) -> int:
        """How many handled records are held (those within the overlap of :attr:`position`)."""
        return len(self._window)

    def add(self, outcome: Outcome) -> None:
        """Fold in one handled outcome (a failed one is given up front; untimed ones count
        for nothing)."""
        if not outcome.ok:
            raise ValueError("failed outcomes are given when the fold is made")
        at = outcome.changed_at
        if at is None:
            return
        if self._newest is None or at > self._newest:
            self._newest = at
        floor = min(self._newest, self._cap)
        if not self._settles:
            floor -= self._overlap
        if at > floor:
            heapq.heappush(self._window, (at, outcome.id, outcome.digest))
        while self._window and self._window[0][0] <= floor:
            heapq.heappop(self._window)

    def result(self) -> CursorState:
        """The new cursor (the old one when nothing was handled and none was stored)."""
        state, position = self._state, self.position
        if position is None:
            return state
        settled = settled_at(state.settled, position, self._listed_at, self._overlap)
        horizon = position - self._overlap
        if settled is not None:
            horizon = max(horizon, settled)
        seen = {
            s for s in state.seen if s.changed_at > horizon and s.id not in self._failed_ids
        } | {Seen(i, d, at) for at, i, d in self._window if at > horizon}
        # Records past the new position stay remembered too: they will be read again
        # (held back by the cap or a failure) and must not be handled twice.
        return CursorState(position=position, seen=frozenset(seen), settled=settled)


def settled_at(
    settled: datetime | None,
    position: datetime,
    listed_at: datetime | None,
    overlap: timedelta,
) -> datetime | None:
    """Rule 5: the settled time once the position is ``position`` after a read.

    ``position`` itself when the read began (``listed_at``, PowerOffice's clock)
    at or past ``position + overlap``; else the earlier settled time, never
    after ``position`` (a failure may have held the position back).
    """
    if listed_at is not None and listed_at >= position + overlap:
        return position
    return None if settled is None else min(settled, position)


def format_po_cursor(state: CursorState) -> str:
    """The stored text of a PowerOffice cursor."""
    return json.dumps(state.to_json())


def parse_po_cursor(text: str | None) -> CursorState:
    """Inverse of :func:`format_po_cursor`; nothing stored is the empty cursor (full listing)."""
    if not text:
        return CursorState()
    return CursorState.from_json(json.loads(text))


# -- PMS ------------------------------------------------------------------------

FEED_PREFIX = "seq:"
LISTING_PREFIX = "updated_after:"
_OLD_LISTING_PREFIX = "changed_after:"
"""Read, never written: earlier versions' listing position for connectors without a feed."""


@dataclass(frozen=True)
class FeedPosition:
    """After item ``seq`` of the changes feed."""

    seq: int


@dataclass(frozen=True)
class ListingPosition:
    """Records modified strictly after ``stamp``, a timestamp as the PMS spelt it."""

    stamp: str

    @property
    def at(self) -> datetime | None:
        """The stamp as a time (None when it is not ISO 8601)."""
        return parse_stamp(self.stamp)


PMSPosition = FeedPosition | ListingPosition


def parse_stamp(text: str | None) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` accepted), or None when ``text`` is not one."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_pms_cursor(position: PMSPosition) -> str:
    """The stored text of a PMS position: ``seq:<n>`` or ``updated_after:<stamp>``."""
    if isinstance(position, FeedPosition):
        return f"{FEED_PREFIX}{position.seq}"
    return f"{LISTING_PREFIX}{position.stamp}"


def parse_pms_cursor(text: str | None) -> PMSPosition | None:
    """Inverse of :func:`format_pms_cursor` (older spellings too); None: no position."""
    if not text:
        return None
    if text.startswith(FEED_PREFIX):
        try:
            return FeedPosition(int(text.removeprefix(FEED_PREFIX)))
        except ValueError:
            return None
    for prefix in (LISTING_PREFIX, _OLD_LISTING_PREFIX):
        if text.startswith(prefix) and (stamp := text.removeprefix(prefix)):
            return ListingPosition(stamp)
    return None


def feed_next(after: int, page: FeedPage) -> int:
    """Where to read on after ``page``: its last item's ``seq`` (never before ``after``).

    The PMS's ``last_seq`` is not used: a PMS may mean its last item or the
    feed's head by it, and only the items received are known to be read.
    """
    return max([after, *(item.seq for item in page.items)])


def feed_read_on(after: int, page: FeedPage) -> bool:
    """True when the feed may have more after ``page`` (read from :func:`feed_next`)."""
    return feed_next(after, page) > after and page.has_more is not False


def feed_stuck(after: int, page: FeedPage) -> bool:
    """True when ``page`` says the feed has more but does not move the position past ``after``.

    A PMS that answers so would be read forever; the engine stops with an error instead.
    """
    return page.has_more is True and feed_next(after, page) <= after


def collapse_feed(items: Iterable[FeedItem], resource: str) -> dict[str, FeedItem]:
    """The last item per record id of ``resource``, in the order of those last items."""
    last: dict[str, FeedItem] = {}
    for item in items:
        if item.resource == resource:
            # Re-insert so dict order follows the latest seq.
            last.pop(item.id, None)
            last[item.id] = item
    return last


def listing_next(
    position: ListingPosition | None, stamps: Iterable[str | None]
) -> ListingPosition | None:
    """The position after a listing: the newest stamp listed, kept as spelt; never back.

    Stamps that are not timestamps are ignored; with no newer stamp the position stays.
    """
    newest, newest_at = position, position.at if position is not None else None
    for stamp in stamps:
        at = parse_stamp(stamp)
        if stamp is not None and at is not None and (newest_at is None or at > newest_at):
            newest, newest_at = ListingPosition(stamp), at
    return newest
