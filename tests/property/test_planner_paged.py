"""Planning a flow in pages gives the actions of planning it at once (any records, rules, pages).

The flow runner plans a page at a time (:mod:`tolken.engine.paged`); the
cross-record rules (a target claimed by two records, ambiguous candidates,
reported records not created, the way back when ``create_in_poweroffice`` is
on) must come out as :func:`~tolken.engine.plan.plan_flow` decides them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tolken.engine.match import DEFAULT_RULES
from tolken.engine.model import Action, ConflictPolicy, LinkedPair, ProjectedRecord
from tolken.engine.paged import plan_flow_paged
from tolken.engine.plan import FlowContext, plan_flow
from tolken.store import LinkState

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Few distinct keys, so that records collide: two claim one candidate, a rule finds several.
values_st = st.fixed_dictionaries(
    {
        "organization_number": st.sampled_from(["912345678", "912 345 678", "987654321", None]),
        "kind": st.sampled_from(["company", "person", "department"]),
    },
    optional={
        "email": st.sampled_from(["a@x.no", "A@x.no", "b@x.no", None]),
        "name": st.sampled_from(["Acme", "acme", "", None]),
        "active": st.booleans(),
    },
)
policy_st: st.SearchStrategy[ConflictPolicy] = st.sampled_from(
    ["newest-wins", "poweroffice-wins", "pms-wins", "manual"]
)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    """Changes of both sides, some linked (shadow or none), candidates overlapping them."""
    ids = st.integers(0, 7)

    def records(prefix: str, pms: bool) -> list[ProjectedRecord]:
        out = []
        for i in draw(st.lists(ids, max_size=8)):
            deleted = pms and draw(st.booleans()) and draw(st.booleans())
            out.append(
                ProjectedRecord(
                    f"{prefix}{i}",
                    {} if deleted else draw(values_st),
                    draw(st.sampled_from([None, T0])),
                    1 if pms else None,
                    frozenset({"customer_id"}) if draw(st.integers(0, 5)) == 0 else frozenset(),
                    deleted,
                )
            )
        return out

    linked = draw(st.lists(st.tuples(ids, ids), max_size=4))
    links, used_po, used_pms = [], set(), set()
    for po_i, pms_i in linked:
        if po_i in used_po or pms_i in used_pms:
            continue
        used_po.add(po_i)
        used_pms.add(pms_i)
        shadow = draw(st.none() | values_st)
        status: LinkState = draw(st.sampled_from(["active", "active", "source-deleted"]))
        links.append(LinkedPair(f"p{po_i}", f"m{pms_i}", shadow=shadow, status=status))
    return {
        "po_changes": records("p", False),
        "pms_changes": records("m", True),
        "links": links,
        "pms_candidates": [r for r in records("m", True) if not r.deleted],
        "po_candidates": [r for r in records("p", False) if not r.unresolved],
    }


def _canonical(actions: list[Action]) -> list[str]:
    return sorted(repr(a) for a in actions)


@settings(max_examples=300)
@given(
    worlds(),
    policy_st,
    st.booleans(),
    st.sampled_from(["customers", "departments"]),
    st.integers(1, 6),
)
def test_planning_in_pages_gives_the_actions_of_planning_at_once(
    world: dict[str, Any],
    policy: ConflictPolicy,
    create_in_poweroffice: bool,
    flow: str,
    page_size: int,
) -> None:
    """For any records, links, candidates, rules and page size: the same actions, none lost."""
    ctx = FlowContext("t", flow, policy, create_in_poweroffice, DEFAULT_RULES[flow])
    whole = plan_flow(ctx, **world)
    paged = plan_flow_paged(ctx, **world, page_size=page_size)
    assert _canonical(paged) == _canonical(whole)
