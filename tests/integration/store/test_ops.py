"""Cursors, pending creates, failures, conflicts and runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tolken.errors import FieldError, NotFound, ValidationFailed
from tolken.store import (
    DuplicatePendingCreate,
    OpenWork,
    Store,
    TenantStore,
    UnknownRecord,
    open_store,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(store_url: str, clock: FakeClock) -> Iterator[Store]:
    with open_store(store_url, clock=clock) as s:
        yield s


@pytest.fixture
def store(db: Store) -> TenantStore:
    return db.for_tenant("acme")


@pytest.fixture
def other(db: Store) -> TenantStore:
    return db.for_tenant("other")


# -- cursors -------------------------------------------------------------------


def test_cursor_is_stored_replaced_and_kept_per_tenant(
    store: TenantStore, other: TenantStore
) -> None:
    """A cursor starts empty, keeps the last value set, and belongs to one tenant."""
    assert store.get_cursor("poweroffice", "Customers") is None
    store.set_cursor("poweroffice", "Customers", "2026-03-01T11:58:00+00:00")
    store.set_cursor("poweroffice", "Customers", "2026-03-01T12:00:00+00:00")
    store.set_cursor("pms", "changes", "42")
    other.set_cursor("pms", "changes", "7")
    assert store.get_cursor("poweroffice", "Customers") == "2026-03-01T12:00:00+00:00"
    assert store.cursors() == {
        ("poweroffice", "Customers"): "2026-03-01T12:00:00+00:00",
        ("pms", "changes"): "42",
    }
    assert other.get_cursor("pms", "changes") == "7"


def test_cursor_set_in_a_rolled_back_transaction_is_not_kept(store: TenantStore) -> None:
    """A cursor moves only when the work it covers is committed."""
    store.set_cursor("pms", "changes", "10")

    def advance_then_crash() -> None:
        with store.transaction():
            store.set_cursor("pms", "changes", "11")
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        advance_then_crash()
    assert store.get_cursor("pms", "changes") == "10"


# -- pending creates ---------------------------------------------------------------

CRASHING_WORKER = textwrap.dedent(
    """
    import os, sys
    from tolken.store import open_store
    store = open_store(sys.argv[1]).for_tenant("acme")
    pending = store.add_pending_create("customers", "pms", "10001", "key-10001")
    print(pending.idempotency_key, flush=True)
    os._exit(9)  # killed while the POST is in flight: no close, no cleanup
    """
)


def test_pending_create_survives_a_crash(store_url: str) -> None:
    """A create recorded before a crash is found by a new process by its idempotency key."""
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_WORKER, store_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 9, done.stderr
    assert done.stdout.strip() == "key-10001"
    with open_store(store_url) as db:
        store = db.for_tenant("acme")
        [pending] = store.pending_creates()
        assert pending.idempotency_key == "key-10001"
        assert (pending.flow, pending.target, pending.source_id) == ("customers", "pms", "10001")
        assert store.pending_create_for("customers", "pms", "10001") == pending
        resolved = store.resolve_pending_create("key-10001", "c-77")
        assert resolved.state == "done"
        assert resolved.created_id == "c-77"
        assert store.pending_creates() == []
        assert store.get_pending_create("key-10001") == resolved


def test_one_pending_create_per_source_record(store: TenantStore, other: TenantStore) -> None:
    """A second create for a record still pending is refused; after it resolves, allowed."""
    first = store.add_pending_create("projects", "pms", "55")
    assert first.idempotency_key.startswith("tolken-")
    with pytest.raises(DuplicatePendingCreate):
        store.add_pending_create("projects", "pms", "55")
    with pytest.raises(DuplicatePendingCreate):
        store.add_pending_create("projects", "pms", "56", first.idempotency_key)
    store.add_pending_create("projects", "poweroffice", "55")
    other.add_pending_create("projects", "pms", "55")
    store.abandon_pending_create(first.idempotency_key)
    again = store.add_pending_create("projects", "pms", "55")
    assert again.idempotency_key != first.idempotency_key
    assert [p.target for p in store.pending_creates("projects")] == ["poweroffice", "pms"]
    with pytest.raises(UnknownRecord):
        store.resolve_pending_create("no-such-key", "x")


def test_open_work_names_the_flows_with_pending_creates_and_open_failures(
    store: TenantStore, other: TenantStore
) -> None:
    """One query says which flows have creates still pending and which have open failures;
    done or abandoned creates, resolved failures and another tenant's rows count for nothing."""
    assert store.open_work() == OpenWork()
    done = store.add_pending_create("customers", "pms", "1")
    store.resolve_pending_create(done.idempotency_key, "c-1")
    abandoned = store.add_pending_create("departments", "pms", "2")
    store.abandon_pending_create(abandoned.idempotency_key)
    store.record_failure("departments", "pms", "d-1", "NotFound", "gone")
    store.resolve_failure("departments", "pms", "d-1")
    other.add_pending_create("departments", "pms", "3")
    other.record_failure("customers", "pms", "c-9", "NotFound", "gone")
    assert store.open_work() == OpenWork()
    store.add_pending_create("projects", "pms", "55")
    store.add_pending_create("projects", "poweroffice", "56")
    store.record_failure("customers", "poweroffice", "1", "ValidationFailed", "bad")
    store.record_failure("projects", "pms", "p-1", "NotFound", "gone")
    assert store.open_work() == OpenWork(
        pending_creates=frozenset({"projects"}), failures=frozenset({"customers", "projects"})
    )


