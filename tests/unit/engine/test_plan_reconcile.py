"""Deletes seen by a full listing (DESIGN §4 "Deletes"): confirm, breakers, outage."""

from __future__ import annotations

import pytest

from tolken.engine.model import (
    Action,
    DeactivateInPMS,
    LinkedPair,
    MarkPMSDeleted,
    MassDeleteBlocked,
    ReconcilePlan,
    SourceOutage,
    UpdatePMS,
)
from tolken.engine.plan import check_mass_deactivation, plan_reconcile


def links(n: int) -> list[LinkedPair]:
    return [LinkedPair(str(i), f"m{i}", shadow={"name": str(i)}) for i in range(n)]


def listed(n: int, *, without: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    return [str(i) for i in range(n) if i not in without]


def test_nothing_vanished_plans_nothing() -> None:
    """A listing holding every linked record plans no deletes."""
    outcome = plan_reconcile("poweroffice", listed(20), links(20))
    assert outcome == ReconcilePlan((), listed=20, linked=20)


def test_vanished_poweroffice_record_deactivates_pms_record() -> None:
    """A PowerOffice record missing from the listing plans a deactivation of its PMS record."""
    outcome = plan_reconcile("poweroffice", listed(20, without={3}), links(20))
    assert isinstance(outcome, ReconcilePlan)
    assert outcome.actions == (DeactivateInPMS("3", "m3", {"active": False}),)


def test_inactive_values_follow_the_mapping() -> None:
    """The deactivation writes the flow's own inactive values."""
    outcome = plan_reconcile(
        "poweroffice",
        listed(20, without={3}),
        links(20),
        inactive_values={"active": False, "status": "archived"},
    )
    assert isinstance(outcome, ReconcilePlan)
    assert outcome.actions[0].values == {"active": False, "status": "archived"}  # type: ignore[union-attr]


def test_vanished_pms_record_is_marked_not_deleted_in_poweroffice() -> None:
    """A PMS record missing from a PMS listing only marks the link (after a GET 404)."""
    outcome = plan_reconcile("pms", [f"m{i}" for i in range(20) if i != 5], links(20))
    assert isinstance(outcome, ReconcilePlan)
    assert outcome.actions == (MarkPMSDeleted("5", "m5", confirm_by_get=True),)


def test_share_at_threshold_is_allowed() -> None:
    """Exactly 10 % vanished (2 of 20) is not more than the share: planned."""
    outcome = plan_reconcile("poweroffice", listed(20, without={1, 2}), links(20))
    assert isinstance(outcome, ReconcilePlan)
    assert len(outcome.actions) == 2


def test_mass_delete_breaker_blocks_above_threshold() -> None:
    """More than 10 % vanished (3 of 20) stops with MassDeleteBlocked, nothing deactivated."""
    outcome = plan_reconcile("poweroffice", listed(20, without={1, 2, 3}), links(20))
    assert isinstance(outcome, MassDeleteBlocked)
    assert outcome.would_delete == ("1", "2", "3")
    assert outcome.share == pytest.approx(0.15)


def test_configured_threshold_is_used() -> None:
    """A 20 % threshold lets 3 of 20 through."""
    outcome = plan_reconcile("poweroffice", listed(20, without={1, 2, 3}), links(20), threshold=0.2)
    assert isinstance(outcome, ReconcilePlan)


def test_confirmation_lifts_the_breaker() -> None:
    """An operator's confirmation lets a blocked mass delete proceed."""
    outcome = plan_reconcile(
        "poweroffice", listed(20, without={1, 2, 3}), links(20), confirmed=True
    )
    assert isinstance(outcome, ReconcilePlan)
    assert len(outcome.actions) == 3


def test_empty_listing_is_an_outage() -> None:
    """An empty full listing from a system with linked records is an outage, not deletes."""
    outcome = plan_reconcile("poweroffice", [], links(20), confirmed=True)
    assert outcome == SourceOutage("poweroffice", 20)


def test_empty_listing_without_links_is_fine() -> None:
    """An empty listing of an empty flow is simply empty."""
    assert plan_reconcile("poweroffice", [], []) == ReconcilePlan((), listed=0, linked=0)


def test_inactive_links_are_not_counted_or_deactivated_again() -> None:
    """Links already source-deleted are neither deactivated again nor counted in the share."""
    pairs = [
        *links(10),
        *(LinkedPair(f"x{i}", f"mx{i}", status="source-deleted") for i in range(30)),
    ]
    outcome = plan_reconcile("poweroffice", listed(10, without={4}), pairs)
    assert isinstance(outcome, ReconcilePlan)
    assert [a.po_id for a in outcome.actions] == ["4"]
    assert outcome.linked == 10


def test_threshold_outside_zero_to_one_is_rejected() -> None:
    """A share above 1 (e.g. 10 meant as percent) is an error."""
    with pytest.raises(ValueError, match="between 0 and 1"):
        plan_reconcile("poweroffice", listed(3), links(3), threshold=10)


def deactivate(i: int) -> UpdatePMS:
    return UpdatePMS(str(i), f"m{i}", {"active": False}, None)


def test_plan_within_share_passes_the_breaker() -> None:
    """A plan deactivating 1 of 20 linked records goes ahead."""
    assert check_mass_deactivation([deactivate(1)], linked=20) is None


def test_mass_archive_trips_the_breaker() -> None:
    """A plan whose updates deactivate 3 of 20 PMS records stops for confirmation."""
    actions = [deactivate(1), deactivate(2), deactivate(3), UpdatePMS("4", "m4", {"name": "x"}, 1)]
    blocked = check_mass_deactivation(actions, linked=20)
    assert blocked is not None
    assert blocked.would_delete == ("1", "2", "3")


def test_deactivations_from_deletes_count_too() -> None:
    """Confirmed-delete deactivations and archive updates add up against the share."""
    actions: list[Action] = [
        deactivate(1),
        DeactivateInPMS("2", "m2", {"active": False}),
        deactivate(3),
    ]
    assert check_mass_deactivation(actions, linked=20) is not None


def test_confirmed_mass_archive_goes_ahead() -> None:
    """With the operator's confirmation the breaker lets the plan through."""
    actions = [deactivate(i) for i in range(10)]
    assert check_mass_deactivation(actions, linked=20, confirmed=True) is None


def test_reactivation_is_not_counted() -> None:
    """Writing active=True never trips the breaker."""
    actions = [UpdatePMS(str(i), f"m{i}", {"active": True}, None) for i in range(10)]
    assert check_mass_deactivation(actions, linked=20) is None
