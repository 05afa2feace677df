"""Properties of the delete planning: the breaker and the outage rule always hold."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tolken.engine.model import (
    DeactivateInPMS,
    LinkedPair,
    LinkState,
    MassDeleteBlocked,
    ReconcilePlan,
    Side,
    SourceOutage,
)
from tolken.engine.plan import plan_reconcile

STATUSES: list[LinkState] = ["active", "active", "active", "source-deleted", "pms-deleted"]
status_st = st.sampled_from(STATUSES)
links_st = st.lists(status_st, max_size=40).map(
    lambda statuses: [LinkedPair(str(i), f"m{i}", status=s) for i, s in enumerate(statuses)]
)


@given(
    links_st,
    st.sets(st.integers(0, 50)),
    st.sampled_from(["poweroffice", "pms"]),
    st.floats(0, 1),
    st.booleans(),
)
def test_reconcile_respects_breaker_and_outage(
    links: list[LinkedPair],
    listed_numbers: set[int],
    side: Side,
    threshold: float,
    confirmed: bool,
) -> None:
    """Only vanished active links are touched; never an empty listing; never over the share."""
    listed = {str(n) if side == "poweroffice" else f"m{n}" for n in listed_numbers}
    outcome = plan_reconcile(side, listed, links, threshold=threshold, confirmed=confirmed)
    active = [link for link in links if link.status == "active"]
    vanished = [
        link
        for link in active
        if (link.po_id if side == "poweroffice" else link.pms_id) not in listed
    ]
    if isinstance(outcome, SourceOutage):
        assert not listed
        assert active
        return
    if isinstance(outcome, MassDeleteBlocked):
        assert not confirmed
        assert len(outcome.would_delete) == len(vanished) > threshold * len(active)
        return
    assert isinstance(outcome, ReconcilePlan)
    assert listed or not active
    assert confirmed or len(outcome.actions) <= threshold * len(active)
    assert {(a.po_id, a.pms_id) for a in outcome.actions} == {(v.po_id, v.pms_id) for v in vanished}
    assert all(isinstance(a, DeactivateInPMS) == (side == "poweroffice") for a in outcome.actions)
