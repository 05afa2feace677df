"""Links, shadows, history and transactions, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from tolken.store import (
    DuplicateLink,
    HistoryEntry,
    NewLink,
    Shadow,
    Store,
    TenantStore,
    UnknownRecord,
    open_store,
)

T0 = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


@pytest.fixture
def db(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


@pytest.fixture
def store(db: Store) -> TenantStore:
    return db.for_tenant("acme")


def test_link_is_found_from_either_side(store: TenantStore) -> None:
    """A link is found by its PowerOffice id, its PMS id and its PMS resource."""
    link = store.create_link("departments", "7", "c-dep")
    assert store.get_link_by_po("departments", "7") == link
    assert store.get_link_by_pms("departments", "c-dep") == link
    assert store.get_link_by_pms_resource("customers", "c-dep") == link
    assert store.get_link(link.id) == link
    assert link.state == "active"
    assert link.created_at.tzinfo is not None
    assert store.get_link_by_po("customers", "7") is None


def test_linking_a_poweroffice_record_twice_is_refused(store: TenantStore) -> None:
    """A second link for the same PowerOffice record raises DuplicateLink naming the first."""
    first = store.create_link("customers", "10001", "c-1")
    with pytest.raises(DuplicateLink) as info:
        store.create_link("customers", "10001", "c-2")
    assert f"link {first.id}" in str(info.value)
    assert "PowerOffice record 10001" in str(info.value)
    assert store.get_link_by_pms("customers", "c-2") is None


def test_linking_a_pms_customer_twice_is_refused_across_flows(store: TenantStore) -> None:
    """A PMS customer linked as a department cannot also be linked as a customer."""
    store.create_link("departments", "3", "c-1")
    with pytest.raises(DuplicateLink) as info:
        store.create_link("customers", "10001", "c-1")
    assert "PMS customers record c-1" in str(info.value)
    # Projects live in another PMS resource, so the same id string is a different record.
    store.create_link("projects", "55", "c-1")


def test_duplicate_in_a_batch_links_none_of_it(store: TenantStore) -> None:
    """A batch of links with one duplicate is refused whole."""
    store.create_link("customers", "1", "a")
    with pytest.raises(DuplicateLink):
        store.create_links("customers", [("2", "b"), ("3", "a")])
    with pytest.raises(DuplicateLink):
        store.create_links("customers", [("4", "d"), ("4", "e")])
    assert [ln.poweroffice_id for ln in store.list_links()] == ["1"]


def test_duplicate_inside_a_transaction_leaves_it_usable(store: TenantStore) -> None:
    """After a refused duplicate, the rest of the transaction still commits."""
    store.create_link("customers", "1", "a")
    with store.transaction():
        with pytest.raises(DuplicateLink):
            store.create_link("customers", "1", "b")
        store.create_link("customers", "2", "b")
    assert store.get_link_by_po("customers", "2") is not None


def test_transaction_commits_link_shadow_and_history_together(store: TenantStore) -> None:
    """An error inside a transaction leaves no link, shadow or history behind."""

    class Boom(Exception):
        pass

    def write_then_fail() -> int:
        with store.transaction():
            link = store.create_link("customers", "1", "a")
            store.save_shadow(link.id, Shadow({"name": "Acme"}))
            store.add_history(link.id, "to_pms", "create", {"name": "Acme"}, "new in poweroffice")
            assert store.in_transaction
            raise Boom(link.id)

    with pytest.raises(Boom) as info:
        write_then_fail()
    link_id = info.value.args[0]
    assert not store.in_transaction
    assert store.get_link_by_po("customers", "1") is None
    assert store.get_link(link_id) is None
    assert store.load_shadow(link_id) is None
    assert store.history_for_link(link_id) == []

    with store.transaction():
        link = store.create_link("customers", "1", "a")
        store.save_shadow(link.id, Shadow({"name": "Acme"}))
    assert store.load_shadow(link.id) == Shadow({"name": "Acme"})


def test_links_with_history_store_what_the_three_calls_store(store: TenantStore) -> None:
    """create_links_with_history: the links, shadows and history of create_links,
    save_shadows and add_history_many, and links equal to what the store reads back."""
    run_id = store.start_run()
    shadow = Shadow({"name": "Acme", "address.city": "Oslo"}, None, "h1", T0, 3, "h2", T0)
    made = store.create_links_with_history(
        "customers",
        [
            NewLink(
                "1", "a", shadow, "to_pms", "create", {"name": "Acme"}, "new PowerOffice record"
            ),
            NewLink("2", "b", None, "to_pms", "link", {}, "merge rule org"),
        ],
        run_id=run_id,
    )
    assert [(ln.poweroffice_id, ln.pms_id) for ln in made] == [("1", "a"), ("2", "b")]
    assert made == [store.get_link(ln.id) for ln in made]
    assert store.load_shadows([ln.id for ln in made]) == {made[0].id: shadow}
    [first] = store.history_for_link(made[0].id)
    assert (first.direction, first.action, first.fields, first.reason, first.run_id) == (
        "to_pms",
        "create",
        {"name": "Acme"},
        "new PowerOffice record",
        run_id,
    )
    assert [e.reason for e in store.history_for_link(made[1].id)] == ["merge rule org"]


def test_links_with_history_store_none_of_a_batch_with_a_duplicate(store: TenantStore) -> None:
    """A duplicate refuses the whole batch (no link, shadow or history) and leaves the
    caller's transaction usable."""
    old = store.create_link("customers", "1", "a")
    batch = [
        NewLink("2", "b", Shadow({"name": "B"}), "to_pms", "create", {"name": "B"}, "new"),
        NewLink("3", "a", Shadow({"name": "A"}), "to_pms", "create", {"name": "A"}, "new"),
    ]
    with store.transaction():
        with pytest.raises(DuplicateLink) as info:
            store.create_links_with_history("customers", batch)
        store.create_link("customers", "4", "d")
    assert "PMS customers record a" in str(info.value)
    assert sorted(ln.poweroffice_id for ln in store.list_links()) == ["1", "4"]
    assert store.recent_history() == []
    assert store.load_shadows([old.id, old.id + 1, old.id + 2]) == {}


