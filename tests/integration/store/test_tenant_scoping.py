"""Two tenants on one store: every read and write of a tenant's view stays inside that tenant.

The guard tests below fail when a public method is added to :class:`TenantStore`
without a cross-tenant check here, or to :class:`Store` (which reads and writes
no tenant's rows) without being added to its short list on purpose.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tolken.errors import NotFound
from tolken.store import (
    AlreadySettled,
    ConflictRecord,
    Failure,
    HistoryEntry,
    Link,
    NewLink,
    OpenWork,
    Shadow,
    Store,
    TenantStore,
    UnknownRecord,
    open_store,
)

LATER = datetime(2999, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


@dataclass(frozen=True)
class Seeded:
    """One of every row, all of tenant ``alpha``."""

    link: Link
    failure: Failure
    parked: ConflictRecord
    run_id: int


def seed(alpha: TenantStore) -> Seeded:
    link = alpha.create_link("customers", "10001", "c-1")
    alpha.save_shadow(link.id, Shadow({"name": "Acme"}, pms_hash="h"))
    alpha.add_history(link.id, "to_pms", "create", {"name": "Acme"}, "new in poweroffice")
    failure = alpha.record_failure("customers", "poweroffice", "10002", "ValidationFailed", "bad")
    parked = alpha.record_conflict(
        "customers",
        link.id,
        "phone",
        poweroffice_value="1",
        pms_value="2",
        shadow_value=None,
        policy="manual",
        winner="parked",
    )
    run_id = alpha.start_run()
    alpha.set_cursor("pms", "customers", "seq:5")
    alpha.add_pending_create("projects", "pms", "55", "key-55")
    alpha.remember_delivery("sig-1", 1_000, 0)
    return Seeded(link, failure, parked, run_id)


def snapshot(alpha: TenantStore, s: Seeded) -> tuple[Any, ...]:
    """Everything of alpha's, as its own view reads it."""
    return (
        alpha.list_links(),
        alpha.load_shadows([s.link.id]),
        alpha.history_for_link(s.link.id),
        alpha.list_failures(include_resolved=True),
        alpha.list_conflicts(),
        alpha.last_runs(),
        alpha.cursors(),
        alpha.pending_creates(),
        alpha.get_pending_create("key-55"),
        alpha.flow_counts(),
        len(alpha.load_flow_state("customers")),
        alpha.remember_delivery("sig-1", 1_000, 0),  # False while alpha keeps it (a replay)
    )


REFUSED = "raises UnknownRecord"
OWN = "the caller's own tenant"
SETTLE: dict[str, Any] = {"counts": {}, "requests": {}, "error": "not mine"}
PARKED: dict[str, Any] = {
    "poweroffice_value": "a",
    "pms_value": "b",
    "shadow_value": None,
    "policy": "manual",
}

Call = Callable[[TenantStore, Seeded], object]

