"""Pending creates recorded and resolved many at a time (the batched create path of the engine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tolken.store import DuplicatePendingCreate, TenantStore, UnknownRecord, open_store


@pytest.fixture
def store(store_url: str) -> Iterator[TenantStore]:
    with open_store(store_url) as s:
        yield s.for_tenant("t1")


def test_many_pending_creates_are_recorded_and_resolved(store: TenantStore) -> None:
    """A batch of creates is pending after one call and done, with the made ids, after another."""
    store.add_pending_creates("customers", "pms", [("1", "k-1"), ("2", "k-2"), ("3", "k-3")])
    assert [(p.source_id, p.state) for p in store.pending_creates("customers")] == [
        ("1", "pending"),
        ("2", "pending"),
        ("3", "pending"),
    ]
    store.resolve_pending_creates({"k-1": "c-1", "k-3": "c-3"})
    done = store.get_pending_create("k-3")
    assert done is not None
    assert (done.state, done.created_id) == ("done", "c-3")
    assert done.resolved_at is not None
    assert done.resolved_at.utcoffset() is not None  # read back as an aware UTC time
    assert done.resolved_at >= done.created_at
    assert [p.source_id for p in store.pending_creates("customers")] == ["2"]


def test_a_reused_key_records_none_of_the_batch(store: TenantStore) -> None:
    """One key used before refuses the whole batch, so the caller can sort them one by one."""
    store.add_pending_create("customers", "pms", "1", "k-1")
    with pytest.raises(DuplicatePendingCreate):
        store.add_pending_creates("customers", "pms", [("2", "k-2"), ("3", "k-1")])
    assert store.get_pending_create("k-2") is None


def test_resolving_an_unknown_key_is_refused(store: TenantStore) -> None:
    """Resolving a key that was never recorded raises instead of passing silently."""
    store.add_pending_creates("customers", "pms", [("1", "k-1")])
    with pytest.raises(UnknownRecord):
        store.resolve_pending_creates({"k-1": "c-1", "k-404": "c-2"})


def test_bad_side_is_refused(store: TenantStore) -> None:
    """An unknown target system is a programming error, not a silent write."""
    with pytest.raises(ValueError, match="unknown side"):
        store.add_pending_creates("customers", "nowhere", [("1", "k-1")])  # type: ignore[arg-type]


def test_a_reused_key_inside_a_transaction_leaves_it_usable(store: TenantStore) -> None:
    """After a refused batch, the caller's transaction still records and commits the next one."""
    store.add_pending_create("customers", "pms", "1", "k-1")
    with store.transaction():
        with pytest.raises(DuplicatePendingCreate):
            store.add_pending_creates("customers", "pms", [("2", "k-2"), ("3", "k-1")])
        store.add_pending_creates("customers", "pms", [("4", "k-4")])
    assert store.get_pending_create("k-2") is None
    assert [p.source_id for p in store.pending_creates("customers")] == ["1", "4"]


def test_a_reused_key_at_the_end_of_a_large_batch_records_none_of_it(store: TenantStore) -> None:
    """A batch larger than one statement is refused whole too (its last key used before)."""
    store.add_pending_create("customers", "pms", "0", "k-0")
    batch = [(str(n), f"k-{n}") for n in range(1, 1200)] + [("1200", "k-0")]
    with pytest.raises(DuplicatePendingCreate):
        store.add_pending_creates("customers", "pms", batch)
    assert [p.source_id for p in store.pending_creates("customers")] == ["0"]
    store.add_pending_creates("customers", "pms", batch[:-1])
    assert len(store.pending_creates("customers")) == 1200