def test_links_with_history_store_none_of_a_large_batch_with_a_late_duplicate(
    store: TenantStore,
) -> None:
    """A batch larger than one statement whose last pair is a duplicate stores none of it."""
    old = store.create_link("customers", "0", "a")
    batch = [
        NewLink(str(n), f"c-{n}", Shadow({"n": n}), "to_pms", "create", {"n": n}, "new")
        for n in range(1, 1200)
    ]
    with store.transaction():
        with pytest.raises(DuplicateLink) as info:
            store.create_links_with_history(
                "customers", [*batch, NewLink("1200", "a", None, "to_pms", "link", {}, "rule")]
            )
        assert "PMS customers record a" in str(info.value)
        assert [ln.id for ln in store.list_links()] == [old.id]
    assert store.recent_history() == []
    assert len(store.create_links_with_history("customers", batch)) == len(batch)
    assert len(store.recent_history(limit=2000)) == len(batch)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"direction": "sideways"}, IntegrityError),  # refused by the database, rows made before
        ({"fields": {"when": object()}}, TypeError),  # not JSON
    ],
)
def test_links_with_history_store_none_when_a_history_entry_fails(
    store: TenantStore, bad: dict[str, Any], error: type[Exception]
) -> None:
    """A history entry the store cannot keep stores none of the batch (links, shadows, history)
    and leaves the caller's transaction usable."""
    good = NewLink("1", "a", Shadow({"name": "A"}), "to_pms", "create", {"name": "A"}, "new")
    wrong = good._replace(poweroffice_id="2", pms_id="b", **bad)
    with store.transaction():
        with pytest.raises(error):
            store.create_links_with_history("customers", [good, wrong])
        store.create_link("customers", "3", "c")
    assert [ln.poweroffice_id for ln in store.list_links()] == ["3"]
    assert store.recent_history() == []
    [link] = store.create_links_with_history("customers", [good])
    assert store.load_shadow(link.id) == Shadow({"name": "A"})