# -- failures ----------------------------------------------------------------------


def test_failures_back_off_and_come_due_in_order(
    store: TenantStore, other: TenantStore, clock: FakeClock
) -> None:
    """A parked record waits longer after each failure; due ones come longest-waiting first."""
    a = store.record_failure("customers", "poweroffice", "1", "ValidationFailed", "bad")
    assert a.attempts == 1
    assert a.next_attempt_at == T0 + timedelta(seconds=60)
    clock.advance(10)
    store.record_failure("projects", "poweroffice", "9", "NotFound", "customer 3 missing")
    clock.advance(60)
    a = store.record_failure("customers", "poweroffice", "1", "ValidationFailed", "bad 2")
    assert a.attempts == 2
    assert a.message == "bad 2"
    assert a.first_seen == T0
    assert a.next_attempt_at == clock.now + timedelta(seconds=120)
    a = store.record_failure("customers", "poweroffice", "1", "ValidationFailed", "bad 3")
    assert a.next_attempt_at == clock.now + timedelta(seconds=240)
    assert len(store.list_failures()) == 2

    assert [f.record_id for f in store.due_failures()] == ["9"]
    clock.advance(240)
    assert [f.record_id for f in store.due_failures()] == ["9", "1"]
    assert [f.record_id for f in store.due_failures("customers")] == ["1"]
    assert other.due_failures() == []


def test_backoff_is_capped(store: TenantStore) -> None:
    """However often a record fails, the next attempt is at most the cap away."""
    for _ in range(30):
        failure = store.record_failure(
            "customers", "pms", "c-1", "ServerError", "boom", retry_max_seconds=3600
        )
    assert failure.attempts == 30
    assert failure.next_attempt_at == T0 + timedelta(hours=1)


def test_resolved_failure_leaves_the_list_and_a_new_one_starts_over(store: TenantStore) -> None:
    """A record that syncs again is no longer listed; failing later counts from one."""
    store.record_failure("customers", "pms", "c-1", "NotFound", "gone")
    store.record_failure("customers", "pms", "c-1", "NotFound", "gone")
    assert store.resolve_failure("customers", "pms", "c-1") is True
    assert store.resolve_failure("customers", "pms", "c-1") is False
    assert store.list_failures() == []
    assert len(store.list_failures(include_resolved=True)) == 1
    again = store.record_failure("customers", "pms", "c-1", "NotFound", "gone")
    assert again.attempts == 1


@pytest.mark.usefixtures("clock")  # the store reads the fake time
def test_retry_now_makes_parked_records_due(store: TenantStore) -> None:
    """``tolken retry`` makes every parked record (or the chosen ones) due at once."""
    a = store.record_failure("customers", "pms", "c-1", "NotFound", "gone")
    store.record_failure("customers", "pms", "c-2", "NotFound", "gone")
    assert store.due_failures() == []
    assert store.retry_failures_now([a.id]) == 1
    assert [f.record_id for f in store.due_failures()] == ["c-1"]
    assert store.retry_failures_now() == 2
    assert len(store.due_failures()) == 2


