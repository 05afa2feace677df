"""Properties of the merge and the planner: idempotence, convergence, no silent loss, no echo."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tolken.engine.match import DEFAULT_RULES, NORMALISERS
from tolken.engine.merge import comparison_key, merge_fields
from tolken.engine.model import (
    Action,
    ConflictPolicy,
    CreateInPMS,
    CreateInPowerOffice,
    Fetch,
    FieldConflict,
    Link,
    LinkedPair,
    ProjectedRecord,
    RecordConflict,
    SaveShadow,
    Side,
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


# ---------------------------------------------------------------- a tiny executor

KIND = {"kind": "company"}  # every simulated customer is a company, so the org-number rule applies


def pms_stores(value: Any) -> Any:
    """The simulated PMS canonicalises on save (trims, dates as dates, numbers as strings).

    So the echo of a write differs in form from what tolken sent, as with a real system.
    """
    if isinstance(value, str):
        text = value.strip()
        return text[:10] if text.endswith("T00:00:00") else text
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass
class Stored:
    """One record held by a simulated system."""

    values: dict[str, Any]
    changed_at: datetime
    version: int = 1


@dataclass
class World:
    """Both systems and the link store in memory, plus an executor applying plans as documented."""

    policy: ConflictPolicy
    create_in_poweroffice: bool = False
    po: dict[str, Stored] = field(default_factory=dict)
    pms: dict[str, Stored] = field(default_factory=dict)
    links: dict[str, LinkedPair] = field(default_factory=dict)
    conflicts: list[FieldConflict] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)
    dirty: dict[Side, set[str]] = field(
        default_factory=lambda: {"poweroffice": set(), "pms": set()}
    )
    races: dict[str, tuple[str, Any]] = field(default_factory=dict)
    clock: int = 0
    original_pms: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ctx(self) -> FlowContext:
        return FlowContext(
            "t", "customers", self.policy, self.create_in_poweroffice, DEFAULT_RULES["customers"]
        )

    def now(self) -> datetime:
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    def system(self, side: Side) -> dict[str, Stored]:
        return self.po if side == "poweroffice" else self.pms

    def populate(self, po: list[dict[str, Any]], pms: list[dict[str, Any]]) -> None:
        for i, values in enumerate(po):
            self.po[f"p{i}"] = Stored({**values, **KIND}, self.now())
        for i, values in enumerate(pms):
            self.pms[f"m{i}"] = Stored({**values, **KIND}, self.now())
        self.original_pms = {i: dict(r.values) for i, r in self.pms.items()}

    def edit(self, side: Side, record_id: str, name: str, value: Any) -> None:
        record = self.system(side)[record_id]
        record.values[name] = pms_stores(value) if side == "pms" else value
        record.changed_at = self.now()
        record.version += 1
        self.dirty[side].add(record_id)

    def edit_linked(self, side: Side, index: int, name: str, value: Any) -> None:
        pairs = sorted(self.links.values(), key=lambda link: link.po_id)
        if pairs:
            link = pairs[index % len(pairs)]
            self.edit(side, link.po_id if side == "poweroffice" else link.pms_id, name, value)

    def race_next_pms_write(self, index: int, name: str, value: Any) -> None:
        """A user edits this PMS record between tolken's read and its write (a 412 follows)."""
        pairs = sorted(self.links.values(), key=lambda link: link.po_id)
        if pairs:
            self.races[pairs[index % len(pairs)].pms_id] = (name, value)

    def projected(self, side: Side, record_id: str) -> ProjectedRecord:
        record = self.system(side)[record_id]
        return ProjectedRecord(record_id, dict(record.values), record.changed_at, record.version)

    def sync(self, *, full: bool = False) -> list[Action]:
        sides: tuple[Side, Side] = ("poweroffice", "pms")
        changed = {side: sorted(self.system(side) if full else self.dirty[side]) for side in sides}
        self.dirty = {"poweroffice": set(), "pms": set()}
        linked_po = set(self.links)
        linked_pms = {link.pms_id for link in self.links.values()}
        actions = plan_flow(
            self.ctx,
            po_changes=[self.projected("poweroffice", i) for i in changed["poweroffice"]],
            pms_changes=[self.projected("pms", i) for i in changed["pms"]],
            links=list(self.links.values()),
            pms_candidates=[
                self.projected("pms", i) for i in sorted(self.pms) if i not in linked_pms
            ],
            po_candidates=[
                self.projected("poweroffice", i) for i in sorted(self.po) if i not in linked_po
            ],
        )
        self.apply(actions)
        return actions

    def settle(self) -> None:
        """One run takes the pending edits across; the next sees only echoes and writes nothing."""
        self.races.clear()
        self.sync()
        assert self.writes_in(self.sync()) == [], "the echo of a run's writes caused writes"

    @staticmethod
    def writes_in(actions: list[Action]) -> list[Action]:
        writing = (
            CreateInPMS,
            CreateInPowerOffice,
            Link,
            UpdatePMS,
            UpdatePowerOffice,
            SaveShadow,
        )
        return [a for a in actions if isinstance(a, writing)]

    def _shadow_update(self, po_id: str, values: Any, pms_version: int | None = None) -> None:
        link = self.links[po_id]
        shadow = {**(link.shadow or {}), **values}
        version = link.pms_version if pms_version is None else pms_version
        self.links[po_id] = replace(link, shadow=shadow, pms_version=version)

    def replan(self, link: LinkedPair) -> list[Action]:
        """Plan one pair again from both current records (after a 412 or a Fetch)."""
        po = self.projected("poweroffice", link.po_id)
        return plan_link(link, po, self.projected("pms", link.pms_id), policy=self.policy)

    def apply(self, actions: list[Action], depth: int = 0) -> None:
        stale: tuple[str, str] | None = None
        for action in actions:
            if stale is not None and getattr(action, "pms_id", None) == stale[1]:
                continue  # the rest of a pair whose PMS write was stale: replanned instead
            if isinstance(action, CreateInPMS | CreateInPowerOffice):
                self._create(action)
            elif isinstance(action, Link):
                version = self.pms[action.pms_id].version
                self.links[action.po_id] = LinkedPair(
                    action.po_id, action.pms_id, None, "active", version
                )
            elif isinstance(action, UpdatePMS):
                if action.pms_id in self.races:
                    name, value = self.races.pop(action.pms_id)
                    self.edit("pms", action.pms_id, name, value)
                record = self.pms[action.pms_id]
                if action.expected_version != record.version:
                    assert depth < 5, "re-planning after 412 does not settle"
                    stale = (action.po_id, action.pms_id)
                    self.apply(self.replan(self.links[action.po_id]), depth + 1)
                    continue
                record.values.update({k: pms_stores(v) for k, v in action.fields.items()})
                record.version += 1
                record.changed_at = self.now()
                self.dirty["pms"].add(action.pms_id)
                self._shadow_update(action.po_id, action.fields, record.version)
            elif isinstance(action, UpdatePowerOffice):
                record = self.po[action.po_id]
                record.values.update(action.fields)
                record.changed_at = self.now()
                self.dirty["poweroffice"].add(action.po_id)
                self._shadow_update(action.po_id, action.fields)
            elif isinstance(action, SaveShadow):
                self._shadow_update(action.po_id, action.values)
            elif isinstance(action, RecordConflict):
                self.conflicts.append(action.conflict)
            elif isinstance(action, Fetch):
                assert depth < 5, "a fetch does not settle the pair"
                self.apply(self.replan(self.links[action.po_id]), depth + 1)

    def _create(self, action: CreateInPMS | CreateInPowerOffice) -> None:
        target: Side = "pms" if isinstance(action, CreateInPMS) else "poweroffice"
        new_id = self.created.get(action.idempotency_key)
        if new_id is None:
            new_id = f"{target[0]}new{len(self.created)}"
            self.created[action.idempotency_key] = new_id
            stored = {k: pms_stores(v) if target == "pms" else v for k, v in action.values.items()}
            self.system(target)[new_id] = Stored(stored, self.now())
            self.dirty[target].add(new_id)
        if isinstance(action, CreateInPMS):
            po_id, pms_id = action.po_id, new_id
        else:
            po_id, pms_id = new_id, action.pms_id
        self.links[po_id] = LinkedPair(
            po_id, pms_id, dict(action.values), "active", self.pms[pms_id].version
        )

    def assert_agree(self) -> None:
        parked = {(c.field, c.poweroffice, c.pms) for c in self.conflicts if c.winner is None}
        for link in self.links.values():
            po, pms = self.po[link.po_id].values, self.pms[link.pms_id].values
            for name in set(po) | set(pms):
                if comparison_key(po.get(name)) != comparison_key(pms.get(name)):
                    assert self.policy == "manual", (link, name, po, pms)
                    assert (name, po.get(name), pms.get(name)) in parked

    def assert_created_only_unmatched(self) -> None:
        """Every PMS record tolken created had no existing PMS record with the same org number."""
        taken = {_digits(v.get("organization_number")) for v in self.original_pms.values()}
        for link in self.links.values():
            if link.pms_id not in self.original_pms:
                org = _digits(self.po[link.po_id].values.get("organization_number"))
                assert org is None or org not in taken, (link, org)

    def assert_no_duplicates(self) -> None:
        pms_ids = [link.pms_id for link in self.links.values()]
        assert len(pms_ids) == len(set(pms_ids))
        assert len(self.created) == len(set(self.created.values()))


