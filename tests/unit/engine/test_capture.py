"""PowerOffice change capture in the executor: full first read, overlap dedupe, waits hold it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tolken.connectors.base import RemoteRecord
from tolken.engine.capture import load_po_cursor, read_poweroffice, save_po_cursor
from tolken.store import Store, open_store

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
        self, resource: str, *, changed_after: datetime | None = None
    ) -> Iterator[RemoteRecord]:
        self.reads.append(changed_after)
        for record in sorted(self.records.values(), key=lambda r: r.changed_at or T0):
            if changed_after is None or (record.changed_at and record.changed_at > changed_after):
                yield record


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'tolken.db'}") as opened:
        yield opened


def _read(po: FakePowerOffice, store: Store, full: bool = False) -> list[str]:
    capture = read_poweroffice(po, store, "t", "Customers", overlap=OVERLAP, full=full)  # type: ignore[arg-type]
    return [r.id for r in capture.records]


def _cycle(
    po: FakePowerOffice, store: Store, now: datetime, held: frozenset[str] = frozenset()
) -> list[str]:
    capture = read_poweroffice(po, store, "t", "Customers", overlap=OVERLAP, full=False)  # type: ignore[arg-type]
    save_po_cursor(store, "t", capture, held, run_started_at=now, overlap=OVERLAP)
    return [r.id for r in capture.records]


def test_the_first_read_is_a_full_listing_and_later_reads_are_incremental(store: Store) -> None:
    """No cursor: everything; then only what changed, from the cursor minus the overlap."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    po.put("2", "B", T0 + timedelta(minutes=10))
    assert _cycle(po, store, T0 + timedelta(hours=1)) == ["1", "2"]
    assert po.reads == [None]
    po.put("3", "C", T0 + timedelta(minutes=30))
    assert _cycle(po, store, T0 + timedelta(hours=2)) == ["3"]
    assert po.reads[-1] == T0 + timedelta(minutes=10) - OVERLAP


def test_records_re_read_in_the_overlap_are_skipped_unless_they_changed(store: Store) -> None:
    """The overlap re-reads a record; the same content is skipped, new content is not."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    _cycle(po, store, T0 + timedelta(hours=1))
    assert _cycle(po, store, T0 + timedelta(hours=1)) == []
    po.put("1", "A2", T0 + timedelta(seconds=30))  # a late write inside the overlap window
    assert _cycle(po, store, T0 + timedelta(hours=1)) == ["1"]


def test_a_waiting_record_holds_the_cursor_so_it_is_read_again(store: Store) -> None:
    """A project that waits for its customer's link is read again by the next cycle."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    po.put("2", "waits", T0 + timedelta(minutes=5))
    po.put("3", "C", T0 + timedelta(minutes=10))
    _cycle(po, store, T0 + timedelta(hours=1), held=frozenset({"2"}))
    assert load_po_cursor(store, "t", "Customers").position < T0 + timedelta(minutes=5)
    assert _cycle(po, store, T0 + timedelta(hours=1)) == ["2"]


def test_the_cursor_never_passes_the_run_start(store: Store) -> None:
    """A record stamped after the run started (clock skew) is read again next time."""
    po = FakePowerOffice()
    po.put("1", "A", T0 + timedelta(minutes=5))
    _cycle(po, store, T0)
    assert load_po_cursor(store, "t", "Customers").position == T0


def test_a_reconcile_reads_everything_again(store: Store) -> None:
    """A full read ignores the cursor and the dedupe set."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    _cycle(po, store, T0 + timedelta(hours=1))
    assert _read(po, store, full=True) == ["1"]


def test_records_the_caller_holds_unchanged_are_set_aside_without_their_data(
    store: Store,
) -> None:
    """An unchanged record is not handed on, yet still counts as listed and moves the cursor."""
    po = FakePowerOffice()
    po.put("1", "A", T0)
    po.put("2", "B", T0 + timedelta(minutes=10))
    capture = read_poweroffice(
        po,  # type: ignore[arg-type]
        store,
        "t",
        "Customers",
        overlap=OVERLAP,
        full=True,
        unchanged=lambda record_id, _digest: record_id == "2",
    )
    assert [r.id for r in capture.records] == ["1"]
    assert capture.unchanged == [("2", T0 + timedelta(minutes=10))]
    assert sorted(capture.listed_ids()) == ["1", "2"]
    now = T0 + timedelta(hours=1)
    save_po_cursor(store, "t", capture, (), run_started_at=now, overlap=OVERLAP)
    assert load_po_cursor(store, "t", "Customers").position == T0 + timedelta(minutes=10)