# What each public method of another tenant's view gives for alpha's ids and records:
# reads find nothing, by-id writes are refused (not found), new rows are the caller's own.
CHECKS: dict[str, tuple[Call, object]] = {
    # links
    "create_link": (lambda b, s: b.create_link("customers", "10001", "c-1").tenant, OWN),
    "create_links": (lambda b, s: b.create_links("customers", [("10001", "c-1")])[0].tenant, OWN),
    "create_links_with_history": (
        lambda b, s: (
            b.create_links_with_history(
                "customers",
                [NewLink("10001", "c-1", Shadow({"name": "X"}), "to_pms", "link", {}, "x")],
            )[0].tenant
        ),
        OWN,
    ),
    "get_link": (lambda b, s: b.get_link(s.link.id), None),
    "get_link_by_po": (lambda b, s: b.get_link_by_po("customers", "10001"), None),
    "get_link_by_pms": (lambda b, s: b.get_link_by_pms("customers", "c-1"), None),
    "get_link_by_pms_resource": (lambda b, s: b.get_link_by_pms_resource("customers", "c-1"), None),
    "links_by_po": (lambda b, s: b.links_by_po("customers", ["10001"]), {}),
    "links_by_pms": (lambda b, s: b.links_by_pms("customers", ["c-1"]), {}),
    "links_by_pms_resource": (lambda b, s: b.links_by_pms_resource("customers", ["c-1"]), {}),
    "list_links": (lambda b, s: b.list_links(), []),
    "set_link_state": (lambda b, s: b.set_link_state(s.link.id, "pms-deleted"), REFUSED),
    "delete_link": (lambda b, s: b.delete_link(s.link.id), REFUSED),
    "link_counts": (lambda b, s: b.link_counts(), {}),
    "load_flow_state": (lambda b, s: len(b.load_flow_state("customers")), 0),
    "link_map": (lambda b, s: b.link_map("customers"), {}),
    # shadows and history
    "load_shadow": (lambda b, s: b.load_shadow(s.link.id), None),
    "load_shadows": (lambda b, s: b.load_shadows([s.link.id]), {}),
    "save_shadow": (lambda b, s: b.save_shadow(s.link.id, Shadow({"name": "X"})), REFUSED),
    "save_shadows": (lambda b, s: b.save_shadows({s.link.id: Shadow({"name": "X"})}), REFUSED),
    "add_history": (
        lambda b, s: b.add_history(s.link.id, "to_pms", "update", {}, "not mine"),
        REFUSED,
    ),
    "add_history_many": (
        lambda b, s: b.add_history_many([HistoryEntry(s.link.id, "to_pms", "update", {}, "x")]),
        REFUSED,
    ),
    "history_for_link": (lambda b, s: b.history_for_link(s.link.id), []),
    "recent_history": (lambda b, s: b.recent_history(), []),
    # failures: the same record parked by another tenant is a failure of its own
    "record_failure": (
        lambda b, s: b.record_failure("customers", "poweroffice", "10002", "E", "x").attempts,
        1,
    ),
    "record_error": (
        lambda b, s: b.record_error("customers", "poweroffice", "10002", NotFound("x")).attempts,
        1,
    ),
    "resolve_failure": (lambda b, s: b.resolve_failure("customers", "poweroffice", "10002"), False),
    "due_failures": (lambda b, s: b.due_failures(now=LATER), []),
    "list_failures": (lambda b, s: b.list_failures(include_resolved=True), []),
    "retry_failures_now": (
        lambda b, s: (b.retry_failures_now([s.failure.id]), b.retry_failures_now()),
        (0, 0),
    ),
    # conflicts
    "record_conflict": (
        lambda b, s: b.record_conflict("customers", s.link.id, "x", **PARKED, winner="parked"),
        REFUSED,
    ),
    "list_conflicts": (
        lambda b, s: (b.list_conflicts(), b.list_conflicts(link_id=s.link.id)),
        ([], []),
    ),
    "resolve_conflict": (lambda b, s: b.resolve_conflict(s.parked.id, "pms"), REFUSED),
    "flow_counts": (lambda b, s: b.flow_counts(), {}),
    # cursors
    "get_cursor": (lambda b, s: b.get_cursor("pms", "customers"), None),
    "set_cursor": (
        lambda b, s: (b.set_cursor("pms", "customers", "seq:9"), b.cursors())[1],  # type: ignore[func-returns-value]
        {("pms", "customers"): "seq:9"},
    ),
    "cursors": (lambda b, s: b.cursors(), {}),
    # pending creates (alpha's is for project 55, key "key-55")
    "add_pending_create": (
        lambda b, s: b.add_pending_create("projects", "pms", "55", f"key-{b.tenant}").tenant,
        OWN,
    ),
    "add_pending_creates": (
        lambda b, s: (
            b.add_pending_creates("projects", "pms", [("55", f"key-{b.tenant}")]),  # type: ignore[func-returns-value]
            b.pending_creates()[0].tenant,
        )[1],
        OWN,
    ),
    "get_pending_create": (lambda b, s: b.get_pending_create("key-55"), None),
    "pending_create_for": (lambda b, s: b.pending_create_for("projects", "pms", "55"), None),
    "pending_creates": (lambda b, s: b.pending_creates(), []),
    "open_work": (lambda b, s: b.open_work(), OpenWork()),
    "resolve_pending_create": (lambda b, s: b.resolve_pending_create("key-55", "p-1"), REFUSED),
    # A driver without per-row counts of a batch (psycopg) cannot say; alpha's row stays as it is.
    "resolve_pending_creates": (
        lambda b, s: _refused_or_none(lambda: b.resolve_pending_creates({"key-55": "p-1"})),
        None,
    ),
    "abandon_pending_create": (lambda b, s: b.abandon_pending_create("key-55"), REFUSED),
    # runs
    "start_run": (lambda b, s: b.get_run(b.start_run()).tenant, OWN),  # type: ignore[union-attr]
    "finish_run": (lambda b, s: b.finish_run(s.run_id, "failed", **SETTLE), REFUSED),
    "get_run": (lambda b, s: b.get_run(s.run_id), None),
    "last_runs": (lambda b, s: b.last_runs(), []),
    # webhook deliveries: alpha's is no replay for another tenant, nor pruned or forgotten by it
    "remember_delivery": (lambda b, s: b.remember_delivery("sig-1", 1_000, 5_000), True),
    "forget_delivery": (lambda b, s: b.forget_delivery("sig-1"), None),
}