# ---------------------------------------------------------------- whole flows

org_st = st.sampled_from(["912345678", "912 345 678", "987654321", "923456789", None])
world_record_st = st.fixed_dictionaries(
    {"organization_number": org_st},
    optional={f: values_st for f in FIELDS if f != "organization_number"},
)
edit_st = st.tuples(
    st.sampled_from(["edit-po", "edit-pms", "sync", "race"]),
    st.integers(0, 7),
    st.sampled_from(FIELDS),
    values_st,
)


@settings(max_examples=FLOW_EXAMPLES)
@given(
    st.lists(world_record_st, max_size=6),
    st.lists(world_record_st, max_size=6),
    policy_st,
    st.booleans(),
)
def test_planner_is_idempotent(
    po_records: list[dict[str, Any]],
    pms_records: list[dict[str, Any]],
    policy: ConflictPolicy,
    create_in_poweroffice: bool,
) -> None:
    """A first run over two populated systems, applied, then planned again plans no write."""
    world = World(policy, create_in_poweroffice=create_in_poweroffice)
    world.populate(po_records, pms_records)
    world.sync(full=True)
    assert world.writes_in(world.sync(full=True)) == []
    world.assert_no_duplicates()
    world.assert_created_only_unmatched()


@settings(max_examples=FLOW_EXAMPLES)
@given(
    st.lists(world_record_st, min_size=1, max_size=5),
    st.lists(world_record_st, max_size=5),
    policy_st,
    st.lists(edit_st, max_size=25),
)
@example(  # found by Hypothesis: a parked manual conflict must not be settled from the shadow
    po_records=[{"organization_number": "912345678", "name": "Oslo"}],
    pms_records=[],
    policy="manual",
    steps=[
        ("edit-po", 0, "organization_number", None),
        ("edit-po", 0, "name", None),
        ("edit-pms", 0, "organization_number", "Oslo"),
    ],
)
def test_random_interleaved_edits_converge(
    po_records: list[dict[str, Any]],
    pms_records: list[dict[str, Any]],
    policy: ConflictPolicy,
    steps: list[tuple[str, int, str, Any]],
) -> None:
    """Random edits on both sides interleaved with runs (and racing PMS edits) end in agreement."""
    world = World(policy)
    world.populate(po_records, pms_records)
    world.sync(full=True)
    for op, index, name, value in steps:
        if op == "sync":
            world.sync()
        elif op == "race":
            world.race_next_pms_write(index, name, value)
        else:
            world.edit_linked("poweroffice" if op == "edit-po" else "pms", index, name, value)
    world.settle()
    assert world.writes_in(world.sync(full=True)) == []
    world.assert_agree()
    world.assert_no_duplicates()
