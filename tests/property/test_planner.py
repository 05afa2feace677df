"""Properties of the merge and the planner: idempotence, convergence, no silent loss, no echo.

These are pure: values in, actions out. That whole flows converge when the
product applies the plans (creates, links, writes, 412 re-plans, crashes,
every conflict policy) is claimed on the real engine, against both
simulators over loopback HTTP, by ``test_sync_state_machine.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tolken.engine.match import DEFAULT_RULES, NORMALISERS
from tolken.engine.merge import comparison_key, merge_fields
from tolken.engine.model import (
    Action,
    Ambiguous,
    ConflictPolicy,
    CreateInPMS,
    CreateInPowerOffice,
    Link,
    LinkedPair,
    ProjectedRecord,
    RecordConflict,
    SaveShadow,
    Unchanged,
    UpdatePMS,
    UpdatePowerOffice,
)
from tolken.engine.plan import FlowContext, plan_flow, plan_link

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# More examples than the profile's default: these are cheap and guard the core semantics.
MERGE_EXAMPLES = 150
FLOW_EXAMPLES = 150
FIELDS = ["organization_number", "name", "email", "city", "active", "start_date"]

# Values drawn with deliberate look-alikes (" Oslo", 10001 vs "10001", date forms, blanks)
# so the properties also cover normalisation: equal-for-the-user values must not ping-pong.
VALUES: list[Any] = [
    None,
    "",
    "  ",
    "Oslo",
    " Oslo",
    "oslo",
    "Bergen",
    10001,
    "10001",
    True,
    False,
    "2024-01-05",
    "2024-01-05T00:00:00",
    date(2024, 1, 5),
    date(2024, 2, 1),
]

values_st = st.sampled_from(VALUES)
record_st = st.dictionaries(st.sampled_from(FIELDS), values_st)
shadow_st = st.none() | record_st
policy_st: st.SearchStrategy[ConflictPolicy] = st.sampled_from(
    ["newest-wins", "poweroffice-wins", "pms-wins", "manual"]
)
time_st = st.sampled_from([None, T0, T0 + timedelta(seconds=1), T0 + timedelta(hours=1)])


_digits = NORMALISERS["digits"]


def key(values: Mapping[str, Any], name: str) -> Any:
    return comparison_key(values.get(name))


@settings(max_examples=MERGE_EXAMPLES)
@given(shadow_st, record_st, record_st, policy_st, time_st, time_st)
def test_merge_converges(
    shadow: dict[str, Any] | None,
    po: dict[str, Any],
    pms: dict[str, Any],
    policy: ConflictPolicy,
    po_at: datetime | None,
    pms_at: datetime | None,
) -> None:
    """After applying a merge's writes both sides and the shadow agree on every field not parked."""
    result = merge_fields(
        shadow, po, pms, policy=policy, po_changed_at=po_at, pms_changed_at=pms_at
    )
    po2, pms2 = {**po, **result.to_poweroffice}, {**pms, **result.to_pms}
    parked = {c.field for c in result.conflicts if c.winner is None}
    for name in (set(po2) | set(pms2)) - parked:
        assert key(po2, name) == key(pms2, name) == key(dict(result.shadow), name), name
    for name in parked:
        assert name not in result.to_poweroffice
        assert name not in result.to_pms


@settings(max_examples=MERGE_EXAMPLES)
@given(shadow_st, record_st, record_st, policy_st, time_st, time_st)
def test_merge_is_idempotent(
    shadow: dict[str, Any] | None,
    po: dict[str, Any],
    pms: dict[str, Any],
    policy: ConflictPolicy,
    po_at: datetime | None,
    pms_at: datetime | None,
) -> None:
    """Merging again after the writes: no write, no shadow change; only parked conflicts stay."""
    first = merge_fields(shadow, po, pms, policy=policy, po_changed_at=po_at, pms_changed_at=pms_at)
    po2, pms2 = {**po, **first.to_poweroffice}, {**pms, **first.to_pms}
    again = merge_fields(
        first.shadow, po2, pms2, policy=policy, po_changed_at=po_at, pms_changed_at=pms_at
    )
    assert not again.has_writes
    assert again.settled == {}
    assert again.conflicts == tuple(c for c in first.conflicts if c.winner is None)