def _refused_or_none(call: Callable[[], object]) -> None:
    with contextlib.suppress(UnknownRecord):
        call()


def _answer(call: Call, other: TenantStore, seeded: Seeded) -> object:
    try:
        return call(other, seeded)
    except UnknownRecord:
        return REFUSED


# Public members that are not about any tenant's rows.
NOT_TENANT_DATA = {"now", "transaction", "in_transaction"}

# The shared store: connections, transactions, the clock, closing, and the list of tenants.
STORE_MEMBERS = {
    "close",
    "dialect",
    "engine",
    "for_tenant",
    "in_transaction",
    "now",
    "tenant_registry",  # the fleet's tenants: the one cross-tenant table
    "job_run_log",  # the fleet's job runs, every tenant's (worker, dashboard, metrics)
    "fleet_view",  # every tenant's counts, read-only (the fleet's tenants page, metrics)
    "tenants",
    "transaction",
}


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_every_public_method_of_a_tenant_view_has_a_cross_tenant_check() -> None:
    """A new TenantStore method cannot ship without a check that it stays inside its tenant."""
    assert _public(TenantStore) == set(CHECKS) | NOT_TENANT_DATA


def test_no_method_of_a_tenant_view_takes_a_tenant() -> None:
    """The tenant comes from the view only, so no caller can pass (or forget) another one."""
    for name in _public(TenantStore):
        member = getattr(TenantStore, name)
        if callable(member):
            assert "tenant" not in inspect.signature(member).parameters, name


def test_the_shared_store_reads_and_writes_no_tenants_rows() -> None:
    """The unscoped Store offers only cross-tenant members; tenant rows need for_tenant()."""
    assert _public(Store) == STORE_MEMBERS


def test_another_tenants_view_finds_and_changes_nothing_of_this_tenant(db: Store) -> None:
    """Each method of tenant beta's view, given alpha's ids, finds nothing and changes nothing."""
    alpha = db.for_tenant("alpha")
    seeded = seed(alpha)
    before = snapshot(alpha, seeded)
    for name, (call, want) in CHECKS.items():
        other = db.for_tenant(f"beta-{name}")  # a fresh tenant per check: checks stay apart
        expected = other.tenant if want is OWN else want
        assert _answer(call, other, seeded) == expected, name
        assert snapshot(alpha, seeded) == before, f"{name} changed alpha's rows"


def test_settling_a_settled_conflict_changes_nothing(db: Store) -> None:
    """A conflict settled once refuses a second settle with AlreadySettled, keeping its winner."""
    alpha = db.for_tenant("alpha")
    seeded = seed(alpha)
    settled = alpha.resolve_conflict(seeded.parked.id, "poweroffice")
    assert (settled.winner, settled.resolved) == ("poweroffice", True)
    with pytest.raises(AlreadySettled) as info:
        alpha.resolve_conflict(seeded.parked.id, "pms")
    assert info.value.conflict == settled
    assert alpha.list_conflicts() == [settled]
    with pytest.raises(UnknownRecord):
        alpha.resolve_conflict(999_999, "pms")


def test_one_tenant_view_per_tenant_sharing_the_store_transaction(db: Store) -> None:
    """Views of two tenants join one transaction of their store: rolled back together."""
    alpha, beta = db.for_tenant("alpha"), db.for_tenant("beta")
    assert db.for_tenant("alpha") is alpha

    def link_both_then_crash() -> None:
        with db.transaction():
            alpha.create_link("customers", "1", "a")
            beta.create_link("customers", "1", "a")
            assert alpha.in_transaction
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        link_both_then_crash()
    assert alpha.list_links() == beta.list_links() == []
    assert db.tenants() == []
