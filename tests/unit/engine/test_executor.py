"""The executor applies every action the planner can emit, against the real store and sandboxes.

Each test builds an :class:`Executor` for one flow over a SQLite store in a
temporary directory and the two in-process simulators (starlette
``TestClient`` transports), applies a group of actions, and checks what a user
would see: the records in both systems, the links, shadows, history, failures
and conflicts in the store, and the cycle's report.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enginehelp import (
    ORG,
    World,
    history,
    linked,
    open_world,
    pms_customer,
    po_customer,
    stored_shadow,
)
from tolken.connectors.base import Connector
from tolken.engine.executor import MAX_REPLANS, Executor
from tolken.engine.model import (
    Action,
    Ambiguous,
    CreateInPMS,
    CreateInPowerOffice,
    DeactivateInPMS,
    Fetch,
    FieldConflict,
    Link,
    MarkPMSDeleted,
    RecordConflict,
    SaveShadow,
    Skipped,
    Unchanged,
    UpdatePMS,
    UpdatePowerOffice,
    Wait,
)
from tolken.engine.plan import idempotency_key
from tolken.errors import Retriable


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as opened:
        yield opened


# -- creates and links ------------------------------------------------------------------


def test_create_in_pms_makes_the_record_and_links_it(world: World) -> None:
    """A new PowerOffice customer gets a PMS twin, a link, a shadow and a history entry."""
    ex = world.executor()
    po = po_customer(world)
    ex.remember("poweroffice", po)
    projected = ex.services.project_po(po)
    assert projected is not None
    key = idempotency_key(world.engine.tenant, "customers", "poweroffice", po.id)
    ex.apply([CreateInPMS(po.id, projected.values, key)])
    [created] = world.pms.list("customers")
    assert created.data["name"] == "Acme"
    assert created.data["organization_number"] == ORG
    assert stored_shadow(world, po.id)["name"] == "Acme"
    assert history(world, po.id) == [("to_pms", "create")]
    assert ex.state.report.counts["created"] == 1
    assert world.engine.store.pending_creates("customers") == []


def test_create_in_poweroffice_sends_the_assigned_number_back(world: World) -> None:
    """A PMS-only customer created in PowerOffice gets PowerOffice's customer number back."""
    ex = world.executor()
    pms = pms_customer(world)
    ex.remember("pms", pms)
    projected = ex.services.project_pms(pms)
    assert projected is not None
    key = idempotency_key(world.engine.tenant, "customers", "pms", pms.id)
    ex.apply([CreateInPowerOffice(pms.id, projected.values, key)])
    [created] = world.po.list("Customers")
    assert created.data["Name"] == "Acme"
    number = str(created.data["Number"])
    assert world.pms.get("customers", pms.id).data["number"] == number
    assert stored_shadow(world, created.id)["number"] == number
    assert ex.state.report.counts["created"] == 1


def test_link_stores_the_link_and_why(world: World) -> None:
    """Two matching records are linked, with the rule in the link's history."""
    ex = world.executor()
    po, pms = po_customer(world), pms_customer(world)
    ex.apply([Link(po.id, pms.id, "OrganizationNumber = organization_number")])
    link = world.engine.store.get_link_by_po("customers", po.id)
    assert link is not None
    assert link.pms_id == pms.id
    assert history(world, po.id) == [("to_pms", "link")]
    assert ex.state.report.counts["linked"] == 1


def test_a_match_settles_the_create_an_interrupted_run_left_pending(world: World) -> None:
    """A create whose answer was lost is done once the next run links its record by a match."""
    ex = world.executor()
    po, pms = po_customer(world), pms_customer(world)
    world.engine.store.add_pending_create("customers", "pms", po.id, "lost-answer")
    ex.apply([Link(po.id, pms.id, "OrganizationNumber = organization_number")])
    assert world.engine.store.pending_creates("customers") == []


# -- updates ------------------------------------------------------------------------------