def test_record_error_keeps_the_remote_message_verbatim(store: TenantStore) -> None:
    """A parked error keeps its class, status, message and field errors word for word."""
    error = ValidationFailed(
        "Organisasjonsnummeret er ugyldig",
        system="poweroffice",
        status=400,
        field_errors=[FieldError("OrganizationNumber", "må være 9 siffer")],
    )
    failure = store.record_error("customers", "poweroffice", "10001", error)
    assert failure.error_class == "ValidationFailed"
    assert failure.message == "Organisasjonsnummeret er ugyldig"
    assert failure.status == 400
    assert failure.details is not None
    assert failure.details["field_errors"] == [
        {"field": "OrganizationNumber", "message": "må være 9 siffer"}
    ]
    plain = store.record_error("projects", "pms", "p-1", NotFound("no such customer"))
    assert plain.details is None


# -- conflicts -----------------------------------------------------------------------


def test_conflicts_keep_both_values_and_manual_ones_wait(
    store: TenantStore, clock: FakeClock
) -> None:
    """Every conflict keeps both sides and the shadow; parked ones wait for a person."""
    link = store.create_link("customers", "1", "c-1")
    run_id = store.start_run()
    won = store.record_conflict(
        "customers",
        link.id,
        "email",
        poweroffice_value="po@acme.no",
        pms_value="pms@acme.no",
        shadow_value="old@acme.no",
        policy="newest-wins",
        winner="pms",
        run_id=run_id,
    )
    assert won.resolved
    clock.advance(1)
    parked = store.record_conflict(
        "customers",
        link.id,
        "address.city",
        poweroffice_value="Oslo",
        pms_value=None,
        shadow_value={"nested": [1, 2]},
        policy="manual",
        winner="parked",
    )
    assert not parked.resolved
    assert parked.pms_value is None
    assert parked.shadow_value == {"nested": [1, 2]}
    assert [c.field for c in store.list_conflicts()] == ["address.city", "email"]
    assert store.list_conflicts(parked_only=True) == [parked]
    assert store.list_conflicts(link_id=link.id + 1) == []
    assert store.flow_counts()["customers"].parked_conflicts == 1

    settled = store.resolve_conflict(parked.id, "poweroffice")
    assert (settled.winner, settled.resolved) == ("poweroffice", True)
    assert store.list_conflicts(parked_only=True) == []
    with pytest.raises(ValueError, match="settled for"):
        store.resolve_conflict(parked.id, "parked")  # type: ignore[arg-type]


# -- runs and the dashboard -------------------------------------------------------------


def test_runs_are_listed_newest_first_with_counts(
    store: TenantStore, other: TenantStore, clock: FakeClock
) -> None:
    """A finished run keeps its status, per-flow counts and requests per system."""
    first = store.start_run()
    store.finish_run(first, "failed", counts={}, requests={"poweroffice": 1}, error="bad key")
    clock.advance(60)
    second = store.start_run()
    running = store.get_run(second)
    assert running is not None
    assert running.status == "running"
    assert running.finished_at is None
    clock.advance(5)
    counts = {"customers": {"created": 2, "linked": 1, "updated": 0, "conflicts": 0}}
    run = store.finish_run(second, "ok", counts=counts, requests={"poweroffice": 4, "pms": 9})
    assert run.counts == counts
    assert run.requests == {"poweroffice": 4, "pms": 9}
    assert run.finished_at == T0 + timedelta(seconds=65)
    assert [r.id for r in store.last_runs()] == [second, first]
    assert store.last_runs(limit=1)[0].status == "ok"
    assert other.last_runs() == []
    with pytest.raises(UnknownRecord):
        store.finish_run(999_999, "ok", counts={}, requests={})


def test_flow_counts_summarise_each_flow(store: TenantStore, other: TenantStore) -> None:
    """The dashboard counts links by state, open failures and pending creates per flow."""
    store.create_links("customers", [("1", "a"), ("2", "b")])
    link = store.create_link("departments", "d", "dep")
    store.set_link_state(link.id, "pms-deleted")
    store.record_failure("projects", "poweroffice", "9", "NotFound", "missing customer")
    store.add_pending_create("customers", "pms", "3")
    other.create_link("customers", "1", "a")
    counts = store.flow_counts()
    assert set(counts) == {"customers", "departments", "projects"}
    assert counts["customers"].links == {"active": 2}
    assert counts["customers"].active_links == 2
    assert counts["customers"].pending_creates == 1
    assert counts["departments"].links == {"pms-deleted": 1}
    assert counts["projects"].open_failures == 1
    assert counts["projects"].links == {}
