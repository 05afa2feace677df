"""Change capture: what changed on each side since the stored cursors.

PowerOffice: per resource, the pure cursor rules of :mod:`tolken.engine.cursor`
(overlap window, dedupe by ``(id, content hash)``, capped at the run start,
never past a record that must wait or failed). The first run (no cursor) and a
reconcile read the full listing.

PMS: the connector's ``changes_since`` (the changes feed, or ``updated_after``
polling, as ``pms.change_capture`` says). Departments and customers share the
PMS ``customers`` resource, so each resource is read once per cycle and its
cursor saved at the end of the cycle, unless a flow held it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine.cursor import CursorState, Outcome, advance, content_hash
from tolken.engine.cursor import read_after as cursor_read_after
from tolken.store import Store

__all__ = ["PMSCapture", "PowerOfficeCapture", "load_po_cursor", "read_poweroffice"]

_TIME_PREFIX = "changed_after:"


@dataclass
class PowerOfficeCapture:
    """PowerOffice records read for one resource, and the cursor they were read from.

    ``unchanged`` are the listed records the caller's test found equal to what it
    already holds: only their id and time are kept (the cursor and a reconcile's
    delete check need them), not their data, so a full listing of 100,000
    records is not held in memory.
    """

    resource: str
    records: list[RemoteRecord]
    digests: dict[str, str]
    state: CursorState
    full: bool
    unchanged: list[tuple[str, datetime | None]] = field(default_factory=list)

    def listed_ids(self) -> list[str]:
        """The ids of every record read (kept or unchanged), deduplicated ones excepted."""
        return [r.id for r in self.records] + [record_id for record_id, _ in self.unchanged]


def load_po_cursor(store: Store, tenant: str, resource: str) -> CursorState:
    """The stored PowerOffice cursor of ``resource`` (empty before the first run)."""
    raw = store.get_cursor(tenant, "poweroffice", resource)
    if not raw:
        return CursorState()
    return CursorState.from_json(json.loads(raw))


def read_poweroffice(
    connector: Connector,
    store: Store,
    tenant: str,
    resource: str,
    *,
    overlap: timedelta,
    full: bool,
    unchanged: Callable[[str, str], bool] | None = None,
) -> PowerOfficeCapture:
    """Read changed records (all records when ``full`` or before the first run), deduplicated.

    ``unchanged(id, content_hash)`` true: the record is set aside without its data
    (:attr:`PowerOfficeCapture.unchanged`).
    """
    state = load_po_cursor(store, tenant, resource)
    since = None if full else cursor_read_after(state, overlap)
    records: list[RemoteRecord] = []
    digests: dict[str, str] = {}
    same: list[tuple[str, datetime | None]] = []
    # The same test as cursor.is_duplicate, as one set lookup per record (the overlap
    # after a bulk change re-reads thousands of records).
    handled = {(seen.id, seen.digest) for seen in state.seen} if not full else set()
    for record in connector.list(resource, changed_after=since):
        digest = content_hash(record.data)
        if (record.id, digest) in handled:
            continue
        digests[record.id] = digest
        if unchanged is not None and unchanged(record.id, digest):
            same.append((record.id, record.changed_at))
        else:
            records.append(record)
    return PowerOfficeCapture(resource, records, digests, state, full or since is None, same)


def save_po_cursor(
    store: Store,
    tenant: str,
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
    state = advance(capture.state, outcomes, run_started_at=run_started_at, overlap=overlap)
    if state != capture.state:
        store.set_cursor(tenant, "poweroffice", capture.resource, json.dumps(state.to_json()))


@dataclass
class PMSCapture:
    """The PMS changes of one cycle, read once per resource and shared by the flows."""

    connector: Connector
    store: Store
    tenant: str
    _batches: dict[str, tuple[list[RemoteRecord], str | None]] = field(default_factory=dict)
    _listings: dict[str, list[RemoteRecord]] = field(default_factory=dict)
    _held: set[str] = field(default_factory=set)

    def changes(self, resource: str) -> list[RemoteRecord]:
        """Records (and tombstones) of ``resource`` changed since the stored cursor."""
        if resource not in self._batches:
            cursor = self.store.get_cursor(self.tenant, "pms", resource)
            changes_since: Any = getattr(self.connector, "changes_since", None)
            if changes_since is not None:
                batch = changes_since(resource, cursor)
                records, next_cursor = list(batch.records), str(batch.cursor)
            else:
                records, next_cursor = self._poll(resource, cursor)
            if cursor is None:
                # A first read is a full listing: keep it as the candidate pool too.
                self._listings[resource] = [r for r in records if not r.deleted]
            self._batches[resource] = (records, next_cursor or None)
        return self._batches[resource][0]

    def _poll(self, resource: str, cursor: str | None) -> tuple[list[RemoteRecord], str]:
        # A connector without a changes feed: list by modification time.
        after = None
        if cursor and cursor.startswith(_TIME_PREFIX):
            after = datetime.fromisoformat(cursor.removeprefix(_TIME_PREFIX))
        records = list(self.connector.list(resource, changed_after=after))
        stamps = [r.changed_at for r in records if r.changed_at is not None]
        newest = max(stamps) if stamps else after
        return records, f"{_TIME_PREFIX}{newest.isoformat()}" if newest else ""

    def listing(self, resource: str) -> list[RemoteRecord]:
        """Every record of ``resource`` (read at most once per cycle)."""
        if resource not in self._listings:
            self._listings[resource] = list(self.connector.list(resource))
        return self._listings[resource]

    def hold(self, resource: str) -> None:
        """Do not move ``resource``'s cursor this cycle (a record could not be handled)."""
        self._held.add(resource)

    def commit(self) -> None:
        """Save the cursors of the resources read this cycle and not held."""
        for resource, (_records, cursor) in self._batches.items():
            if cursor and resource not in self._held:
                self.store.set_cursor(self.tenant, "pms", resource, cursor)
