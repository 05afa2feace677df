"""Pure parts of the store: flow state lookups, timestamp decoding, retry backoff."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tolken.store import FLOW_PMS_RESOURCE, FlowState, Link, Shadow
from tolken.store._flowstate import Key, compact_row, to_utc
from tolken.store._issues import retry_delay

T0 = datetime(2026, 5, 17, 10, 0, tzinfo=UTC)


def row(
    link_id: int, po: str, pms: str, shadow: dict[str, object] | None = None
) -> tuple[object, ...]:
    """A raw row as load_flow_state gets it from SQLite: text timestamps and JSON."""
    link = (
        link_id,
        "acme",
        "customers",
        po,
        pms,
        "active",
        "2026-05-17 10:00:00.000000",
        "2026-05-17 10:00:00.000000",
    )
    if shadow is None:
        return (*link, None, None, None, None, None, None, None)
    return (
        *link,
        json.dumps(shadow),
        None,
        f"po-{po}",
        "2026-05-17 09:00:00",
        3,
        f"pms-{pms}",
        None,
    )


def test_flow_state_finds_links_by_either_id() -> None:
    """Links are found by PowerOffice id, PMS id and link id; unknown ids give None."""
    state = FlowState("acme", "customers", [row(1, "10001", "c-1"), row(2, "10002", "c-2")])
    link = state.by_po("10002")
    assert link == Link(2, "acme", "customers", "10002", "c-2", "active", T0, T0)
    assert state.by_pms("c-2") is link
    assert state.get(2) is link
    assert state.by_po("nope") is None
    assert state.get(99) is None
    assert 1 in state
    assert len(state) == 2
    assert state.has_links()
    assert not FlowState("acme", "customers", []).has_links()
    assert set(state.poweroffice_ids()) == {"10001", "10002"}
    assert set(state.pms_ids()) == {"c-1", "c-2"}
    assert state.pms_id_for("10001") == "c-1"
    assert state.poweroffice_id_for("c-1") == "10001"
    assert state.pms_id_for("x") is None
    assert state.state_of(1) == "active"


def test_flow_state_decodes_shadows_only_when_asked() -> None:
    """Hashes are read without decoding; a shadow decodes to fields and aware timestamps."""
    state = FlowState("acme", "customers", [row(1, "1", "a", {"name": "Å"}), row(2, "2", "b")])
    assert state.hashes(1) == ("po-1", "pms-a")
    assert state.hashes(2) == (None, None)
    assert state.shadow(2) is None
    shadow = state.shadow(1)
    assert shadow == Shadow(
        {"name": "Å"},
        poweroffice_version=None,
        poweroffice_hash="po-1",
        poweroffice_changed_at=T0 - timedelta(hours=1),
        pms_version=3,
        pms_hash="pms-a",
        pms_changed_at=None,
    )
    assert state.shadow(1) is shadow


def test_flow_state_answers_pairs_and_poweroffice_hashes_without_building_links() -> None:
    """A full listing's questions (every pair, a record's stored hash) match by_po + hashes."""
    state = FlowState("acme", "customers", [row(1, "1", "a", {"name": "A"}), row(2, "2", "b")])
    assert sorted(state.pairs()) == [("1", "a", "active"), ("2", "b", "active")]
    assert state.poweroffice_hash("1") == "po-1"
    assert state.poweroffice_hash("2") is None  # linked, never synchronised
    assert state.poweroffice_hash("3") is None  # not linked


def test_compact_rows_keep_their_values_and_share_repeated_strings() -> None:
    """A loaded row keeps every value, with one shared copy of tenant, flow and state."""
    first, second = row(1, "1", "a", {"name": "A"}), row(2, "2", "b")
    # Equal strings built at run time, as a driver returns them: distinct objects.
    second = (
        2,
        "".join(["ac", "me"]),
        "".join(["custom", "ers"]),
        "2",
        "b",
        "act" + "ive".lower(),
        *second[6:],
    )
    one, two = compact_row(first), compact_row(second)
    assert type(one) is tuple
    assert one == first
    assert two == second
    assert one[1] is two[1]
    assert one[2] is two[2]
    assert one[5] is two[5]


def test_flow_state_reads_only_the_ids_asked_for() -> None:
    """A state reads nothing until asked, then only the asked ids, each once, until forgotten."""
    asked: list[tuple[str, list[object]]] = []
    rows = [row(i, str(i), f"c-{i}", {"n": i} if i % 2 else None) for i in range(1, 6)]
    memory = FlowState("acme", "customers", rows)

    class Counting:
        def rows(self, key: Key, ids: Collection[object]) -> list[tuple[object, ...]]:
            asked.append((key, sorted(ids, key=str)))
            return memory._source.rows(key, ids)  # noqa: SLF001 - the rows under test

        def count(self) -> int:
            return len(rows)

        def exists(self) -> bool:
            return bool(rows)

        def pairs(self) -> Iterator[tuple[str, str, str]]:
            return memory._source.pairs()  # noqa: SLF001 - the rows under test

    state = FlowState("acme", "customers", Counting())
    assert asked == []
    state.prefetch(poweroffice_ids=["1", "2", "9"], pms_ids=["c-3"])
    assert asked == [("po", ["1", "2", "9"]), ("pms", ["c-3"])]
    asked.clear()
    assert state.pms_id_for("1") == "c-1"
    assert state.by_po("9") is None  # asked already: known not to be linked
    assert state.poweroffice_id_for("c-3") == "3"
    assert state.hashes(1) == ("po-1", "pms-c-1")
    assert asked == []
    assert state.by_pms("c-5") is not None  # not prefetched: one query of its own
    assert asked == [("pms", ["c-5"])]
    assert state.poweroffice_hashes(["1", "2", "3"]) == {"1": "po-1", "3": "po-3"}
    state.forget()
    asked.clear()
    assert state.pms_id_for("1") == "c-1"
    assert asked == [("po", ["1"])]


def test_timestamps_from_either_driver_become_aware_utc() -> None:
    """SQLite text and PostgreSQL datetimes both decode to the same UTC instant."""
    oslo = timezone(timedelta(hours=2))
    assert to_utc("2026-05-17 10:00:00") == T0
    assert to_utc(datetime(2026, 5, 17, 12, 0, tzinfo=oslo)) == T0
    assert to_utc(datetime(2026, 5, 17, 10, 0)) == T0  # naive: stored UTC
    assert to_utc(None) is None
    with pytest.raises(TypeError):
        to_utc(12)


def test_retry_delay_doubles_up_to_the_cap() -> None:
    """Backoff starts at the base, doubles per attempt and never passes the cap."""
    delays = [retry_delay(n, 60, 3600).total_seconds() for n in range(1, 9)]
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert retry_delay(10_000, 60, 3600) == timedelta(hours=1)


def test_departments_and_customers_share_the_pms_customer_resource() -> None:
    """A PMS id is unique per PMS resource, which departments and customers share."""
    assert FLOW_PMS_RESOURCE == {
        "departments": "customers",
        "customers": "customers",
        "projects": "projects",
    }


def test_store_package_exports_exactly_its_api() -> None:
    """tolken.store exports the Store, its tenant view, its opener and value types, nothing else."""
    import tolken.store

    assert set(tolken.store.__all__) == {
        "FLOW_PMS_RESOURCE",
        "AlreadySettled",
        "ConflictRecord",
        "Direction",
        "DuplicateLink",
        "DuplicatePendingCreate",
        "DuplicateTenant",
        "Failure",
        "FlowId",
        "FlowCounts",
        "FlowState",
        "HistoryEntry",
        "JobKind",
        "JobOutcome",
        "JobReason",
        "JobRun",
        "JobRunLog",
        "Link",
        "LinkState",
        "NewLink",
        "OpenWork",
        "PendingCreate",
        "PendingState",
        "Run",
        "RunStatus",
        "Shadow",
        "Side",
        "Store",
        "Tenant",
        "TenantRegistry",
        "TenantState",
        "TenantStatus",
        "TenantStore",
        "UnknownRecord",
        "UnknownTenant",
        "Winner",
        "open_store",
    }
    for name in tolken.store.__all__:
        assert hasattr(tolken.store, name)
