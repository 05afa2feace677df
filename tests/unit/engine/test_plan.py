"""The flow planner (DESIGN §1, §4): changed records + links + shadows → actions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tolken.engine.match import DEFAULT_RULES
from tolken.engine.model import (
    Action,
    Ambiguous,
    CreateInPMS,
    CreateInPowerOffice,
    Fetch,
    Link,
    LinkedPair,
    MarkPMSDeleted,
    ProjectedRecord,
    RecordConflict,
    SaveShadow,
    Skipped,
    Unchanged,
    UpdatePMS,
    UpdatePowerOffice,
    Wait,
)
from tolken.engine.plan import FlowContext, idempotency_key, plan_flow, plan_link

CUSTOMERS = FlowContext("t1", "customers", rules=DEFAULT_RULES["customers"])
PROJECTS = FlowContext("t1", "projects", rules=DEFAULT_RULES["projects"])
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)

ACME = {"kind": "company", "name": "Acme AS", "organization_number": "912345678", "email": None}


def rec(record_id: str, values: Mapping[str, Any], **kw: Any) -> ProjectedRecord:
    return ProjectedRecord(record_id, values, **kw)


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


# ---------------------------------------------------------------- creates and links


def test_new_poweroffice_record_is_created_in_pms() -> None:
    """A PowerOffice record with no link and no match becomes a PMS create with its values."""
    actions = plan_flow(CUSTOMERS, po_changes=[rec("1", ACME)], pms_changes=[], links=[])
    assert actions == [
        CreateInPMS("1", ACME, idempotency_key("t1", "customers", "poweroffice", "1"))
    ]


def test_idempotency_key_is_stable() -> None:
    """Planning the same create twice (crash and rerun) yields the same key."""
    first = plan_flow(CUSTOMERS, po_changes=[rec("1", ACME)], pms_changes=[], links=[])
    again = plan_flow(CUSTOMERS, po_changes=[rec("1", ACME)], pms_changes=[], links=[])
    assert first == again


def test_idempotency_key_depends_on_tenant_flow_side_and_id() -> None:
    """Different tenants, flows, sides or ids never share a create key; keys fit in 50 chars."""
    keys = {
        idempotency_key("t1", "customers", "poweroffice", "1"),
        idempotency_key("t2", "customers", "poweroffice", "1"),
        idempotency_key("t1", "projects", "poweroffice", "1"),
        idempotency_key("t1", "customers", "pms", "1"),
        idempotency_key("t1", "customers", "poweroffice", "2"),
    }
    assert len(keys) == 5
    assert all(len(k) <= 50 for k in keys)


def test_matching_pms_record_is_linked_instead_of_created() -> None:
    """A PowerOffice record matching an unlinked PMS record by org number is linked, not copied."""
    candidate = rec("m1", {**ACME, "email": "post@acme.no"}, version=3)
    actions = plan_flow(
        CUSTOMERS, po_changes=[rec("1", ACME)], pms_changes=[], links=[], pms_candidates=[candidate]
    )
    assert actions[0] == Link("1", "m1", "organization-number")
    assert actions[1:] == [
        UpdatePowerOffice("1", "m1", {"email": "post@acme.no"}),
        SaveShadow(
            "1", "m1", {"kind": "company", "name": "Acme AS", "organization_number": "912345678"}
        ),
    ]


def test_first_link_conflict_follows_policy_and_is_recorded() -> None:
    """On first link two different names are a conflict: policy decides and both are recorded."""
    ctx = FlowContext("t1", "customers", policy="pms-wins", rules=DEFAULT_RULES["customers"])
    candidate = rec("m1", {**ACME, "name": "ACME"}, version=2)
    actions = plan_flow(
        ctx, po_changes=[rec("1", ACME)], pms_changes=[], links=[], pms_candidates=[candidate]
    )
    conflict = next(a for a in actions if isinstance(a, RecordConflict)).conflict
    assert (conflict.poweroffice, conflict.pms, conflict.winner) == ("Acme AS", "ACME", "pms")
    assert UpdatePowerOffice("1", "m1", {"name": "ACME"}) in actions


def test_changed_unlinked_pms_record_is_a_candidate() -> None:
    """A PMS record in this run's changes (not yet listed as a candidate) is matched too."""
    actions = plan_flow(
        CUSTOMERS, po_changes=[rec("1", ACME)], pms_changes=[rec("m1", ACME)], links=[]
    )
    assert actions == [Link("1", "m1", "organization-number"), SaveShadow("1", "m1", ACME)]


def test_ambiguous_candidates_are_reported_not_linked() -> None:
    """Two PMS records with the same org number: Ambiguous, no link and no create."""
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("1", ACME)],
        pms_changes=[],
        links=[],
        pms_candidates=[rec("m1", ACME), rec("m2", ACME)],
    )
    assert actions == [Ambiguous("poweroffice", "1", ("m1", "m2"), "organization-number")]