def test_tenants_are_isolated(db: Store) -> None:
    """The same ids in two tenants are two links, and no lookup crosses tenants."""
    alpha, beta = db.for_tenant("alpha"), db.for_tenant("beta")
    a = alpha.create_link("customers", "10001", "c-1")
    b = beta.create_link("customers", "10001", "c-1")
    assert a.id != b.id
    assert alpha.get_link_by_po("customers", "10001") == a
    assert beta.get_link_by_pms("customers", "c-1") == b
    beta.create_link("customers", "10002", "c-2")
    assert len(alpha.load_flow_state("customers")) == 1
    assert alpha.links_by_po("customers", ["10002"]) == {}
    assert beta.link_counts() == {"customers": {"active": 2}}
    assert db.tenants() == ["alpha", "beta"]
    assert db.for_tenant("alpha") is alpha


def test_flow_state_says_whether_the_flow_has_links(db: Store) -> None:
    """has_links is about this tenant's flow only: other flows and tenants do not count."""
    alpha, beta = db.for_tenant("alpha"), db.for_tenant("beta")
    beta.create_link("customers", "10001", "c-1")
    alpha.create_link("departments", "d1", "dep-1")
    assert not alpha.load_flow_state("customers").has_links()
    assert alpha.load_flow_state("departments").has_links()
    alpha.create_link("customers", "10001", "c-1")
    assert alpha.load_flow_state("customers").has_links()


def test_shadow_round_trips_json_values(store: TenantStore) -> None:
    """A shadow comes back with the same values, versions, hashes and aware timestamps."""
    link = store.create_link("customers", "1", "a")
    shadow = Shadow(
        {"name": "Ærlig AS", "address.city": None, "active": True, "progress": 40, "tags": [1]},
        poweroffice_version=None,
        poweroffice_hash="po-hash",
        poweroffice_changed_at=T0,
        pms_version=7,
        pms_hash="pms-hash",
        pms_changed_at=T0 + timedelta(seconds=1),
    )
    store.save_shadow(link.id, shadow)
    assert store.load_shadow(link.id) == shadow
    replaced = shadow._replace(fields={"name": "Ny AS"}, pms_version=8)
    store.save_shadow(link.id, replaced)
    assert store.load_shadow(link.id) == replaced
    assert store.load_shadows([link.id, 999]) == {link.id: replaced}


def test_naive_timestamps_are_refused(store: TenantStore) -> None:
    """A modification time without a timezone is an error, not a silent guess."""
    link = store.create_link("customers", "1", "a")
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="naive datetime"):
        store.save_shadow(link.id, Shadow({}, pms_changed_at=naive))


def test_flow_state_loads_every_link_with_its_shadow(store: TenantStore) -> None:
    """load_flow_state returns each link of the flow, its shadow and hashes, by either id."""
    links = store.create_links("customers", [(str(i), f"c-{i}") for i in range(1200)])
    store.create_link("departments", "d1", "dep-1")
    store.save_shadows(
        {
            link.id: Shadow({"n": i}, poweroffice_hash=f"p{i}", pms_hash=f"m{i}", pms_changed_at=T0)
            for i, link in enumerate(links)
            if i % 2 == 0
        }
    )
    state = store.load_flow_state("customers")
    assert len(state) == 1200
    assert {po_id for po_id, _, _ in state.pairs()} == {str(i) for i in range(1200)}
    link = state.by_po("10")
    assert link == links[10]
    assert state.by_pms("c-10") == link
    assert state.hashes(link.id) == ("p10", "m10")
    shadow = state.shadow(link.id)
    assert shadow is not None
    assert shadow.fields == {"n": 10}
    assert shadow.pms_changed_at == T0
    assert state.shadow(links[11].id) is None
    assert state.hashes(links[11].id) == (None, None)
    assert state.pms_id_for("11") == "c-11"
    assert state.poweroffice_id_for("c-11") == "11"
    assert "d1" not in state.poweroffice_ids()
    assert store.link_map("departments") == {"d1": "dep-1"}