@settings(max_examples=MERGE_EXAMPLES)
@given(shadow_st, record_st, record_st, policy_st, time_st, time_st)
def test_merge_loses_no_value_silently(
    shadow: dict[str, Any] | None,
    po: dict[str, Any],
    pms: dict[str, Any],
    policy: ConflictPolicy,
    po_at: datetime | None,
    pms_at: datetime | None,
) -> None:
    """An overwritten value was the last synced one, empty at first link, or a recorded loser."""
    result = merge_fields(
        shadow, po, pms, policy=policy, po_changed_at=po_at, pms_changed_at=pms_at
    )
    known = shadow or {}
    conflicts = {c.field: c for c in result.conflicts}
    for target, old, writes in (
        ("pms", pms, result.to_pms),
        ("poweroffice", po, result.to_poweroffice),
    ):
        for name in writes:
            if name in known and key(old, name) == key(known, name):
                continue  # the side still held what was last synchronised
            if name not in known and key(old, name) is None:
                continue  # first link: an empty field is filled
            if name not in known:
                assert key(writes, name) is not None, "first link blanked a value"
            conflict = conflicts[name]
            assert conflict.winner is not None
            assert conflict.winner != target
            assert conflict.losing_value == old.get(name)
            assert conflict.winning_value == writes[name]


@settings(max_examples=MERGE_EXAMPLES)
@given(
    st.dictionaries(st.sampled_from(FIELDS), values_st, min_size=1), record_st, record_st, policy_st
)
def test_one_sided_change_reaches_the_other_side(
    shadow: dict[str, Any], po: dict[str, Any], pms: dict[str, Any], policy: ConflictPolicy
) -> None:
    """A field changed on one side only (vs the shadow) goes to the other side, no conflict."""
    result = merge_fields(shadow, po, pms, policy=policy)
    conflicted = {c.field for c in result.conflicts}
    for name in shadow:
        po_moved, pms_moved = (
            key(po, name) != key(shadow, name),
            key(pms, name) != key(shadow, name),
        )
        if po_moved and not pms_moved:
            assert result.to_pms[name] == po.get(name)
        elif pms_moved and not po_moved:
            assert result.to_poweroffice[name] == pms.get(name)
        elif not po_moved:
            assert name not in result.to_pms
            assert name not in result.to_poweroffice
        if po_moved != pms_moved:
            assert name not in conflicted


@settings(max_examples=MERGE_EXAMPLES)
@given(
    shadow_st,
    record_st,
    record_st,
    st.sampled_from(["newest-wins", "poweroffice-wins", "pms-wins"]),
    time_st,
)
def test_echo_of_a_write_changes_nothing(
    shadow: dict[str, Any] | None,
    po: dict[str, Any],
    pms: dict[str, Any],
    policy: ConflictPolicy,
    at: datetime | None,
) -> None:
    """When the record tolken just wrote comes back as a change (alone), the pair is Unchanged."""
    result = merge_fields(shadow, po, pms, policy=policy, po_changed_at=at, pms_changed_at=at)
    link = LinkedPair("1", "m1", shadow=result.shadow, pms_version=7)
    po2 = ProjectedRecord("1", {**po, **result.to_poweroffice}, changed_at=at)
    pms2 = ProjectedRecord("m1", {**pms, **result.to_pms}, changed_at=at, version=7)
    assert plan_link(link, po2, None, policy=policy) == [Unchanged("1", "m1")]
    assert plan_link(link, None, pms2, policy=policy) == [Unchanged("1", "m1")]


# ---------------------------------------------------------------- a pair, planned twice

WRITES = (CreateInPMS, CreateInPowerOffice, Link, UpdatePMS, UpdatePowerOffice, SaveShadow)


def after(
    link: LinkedPair, po: dict[str, Any], pms: dict[str, Any], actions: list[Action]
) -> tuple[LinkedPair, dict[str, Any], dict[str, Any]]:
    """The pair's values once ``actions`` took effect (values only: what each action says)."""
    shadow = dict(link.shadow or {})
    for action in actions:
        if isinstance(action, UpdatePMS):
            pms, shadow = {**pms, **action.fields}, {**shadow, **action.fields}
        elif isinstance(action, UpdatePowerOffice):
            po, shadow = {**po, **action.fields}, {**shadow, **action.fields}
        elif isinstance(action, SaveShadow):
            shadow = {**shadow, **action.values}
    return LinkedPair(link.po_id, link.pms_id, shadow, "active", 8), po, pms