def test_update_pms_writes_the_field_and_moves_the_shadow(world: World) -> None:
    """A PowerOffice edit reaches the PMS record, and the shadow remembers the new value."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    version = world.pms.get("customers", pms.id).version
    ex.apply([UpdatePMS(po.id, pms.id, {"name": "Acme Nord"}, version)])
    assert world.pms.get("customers", pms.id).data["name"] == "Acme Nord"
    assert stored_shadow(world, po.id)["name"] == "Acme Nord"
    assert ("to_pms", "update") in history(world, po.id)
    assert ex.state.report.counts["updated"] == 1


def test_update_poweroffice_writes_the_field_and_moves_the_shadow(world: World) -> None:
    """A PMS edit reaches the PowerOffice record, and the shadow remembers the new value."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    ex.apply([UpdatePowerOffice(po.id, pms.id, {"phone": "+47 400 00 001"})])
    assert world.po.get("Customers", po.id).data["PhoneNumber"] == "+47 400 00 001"
    assert stored_shadow(world, po.id)["phone"] == "+47 400 00 001"
    assert ("to_poweroffice", "update") in history(world, po.id)


def test_stale_pms_version_rereads_and_merges_the_concurrent_edit(world: World) -> None:
    """A PMS record edited while tolken writes it (412) is re-read: both edits survive."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    stale = world.pms.get("customers", pms.id).version
    world.pms.update("customers", pms.id, {"phone": "+47 400 00 002"})  # a person, meanwhile
    ex.remember("poweroffice", world.po.update("Customers", po.id, {"Name": "Acme Nord"}))
    ex.apply([UpdatePMS(po.id, pms.id, {"name": "Acme Nord"}, stale)])
    assert world.pms.get("customers", pms.id).data["name"] == "Acme Nord"
    assert world.po.get("Customers", po.id).data["PhoneNumber"] == "+47 400 00 002"
    assert ex.state.report.counts["failed"] == 0
    assert world.engine.store.list_failures("customers") == []


class ConcurrentEditor:
    """The real PMS connector, with a person editing the record just before each tolken write."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, resource: str, record_id: str, body: Any, *, version: Any = None) -> Any:
        self.attempts += 1
        self.inner.update(resource, record_id, {"website": f"https://acme.no/{self.attempts}"})
        return self.inner.update(resource, record_id, body, version=version)


def test_a_record_that_keeps_changing_is_parked_after_bounded_rereads(world: World) -> None:
    """A PMS record edited before every write is re-read MAX_REPLANS times, then parked."""
    editor = ConcurrentEditor(world.pms)
    ex = world.executor(pms=typing.cast(Connector, editor))
    po, pms, _ = linked(world, ex)
    version = world.pms.get("customers", pms.id).version
    ex.remember("poweroffice", world.po.update("Customers", po.id, {"Name": "Acme Nord"}))
    ex.apply([UpdatePMS(po.id, pms.id, {"name": "Acme Nord"}, version)])
    assert editor.attempts == MAX_REPLANS + 1
    [failure] = world.engine.store.list_failures("customers")
    assert failure.record_id == po.id
    assert "kept changing" in failure.message
    assert ex.state.report.counts["failed"] == 1


class LostAnswers:
    """The real PowerOffice connector whose updates land but whose answers never come: the
    connector's own retries all ended in a lost answer (a 502 from a gateway)."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, resource: str, record_id: str, changes: Any) -> Any:
        self.inner.update(resource, record_id, changes)
        raise Retriable("Bad Gateway (the answer was lost)", system="poweroffice", status=502)


def _write_lost_then_undone_in_pms(world: World, ex: Executor) -> tuple[str, str]:
    """A PMS name edit whose PowerOffice write landed unanswered (parked); then the person
    puts the PMS name back to the value both sides held before."""
    po, pms, _ = linked(world, ex)
    lossy = world.executor(poweroffice=typing.cast(Connector, LostAnswers(world.po)))
    lossy.remember("pms", world.pms.update("customers", pms.id, {"name": "Acme Nord"}))
    lossy.remember("poweroffice", world.po.get("Customers", po.id))
    lossy.apply([UpdatePowerOffice(po.id, pms.id, {"name": "Acme Nord"})])
    assert world.po.get("Customers", po.id).data["Name"] == "Acme Nord"  # it landed
    [failure] = world.engine.store.list_failures("customers")
    assert failure.details == {"in_doubt": {"poweroffice": {"name": "Acme Nord"}}}
    ex.state.in_doubt = lossy.state.in_doubt
    ex.state.open_failures = set(lossy.state.open_failures)
    world.pms.update("customers", pms.id, {"name": "Acme"})  # a person undoes the edit
    return po.id, pms.id


def test_a_write_in_doubt_that_landed_is_not_taken_for_an_edit_there(world: World) -> None:
    """PowerOffice holds tolken's unanswered write: the later PMS edit wins, no conflict."""
    ex = world.executor()
    po_id, pms_id = _write_lost_then_undone_in_pms(world, ex)
    ex.remember("pms", world.pms.get("customers", pms_id))
    ex.apply([Fetch(po_id, pms_id, "poweroffice", "parked record retried")])
    assert world.po.get("Customers", po_id).data["Name"] == "Acme"
    assert world.pms.get("customers", pms_id).data["name"] == "Acme"
    assert stored_shadow(world, po_id)["name"] == "Acme"
    assert world.engine.store.list_failures("customers") == []
    assert ex.state.in_doubt == {}