def test_batched_lookups_cover_more_ids_than_one_query_takes(store: TenantStore) -> None:
    """links_by_po and links_by_pms find every link even for thousands of ids."""
    store.create_links("projects", [(str(i), f"p-{i}") for i in range(1500)])
    wanted = [str(i) for i in range(0, 1500, 2)] + ["missing"]
    found = store.links_by_po("projects", wanted)
    assert set(found) == set(wanted) - {"missing"}
    by_pms = store.links_by_pms("projects", [f"p-{i}" for i in range(700)])
    assert len(by_pms) == 700
    assert by_pms["p-3"].poweroffice_id == "3"
    store.create_link("departments", "d", "c-dep")
    store.create_link("customers", "10001", "c-cust")
    by_resource = store.links_by_pms_resource("customers", ["c-dep", "c-cust", "p-3"])
    assert {pms_id: ln.flow for pms_id, ln in by_resource.items()} == {
        "c-dep": "departments",
        "c-cust": "customers",
    }


def test_link_state_changes_are_stored(store: TenantStore) -> None:
    """A link can be marked source-deleted or pms-deleted and listed by state."""
    link = store.create_link("customers", "1", "a")
    store.create_link("customers", "2", "b")
    changed = store.set_link_state(link.id, "source-deleted")
    assert changed.state == "source-deleted"
    assert changed.updated_at >= link.updated_at
    assert store.list_links("customers", state="source-deleted") == [changed]
    assert store.link_counts() == {"customers": {"active": 1, "source-deleted": 1}}
    with pytest.raises(ValueError, match="unknown link state"):
        store.set_link_state(link.id, "gone")  # type: ignore[arg-type]
    with pytest.raises(UnknownRecord):
        store.set_link_state(999_999, "active")


def test_unknown_flow_is_refused(store: TenantStore) -> None:
    """A flow id that does not exist is a programming error caught before the database."""
    with pytest.raises(ValueError, match="unknown flow"):
        store.create_link("invoices", "1", "a")  # type: ignore[arg-type]


def test_history_is_kept_per_link_in_order(db: Store, store: TenantStore) -> None:
    """History lists what was written where and why, oldest first; limit keeps the newest."""
    link = store.create_link("customers", "1", "a")
    other = store.create_link("customers", "2", "b")
    run_id = store.start_run()
    store.add_history(link.id, "to_pms", "create", {"name": "A"}, "new in poweroffice")
    store.add_history_many(
        [
            HistoryEntry(link.id, "to_poweroffice", "update", {"email": "x@y.no"}, "pms edit"),
            HistoryEntry(other.id, "to_pms", "link", {}, "merge rule: number"),
            HistoryEntry(
                link.id, "to_pms", "update", {"name": "B"}, "conflict: newest-wins", run_id=run_id
            ),
        ]
    )
    entries = store.history_for_link(link.id)
    assert [(e.action, e.direction, e.reason) for e in entries] == [
        ("create", "to_pms", "new in poweroffice"),
        ("update", "to_poweroffice", "pms edit"),
        ("update", "to_pms", "conflict: newest-wins"),
    ]
    assert entries[2].fields == {"name": "B"}
    assert entries[2].run_id == run_id
    assert [e.reason for e in store.history_for_link(link.id, limit=1)] == ["conflict: newest-wins"]
    recent = store.recent_history(limit=2)
    assert [(e.link_id, e.reason) for e in recent] == [
        (link.id, "conflict: newest-wins"),
        (other.id, "merge rule: number"),
    ]
    assert db.for_tenant("other").recent_history() == []


def test_deleting_a_link_frees_both_records(store: TenantStore) -> None:
    """An unlinked pair can be linked again, and its shadow and history are gone."""
    link = store.create_link("customers", "1", "a")
    store.save_shadow(link.id, Shadow({"name": "A"}))
    store.add_history(link.id, "to_pms", "link", {}, "manual")
    store.delete_link(link.id)
    assert store.load_shadow(link.id) is None
    assert store.history_for_link(link.id) == []
    relinked = store.create_link("customers", "1", "b")
    assert relinked.pms_id == "b"
    with pytest.raises(UnknownRecord):
        store.delete_link(link.id)