def test_two_records_claiming_one_candidate_are_ambiguous() -> None:
    """Two PowerOffice records matching the same PMS record: neither is linked, both are named."""
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("2", ACME), rec("1", ACME)],
        pms_changes=[],
        links=[],
        pms_candidates=[rec("m1", ACME)],
    )
    assert actions == [Ambiguous("pms", "m1", ("1", "2"), "organization-number")]


def test_linked_pms_record_is_not_a_candidate() -> None:
    """A PMS record linked to another PowerOffice record is never linked twice."""
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("2", ACME)],
        pms_changes=[],
        links=[LinkedPair("1", "m1", shadow=ACME)],
        pms_candidates=[rec("m1", ACME)],
    )
    assert kinds(actions) == ["CreateInPMS"]


def test_project_with_unlinked_customer_waits() -> None:
    """A project whose customer is not linked yet waits; never created with a dangling reference."""
    project = rec("p1", {"code": "P1", "customer_id": None}, unresolved=frozenset({"customer_id"}))
    actions = plan_flow(PROJECTS, po_changes=[project], pms_changes=[], links=[])
    assert len(actions) == 1
    assert isinstance(actions[0], Wait)
    assert actions[0].record_id == "p1"
    assert "customer_id" in actions[0].reason


def test_linked_project_with_unresolved_reference_waits() -> None:
    """A linked project whose new customer is not linked yet waits instead of being half-written."""
    link = LinkedPair("p1", "mp1", shadow={"code": "P1", "customer_id": "c1"})
    project = rec("p1", {"code": "P1b", "customer_id": None}, unresolved=frozenset({"customer_id"}))
    actions = plan_flow(PROJECTS, po_changes=[project], pms_changes=[], links=[link])
    assert kinds(actions) == ["Wait"]


def test_pms_only_record_is_skipped_by_default() -> None:
    """With create_in_poweroffice off, a PMS-only record is not created in PowerOffice."""
    actions = plan_flow(CUSTOMERS, po_changes=[], pms_changes=[rec("m1", ACME)], links=[])
    assert kinds(actions) == ["Skipped"]


def test_pms_only_record_is_created_when_enabled() -> None:
    """create_in_poweroffice on: a PMS-only record becomes a PowerOffice create (stable key)."""
    ctx = FlowContext(
        "t1", "customers", create_in_poweroffice=True, rules=DEFAULT_RULES["customers"]
    )
    actions = plan_flow(ctx, po_changes=[], pms_changes=[rec("m1", ACME)], links=[])
    assert actions == [
        CreateInPowerOffice("m1", ACME, idempotency_key("t1", "customers", "pms", "m1"))
    ]


def test_pms_only_record_links_to_matching_poweroffice_record() -> None:
    """With create_in_poweroffice on, a PMS record matching an unlinked PowerOffice record links."""
    ctx = FlowContext(
        "t1", "customers", create_in_poweroffice=True, rules=DEFAULT_RULES["customers"]
    )
    actions = plan_flow(
        ctx, po_changes=[], pms_changes=[rec("m1", ACME)], links=[], po_candidates=[rec("7", ACME)]
    )
    assert actions[0] == Link("7", "m1", "organization-number")


def test_ambiguous_pms_candidate_is_not_created_in_poweroffice() -> None:
    """A PMS record named in an ambiguity is left alone, not copied to PowerOffice."""
    ctx = FlowContext(
        "t1", "customers", create_in_poweroffice=True, rules=DEFAULT_RULES["customers"]
    )
    actions = plan_flow(
        ctx,
        po_changes=[rec("1", ACME)],
        pms_changes=[rec("m1", ACME), rec("m2", ACME)],
        links=[],
    )
    assert kinds(actions) == ["Ambiguous"]


# ---------------------------------------------------------------- linked pairs


def test_poweroffice_edit_of_linked_pair_updates_pms_with_version() -> None:
    """A PowerOffice edit becomes a conditional PMS update carrying the PMS version."""
    link = LinkedPair("1", "m1", shadow=ACME, pms_version=4)
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("1", {**ACME, "name": "Acme Holding AS"})],
        pms_changes=[],
        links=[link],
    )
    assert actions == [UpdatePMS("1", "m1", {"name": "Acme Holding AS"}, 4)]


def test_read_pms_version_beats_stored_version() -> None:
    """When the PMS record was read, its own version is the If-Match value."""
    link = LinkedPair("1", "m1", shadow=ACME, pms_version=4)
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("1", {**ACME, "name": "New"})],
        pms_changes=[rec("m1", ACME, version=6)],
        links=[link],
    )
    assert actions == [UpdatePMS("1", "m1", {"name": "New"}, 6)]