def test_a_write_in_doubt_is_kept_with_the_parked_record_for_the_next_cycle(
    world: World,
) -> None:
    """The next cycle (another process) reads the write in doubt back from the failure."""
    ex = world.executor()
    po_id, pms_id = _write_lost_then_undone_in_pms(world, ex)
    world.engine.store.retry_failures_now()
    world.engine.run_cycle()
    assert world.po.get("Customers", po_id).data["Name"] == "Acme"
    assert world.pms.get("customers", pms_id).data["name"] == "Acme"
    assert world.engine.store.list_failures("customers") == []


def test_fetch_reads_the_missing_side_and_plans_the_pair_again(world: World) -> None:
    """A hand-made link without a shadow reads the PMS side and fills its empty fields."""
    ex = world.executor()
    po = po_customer(world)
    pms = pms_customer(world)  # no e-mail yet
    ex.remember("poweroffice", po)
    ex.apply([Link(po.id, pms.id, "test")])
    ex.apply([Fetch(po.id, pms.id, "pms", "no last synchronised value")])
    assert world.pms.get("customers", pms.id).data["email"] == "post@acme.no"
    assert stored_shadow(world, po.id)["email"] == "post@acme.no"


def test_save_shadow_writes_nothing_to_either_system(world: World) -> None:
    """Values both sides already agree on move into the shadow without a request."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    before = world.writes()
    ex.apply([SaveShadow(po.id, pms.id, {"name": "Acme"})])
    assert world.writes() == before
    assert stored_shadow(world, po.id)["name"] == "Acme"


def test_unchanged_remembers_the_version_seen(world: World) -> None:
    """An unchanged pair (an echo) stores the PMS version seen, so it is not an edit next time."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    world.pms.update("customers", pms.id, {"name": "Acme X"})
    moved = world.pms.update("customers", pms.id, {"name": "Acme"})  # back: same values
    assert moved.version != pms.version
    later = world.executor()
    later.remember("pms", moved)
    later.apply([Unchanged(po.id, pms.id)])
    link = world.engine.store.get_link_by_po("customers", po.id)
    assert link is not None
    shadow = world.engine.store.load_shadow(link.id)
    assert shadow is not None
    assert shadow.pms_version == moved.version
    assert later.state.report.counts["unchanged"] == 1


# -- notes: conflicts, ambiguity, waiting, skipping --------------------------------------