@settings(max_examples=FLOW_EXAMPLES)
@given(shadow_st, record_st, record_st, policy_st, time_st, time_st)
@example(  # found by Hypothesis: a parked manual conflict must not be settled from the shadow
    shadow={"organization_number": "912345678", "name": "Oslo"},
    po={"organization_number": None, "name": None},
    pms={"organization_number": "Oslo", "name": "Oslo"},
    policy="manual",
    po_at=None,
    pms_at=None,
)
def test_plan_of_a_pair_is_idempotent(
    shadow: dict[str, Any] | None,
    po: dict[str, Any],
    pms: dict[str, Any],
    policy: ConflictPolicy,
    po_at: datetime | None,
    pms_at: datetime | None,
) -> None:
    """A linked pair planned again once its plan took effect needs no write; parked stays parked."""
    link = LinkedPair("1", "m1", shadow=shadow, pms_version=7)
    first = plan_link(
        link,
        ProjectedRecord("1", po, changed_at=po_at),
        ProjectedRecord("m1", pms, changed_at=pms_at, version=7),
        policy=policy,
    )
    link2, po2, pms2 = after(link, po, pms, first)
    again = plan_link(
        link2,
        ProjectedRecord("1", po2, changed_at=po_at),
        ProjectedRecord("m1", pms2, changed_at=pms_at, version=8),
        policy=policy,
    )
    assert [a for a in again if isinstance(a, WRITES)] == []
    parked_first = [
        a.conflict for a in first if isinstance(a, RecordConflict) and a.conflict.winner is None
    ]
    parked_again = [a.conflict for a in again if isinstance(a, RecordConflict)]
    assert parked_again == parked_first


# ---------------------------------------------------------------- a first run

org_st = st.sampled_from(["912345678", "912 345 678", "987654321", "923456789", None])
world_record_st = st.fixed_dictionaries(
    {"organization_number": org_st, "kind": st.just("company")},
    optional={f: values_st for f in FIELDS if f != "organization_number"},
)


@settings(max_examples=FLOW_EXAMPLES)
@given(
    st.lists(world_record_st, max_size=6),
    st.lists(world_record_st, max_size=6),
    policy_st,
    st.booleans(),
)
def test_first_plan_links_or_creates_each_record_once(
    po_records: list[dict[str, Any]],
    pms_records: list[dict[str, Any]],
    policy: ConflictPolicy,
    create_in_poweroffice: bool,
) -> None:
    """A first run over two populated systems links or creates each record at most once, and
    creates a PMS record only when no PMS record has its organisation number."""
    ctx = FlowContext("t", "customers", policy, create_in_poweroffice, DEFAULT_RULES["customers"])
    po = [ProjectedRecord(f"p{i}", values, T0) for i, values in enumerate(po_records)]
    pms = [ProjectedRecord(f"m{i}", values, T0, 1) for i, values in enumerate(pms_records)]
    actions = plan_flow(
        ctx, po_changes=po, pms_changes=pms, links=[], pms_candidates=pms, po_candidates=po
    )
    po_ids = Counter(a.po_id for a in actions if isinstance(a, Link | CreateInPMS))
    pms_ids = Counter(a.pms_id for a in actions if isinstance(a, Link | CreateInPowerOffice))
    assert all(n == 1 for n in po_ids.values()), actions
    assert all(n == 1 for n in pms_ids.values()), actions
    creates = [a for a in actions if isinstance(a, CreateInPMS | CreateInPowerOffice)]
    assert len({a.idempotency_key for a in creates}) == len(creates)
    taken = {_digits(r.values.get("organization_number")) for r in pms} - {None}
    for action in actions:
        if isinstance(action, CreateInPMS):
            org = _digits(po_records[int(action.po_id[1:])].get("organization_number"))
            assert org is None or org not in taken, (action, taken)
        if isinstance(action, CreateInPowerOffice):
            assert create_in_poweroffice
    ambiguous = {a.record_id for a in actions if isinstance(a, Ambiguous)}
    assert not ambiguous & (set(po_ids) | set(pms_ids))
