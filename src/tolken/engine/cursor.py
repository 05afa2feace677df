"""Change-capture cursor rules (pure): what to read next and how far the cursor may move.

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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

__all__ = [
    "CursorState",
    "Outcome",
    "Seen",
    "advance",
    "content_hash",
    "is_duplicate",
    "read_after",
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
    """Stored cursor: the position (None = never read: full listing) and the boundary set."""

    position: datetime | None = None
    seen: frozenset[Seen] = field(default_factory=frozenset)

    @cached_property
    def seen_keys(self) -> frozenset[tuple[str, str]]:
        """``(id, digest)`` of every seen record: one lookup per re-read record, not a scan."""
        return frozenset((s.id, s.digest) for s in self.seen)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form for the store."""
        return {
            "position": self.position.isoformat() if self.position else None,
            "seen": sorted([s.id, s.digest, s.changed_at.isoformat()] for s in self.seen),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CursorState:
        """Inverse of :meth:`to_json`."""
        position = data.get("position")
        return cls(
            position=datetime.fromisoformat(position) if position else None,
            seen=frozenset(
                Seen(str(i), str(d), datetime.fromisoformat(t)) for i, d, t in data.get("seen", ())
            ),
        )


@dataclass(frozen=True)
class Outcome:
    """What happened to one record read in a run."""

    id: str
    digest: str
    changed_at: datetime | None
    ok: bool


def content_hash(data: Mapping[str, Any]) -> str:
    """A stable hash of a record's content (key order does not matter)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_after(state: CursorState, overlap: timedelta) -> datetime | None:
    """The ``changed_after`` bound for the next read: position minus overlap (None = all)."""
    if state.position is None:
        return None
    return state.position - overlap


def is_duplicate(state: CursorState, record_id: str, digest: str) -> bool:
    """True when this exact content of this record was already handled at the boundary."""
    return (record_id, digest) in state.seen_keys


def advance(
    state: CursorState,
    outcomes: Iterable[Outcome],
    *,
    run_started_at: datetime,
    overlap: timedelta,
) -> CursorState:
    """The cursor after a run, by rules 2-4 of the module docstring.

    New position: the latest ``changed_at`` of a handled record (or the old
    position), capped at ``run_started_at``, and strictly before the earliest
    failed record. The boundary set keeps handled records (old and new) whose
    time is later than the new position minus ``overlap``, since only those can
    be read again.
    """
    outcomes = list(outcomes)
    handled = [o for o in outcomes if o.ok and o.changed_at is not None]
    failed_times = [o.changed_at for o in outcomes if not o.ok and o.changed_at is not None]
    failed_ids = {o.id for o in outcomes if not o.ok}

    candidates = [o.changed_at for o in handled if o.changed_at is not None]
    if state.position is not None:
        candidates.append(state.position)
    if not candidates:
        return state
    position = min(max(candidates), run_started_at)
    if failed_times:
        position = min(position, min(failed_times) - RESOLUTION)
    if any(not o.ok and o.changed_at is None for o in outcomes) and state.position is not None:
        # A failure with no time cannot be placed: stay where we were.
        position = min(position, state.position)

    horizon = position - overlap
    seen = {s for s in state.seen if s.changed_at > horizon and s.id not in failed_ids} | {
        Seen(o.id, o.digest, o.changed_at) for o in handled if o.changed_at is not None
    }
    # Records past the new position stay remembered too: they will be read again
    # (held back by the cap or a failure) and must not be handled twice.
    seen = {s for s in seen if s.changed_at > horizon}
    return CursorState(position=position, seen=frozenset(seen))