def test_replan_after_stale_version_keeps_the_concurrent_pms_edit() -> None:
    """After a 412 the pair is planned again from the fresh PMS record: both edits survive."""
    link = LinkedPair("1", "m1", shadow=ACME, pms_version=4)
    po = rec("1", {**ACME, "name": "Acme Holding AS"})
    (stale,) = plan_link(link, po, None)
    assert stale == UpdatePMS("1", "m1", {"name": "Acme Holding AS"}, 4)
    fresh = rec("m1", {**ACME, "email": "new@acme.no"}, version=5)
    assert plan_link(link, po, fresh) == [
        UpdatePMS("1", "m1", {"name": "Acme Holding AS"}, 5),
        UpdatePowerOffice("1", "m1", {"email": "new@acme.no"}),
    ]


def test_pms_edit_of_linked_pair_updates_poweroffice() -> None:
    """A PMS edit reaches PowerOffice once the PowerOffice record was read."""
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("1", ACME)],
        pms_changes=[rec("m1", {**ACME, "email": "a@acme.no"})],
        links=[link],
    )
    assert actions == [UpdatePowerOffice("1", "m1", {"email": "a@acme.no"})]


def test_poweroffice_is_read_before_it_is_written() -> None:
    """A PMS edit for an unread PowerOffice record plans a Fetch of it, not a blind write."""
    link = LinkedPair("1", "m1", shadow=ACME)
    pms = rec("m1", {**ACME, "email": "a@acme.no"})
    (action,) = plan_flow(CUSTOMERS, po_changes=[], pms_changes=[pms], links=[link])
    assert isinstance(action, Fetch)
    assert action.side == "poweroffice"


def test_uncaptured_poweroffice_edit_becomes_a_conflict() -> None:
    """An edit PowerOffice's change capture missed (address only) is not silently overwritten."""
    shadow = {**ACME, "address.city": "Oslo"}
    link = LinkedPair("1", "m1", shadow=shadow)
    pms = rec("m1", {**shadow, "address.city": "Bergen"}, changed_at=T1)
    po = rec("1", {**shadow, "address.city": "Drammen"}, changed_at=T0)
    actions = plan_link(link, po, pms)
    conflict = next(a for a in actions if isinstance(a, RecordConflict)).conflict
    assert (conflict.poweroffice, conflict.pms, conflict.winner) == ("Drammen", "Bergen", "pms")


def test_echo_is_unchanged() -> None:
    """The change event of tolken's own write equals the shadow: Unchanged, nothing written."""
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(CUSTOMERS, po_changes=[], pms_changes=[rec("m1", ACME)], links=[link])
    assert actions == [Unchanged("1", "m1")]


def test_conflict_is_recorded_before_the_writes() -> None:
    """A conflict is stored before any write, so the losing value is never lost to a crash."""
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("1", {**ACME, "name": "A", "email": "x@y.no"}, changed_at=T0)],
        pms_changes=[rec("m1", {**ACME, "name": "B"}, changed_at=T1, version=2)],
        links=[link],
    )
    assert kinds(actions) == ["RecordConflict", "UpdatePMS", "UpdatePowerOffice"]
    assert actions[1] == UpdatePMS("1", "m1", {"email": "x@y.no"}, 2)
    assert actions[2] == UpdatePowerOffice("1", "m1", {"name": "B"})


def test_pms_tombstone_marks_link_and_spares_poweroffice() -> None:
    """A PMS delete marks the link pms-deleted; nothing is written to PowerOffice."""
    link = LinkedPair("1", "m1", shadow=ACME)
    tomb = ProjectedRecord("m1", {}, deleted=True)
    actions = plan_flow(
        CUSTOMERS, po_changes=[rec("1", {**ACME, "name": "X"})], pms_changes=[tomb], links=[link]
    )
    assert actions == [MarkPMSDeleted("1", "m1")]


def test_poweroffice_tombstone_never_blanks_the_pms_record() -> None:
    """A deleted PowerOffice record passed as a change writes nothing (the reconcile handles it)."""
    link = LinkedPair("1", "m1", shadow=ACME)
    tomb = ProjectedRecord("1", {}, deleted=True)
    actions = plan_flow(CUSTOMERS, po_changes=[tomb], pms_changes=[rec("m1", ACME)], links=[link])
    assert kinds(actions) == ["Skipped"]


def test_tombstone_of_unlinked_pms_record_does_nothing() -> None:
    """Deleting a PMS record tolken never linked plans nothing."""
    tomb = ProjectedRecord("m9", {}, deleted=True)
    assert plan_flow(CUSTOMERS, po_changes=[], pms_changes=[tomb], links=[]) == []