def test_flow_state_reads_by_page_of_ids_and_nothing_when_idle(
    db: Store, store: TenantStore
) -> None:
    """A flow state reads nothing until asked, then one query per 500 ids asked for."""
    from sqlalchemy import event

    links = store.create_links("customers", [(str(i), f"c-{i}") for i in range(2000)])
    store.save_shadows({link.id: Shadow({"n": link.id}) for link in links})
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        state = store.load_flow_state("customers")
        assert statements == []  # an idle cycle reads nothing
        state.prefetch(poweroffice_ids=[str(i) for i in range(1000)])
        assert len(statements) == 2  # 500 ids per query
        statements.clear()
        assert state.shadow(state.by_po("999").id).fields == {"n": links[999].id}  # type: ignore[union-attr]
        assert statements == []  # prefetched
        assert state.poweroffice_hashes([str(i) for i in range(1500, 2000)]) == {}
        assert len(statements) == 1
        statements.clear()
        assert sum(1 for _ in state.pairs()) == 2000  # streamed, 5,000 a page
        assert len(statements) == 1
        statements.clear()
        store.links_by_po("customers", [str(i) for i in range(2000)])
        store.load_shadows(link.id for link in links)
        assert len(statements) == 8  # 500 ids per query
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_flow_state_sees_any_write_from_any_store(store_url: str) -> None:
    """A flow state made after another worker's write sees it (links, shadows, states)."""
    with open_store(store_url) as mine_db, open_store(store_url) as theirs_db:
        mine, theirs = mine_db.for_tenant("acme"), theirs_db.for_tenant("acme")
        link = mine.create_link("customers", "1", "a")
        assert len(mine.load_flow_state("customers")) == 1

        theirs.create_link("customers", "2", "b")
        second = mine.load_flow_state("customers")
        assert len(second) == 2
        assert second.pms_id_for("2") == "b"

        theirs.save_shadow(link.id, Shadow({"name": "A"}, pms_hash="h"))
        third = mine.load_flow_state("customers")
        assert third.hashes(link.id) == (None, "h")

        theirs.set_link_state(link.id, "pms-deleted")
        assert mine.load_flow_state("customers").state_of(link.id) == "pms-deleted"

        theirs.delete_link(link.id)
        fourth = mine.load_flow_state("customers")
        assert fourth.by_po("1") is None
        assert fourth.get(link.id) is None


def test_flow_state_seen_in_a_rolled_back_transaction_is_not_kept(store: TenantStore) -> None:
    """Links read inside a transaction that rolls back never show up afterwards."""
    store.create_link("customers", "1", "a")

    def link_and_fail() -> None:
        with store.transaction():
            store.create_link("customers", "2", "b")
            assert len(store.load_flow_state("customers")) == 2
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        link_and_fail()
    # The next committed write brings the flow to the version the rolled-back one had.
    store.create_link("customers", "3", "c")
    assert set(store.load_flow_state("customers").poweroffice_ids()) == {"1", "3"}


def test_flow_state_first_used_in_a_transaction_sees_committed_rows_only(
    store: TenantStore,
) -> None:
    """A state loaded before a transaction never holds that transaction's uncommitted links."""
    store.create_link("customers", "1", "a")
    state = store.load_flow_state("customers")
    with store.transaction():
        store.create_link("customers", "2", "b")
        assert set(state.poweroffice_ids()) == {"1"}
        inside = store.load_flow_state("customers")
        assert set(inside.poweroffice_ids()) == {"1", "2"}
    assert set(store.load_flow_state("customers").poweroffice_ids()) == {"1", "2"}


def test_in_memory_store_works_in_one_connection() -> None:
    """``sqlite://`` (in memory, for quick experiments) supports transactions and flow state."""
    with open_store("sqlite://") as db:
        store = db.for_tenant("acme")
        store.create_link("customers", "1", "a")
        with store.transaction():
            store.create_link("customers", "2", "b")
            assert len(store.load_flow_state("customers")) == 2
        assert len(store.load_flow_state("customers")) == 2