def test_a_conflict_is_recorded_once(world: World) -> None:
    """Both values of a conflict are kept, and re-planning the same pair does not repeat it."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    conflict = FieldConflict("name", "Acme A", "Acme B", "Acme", "poweroffice", "newest-wins")
    ex.apply([RecordConflict(po.id, pms.id, conflict)])
    ex.apply([RecordConflict(po.id, pms.id, conflict)])
    [stored] = world.engine.store.list_conflicts("customers")
    assert (stored.poweroffice_value, stored.pms_value, stored.winner) == (
        "Acme A",
        "Acme B",
        "poweroffice",
    )
    assert ex.state.report.counts["conflicts"] == 2


def test_ambiguous_match_is_reported_and_parked_with_advice(world: World) -> None:
    """A record matching several candidates is listed, parked, and says to use tolken link."""
    ex = world.executor()
    ex.apply([Ambiguous("poweroffice", "7", ("m1", "m2"), "OrganizationNumber")])
    [failure] = world.engine.store.list_failures("customers")
    assert failure.record_id == "7"
    assert "tolken link" in failure.message
    assert [m.candidates for m in ex.state.cycle.ambiguous] == [("m1", "m2")]
    assert ex.state.report.counts["ambiguous"] == 1


def test_wait_keeps_the_record_for_the_cursor(world: World) -> None:
    """A record waiting for a reference is counted and held back from the cursor."""
    ex = world.executor("projects")
    ex.apply([Wait("poweroffice", "42", "waiting for a link")])
    ex.apply([Wait("pms", "p9", "waiting for a link")])
    assert ex.state.waiting_po == {"42"}
    assert ex.state.waiting_pms == {"p9"}
    assert ex.state.report.counts["waiting"] == 2


def test_skipped_is_counted_and_writes_nothing(world: World) -> None:
    """A record the flow leaves alone costs no request and no store row."""
    ex = world.executor()
    before = world.writes()
    ex.apply([Skipped(None, "m1", "PMS-only record")])
    assert world.writes() == before
    assert ex.state.report.counts["skipped"] == 1
    assert world.engine.store.list_links("customers") == []


# -- deletes ------------------------------------------------------------------------------


def test_deactivate_only_after_poweroffice_answers_404(world: World) -> None:
    """A PowerOffice record missing from a listing but still there is left alone; a gone one
    makes its PMS twin inactive and ends the link."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    ex.apply([DeactivateInPMS(po.id, pms.id, {"active": False})])
    assert world.pms.get("customers", pms.id).data["active"] is True
    world.po.delete("Customers", po.id)
    ex.apply([DeactivateInPMS(po.id, pms.id, {"active": False})])
    assert world.pms.get("customers", pms.id).data["active"] is False
    link = world.engine.store.get_link_by_po("customers", po.id)
    assert link is not None
    assert link.state == "source-deleted"
    assert ex.state.report.counts["deactivated"] == 1


def test_pms_delete_marks_the_link_and_leaves_poweroffice_alone(world: World) -> None:
    """A PMS delete (confirmed by a 404) marks the link; the PowerOffice record stays."""
    ex = world.executor()
    po, pms, _ = linked(world, ex)
    ex.apply([MarkPMSDeleted(po.id, pms.id, confirm_by_get=True)])
    link = world.engine.store.get_link_by_po("customers", po.id)
    assert link is not None
    assert link.state == "active"
    world.pms.delete("customers", pms.id)
    ex.apply([MarkPMSDeleted(po.id, pms.id, confirm_by_get=True)])
    link = world.engine.store.get_link_by_po("customers", po.id)
    assert link is not None
    assert link.state == "pms-deleted"
    assert world.po.get("Customers", po.id).data["Name"] == "Acme"
    assert ex.state.report.counts["pms_deleted"] == 1


# -- failures and dry runs ----------------------------------------------------------------


def test_a_refused_create_is_parked_and_the_run_goes_on(world: World) -> None:
    """A project without a code cannot be created in PowerOffice: it is parked with why."""
    ex = world.executor("projects")
    ex.apply([CreateInPowerOffice("p1", {"name": "No code"}, "tk-key")])
    [failure] = world.engine.store.list_failures("projects")
    assert (failure.side, failure.record_id) == ("pms", "p1")
    assert "code" in failure.message
    assert ex.state.report.counts["failed"] == 1
    assert ("pms", "p1") in ex.state.open_failures


def test_dry_run_plans_every_write_and_makes_none(world: World) -> None:
    """``tolken plan`` lists the create, link and update it would make, and writes nothing."""
    ex = world.executor(dry_run=True)
    po = po_customer(world)
    before = world.writes()
    actions: list[Action] = [
        CreateInPMS(po.id, {"name": "Acme"}, "tk-1"),
        Link(po.id, "m1", "test"),
        UpdatePMS(po.id, "m1", {"name": "Acme Nord"}, 1),
    ]
    for action in actions:
        ex.apply([action])
    assert world.writes() == before
    assert [p.kind for p in ex.state.cycle.planned] == ["create-in-pms", "link", "update-pms"]
    assert world.engine.store.list_links("customers") == []


def test_every_action_the_planner_can_emit_is_exercised_here() -> None:
    """No action type of the ``Action`` union goes untested by this module."""
    source = Path(__file__).read_text(encoding="utf-8")
    missing = [
        kind.__name__ for kind in typing.get_args(Action) if f"{kind.__name__}(" not in source
    ]
    assert not missing, missing