def test_inactive_link_is_skipped() -> None:
    """Edits to a pair whose link is pms-deleted are not synchronised (and nothing is recreated)."""
    link = LinkedPair("1", "m1", shadow=ACME, status="pms-deleted")
    actions = plan_flow(
        CUSTOMERS, po_changes=[rec("1", {**ACME, "name": "X"})], pms_changes=[], links=[link]
    )
    assert actions == [Skipped("1", "m1", "link is pms-deleted")]


def test_missing_side_without_shadow_is_fetched() -> None:
    """A hand-made link with no shadow cannot merge from one side: the other side is fetched."""
    link = LinkedPair("1", "m1")
    actions = plan_flow(CUSTOMERS, po_changes=[rec("1", ACME)], pms_changes=[], links=[link])
    assert len(actions) == 1
    assert isinstance(actions[0], Fetch)
    assert actions[0] == Fetch("1", "m1", "pms", actions[0].reason)
    assert "email" in actions[0].reason


def test_parked_conflict_needs_both_sides() -> None:
    """With a manual conflict open, a change from one side fetches the other, not the shadow."""
    ctx = FlowContext("t1", "customers", policy="manual")
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(ctx, po_changes=[], pms_changes=[rec("m1", ACME)], links=[link])
    assert len(actions) == 1
    assert isinstance(actions[0], Fetch)
    assert actions[0].side == "poweroffice"


def test_manual_policy_never_trusts_the_shadow_for_an_unread_side() -> None:
    """Under manual, a one-sided change fetches the other side even if nothing is known parked."""
    ctx = FlowContext("t1", "customers", policy="manual")
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(ctx, po_changes=[rec("1", ACME)], pms_changes=[], links=[link])
    assert [type(a) for a in actions] == [Fetch]


def test_manual_conflict_parks_the_field() -> None:
    """A manual conflict is recorded with no winner, and nothing is written."""
    ctx = FlowContext("t1", "customers", policy="manual")
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(
        ctx,
        po_changes=[rec("1", {**ACME, "name": "A"})],
        pms_changes=[rec("m1", {**ACME, "name": "B"})],
        links=[link],
    )
    assert kinds(actions) == ["RecordConflict"]
    conflict = actions[0]
    assert isinstance(conflict, RecordConflict)
    assert conflict.conflict.field == "name"
    assert conflict.conflict.winner is None


def test_settled_parked_conflict_only_moves_the_shadow() -> None:
    """When a person makes both sides agree on a parked field, only the shadow moves."""
    ctx = FlowContext("t1", "customers", policy="manual")
    link = LinkedPair("1", "m1", shadow=ACME)
    same = {**ACME, "name": "B"}
    actions = plan_flow(
        ctx, po_changes=[rec("1", same)], pms_changes=[rec("m1", same)], links=[link]
    )
    assert actions == [SaveShadow("1", "m1", {"name": "B"})]


def test_hand_made_link_merges_with_first_link_rules() -> None:
    """A hand-made link (no shadow) with both records fills empty fields and never blanks any."""
    link = LinkedPair("1", "m1")
    actions = plan_link(
        link,
        rec("1", {"name": "Acme", "email": None}),
        rec("m1", {"name": "Acme", "email": "a@b.no"}),
    )
    assert actions == [
        UpdatePowerOffice("1", "m1", {"email": "a@b.no"}),
        SaveShadow("1", "m1", {"name": "Acme"}),
    ]


def test_duplicate_change_events_use_the_latest() -> None:
    """A record seen twice in one batch (overlap window) is planned once, from its last copy."""
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("1", {**ACME, "name": "Old"}), rec("1", {**ACME, "name": "New"})],
        pms_changes=[],
        links=[link],
    )
    assert actions == [UpdatePMS("1", "m1", {"name": "New"}, None)]


def test_pair_changed_on_both_sides_is_planned_once() -> None:
    """A pair in both change sets yields one merge, not two."""
    link = LinkedPair("1", "m1", shadow=ACME)
    actions = plan_flow(
        CUSTOMERS,
        po_changes=[rec("1", {**ACME, "name": "A"})],
        pms_changes=[rec("m1", {**ACME, "email": "e@x.no"})],
        links=[link],
    )
    assert kinds(actions) == ["UpdatePMS", "UpdatePowerOffice"]


def test_plan_is_deterministic_in_input_order() -> None:
    """The same changes in a different order give the same plan."""
    changes = [rec(str(i), {**ACME, "organization_number": str(900000000 + i)}) for i in range(5)]
    one = plan_flow(CUSTOMERS, po_changes=changes, pms_changes=[], links=[])
    two = plan_flow(CUSTOMERS, po_changes=list(reversed(changes)), pms_changes=[], links=[])
    assert one == two
