"""The planner: changed records + links + shadows → the actions that bring one flow in sync.

Pure functions over values (no I/O). The executor reads the changes, projects
them through the mapping, calls :func:`plan_flow`, and applies the returned
actions in order; each action's docstring in :mod:`tolken.engine.model` says
how. Deletes seen by a full listing go through :func:`plan_reconcile`.

Order of a flow's plan: first the linked pairs that changed (sorted by
PowerOffice id), then unlinked PowerOffice records (link to a match, or
create in the PMS), then unlinked PMS records (link, create in PowerOffice
when the flow allows it, or skip). For one pair the order is
``RecordConflict``\\* → ``UpdatePMS`` → ``UpdatePowerOffice`` → ``SaveShadow``:
conflicts are stored before a write overwrites a losing value, and the
conditional PMS write goes first so a stale version costs no PowerOffice write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType

from tolken.engine.match import CandidateIndex, MatchRule
from tolken.engine.merge import merge_fields, values_equal
from tolken.engine.model import (
    Action,
    Ambiguous,
    ConflictPolicy,
    CreateInPMS,
    CreateInPowerOffice,
    DeactivateInPMS,
    Fetch,
    Link,
    LinkedPair,
    MarkPMSDeleted,
    MassDeleteBlocked,
    ProjectedRecord,
    ReconcileOutcome,
    ReconcilePlan,
    RecordConflict,
    SaveShadow,
    Side,
    Skipped,
    SourceOutage,
    Unchanged,
    UpdatePMS,
    UpdatePowerOffice,
    Values,
    Wait,
)

__all__ = [
    "DEFAULT_INACTIVE",
    "SKIPPED_PMS_ONLY",
    "FlowContext",
    "check_mass_deactivation",
    "idempotency_key",
    "plan_first_link",
    "plan_flow",
    "plan_link",
    "plan_reconcile",
]

SKIPPED_PMS_ONLY = "PMS-only record; create_in_poweroffice is off for this flow"
"""The reason of the :class:`Skipped` for a PMS-only record."""

DEFAULT_INACTIVE: Values = MappingProxyType({"active": False})
"""The flat values that make a PMS record inactive in the default mapping."""


@dataclass(frozen=True)
class FlowContext:
    """What the planner needs to know about a flow besides the records."""

    tenant: str
    flow: str
    policy: ConflictPolicy = "newest-wins"
    create_in_poweroffice: bool = False
    rules: tuple[MatchRule, ...] = ()


def idempotency_key(tenant: str, flow: str, side: Side, source_id: str) -> str:
    """The create key for ``source_id`` (a record of ``side``): the same inputs give the same key.

    43 characters, within PowerOffice's 50-character ``ExternalImportReference``.
    """
    digest = hashlib.sha256("\x1f".join((tenant, flow, side, source_id)).encode()).hexdigest()
    return f"tk-{digest[:40]}"


def _dedupe(records: Iterable[ProjectedRecord]) -> dict[str, ProjectedRecord]:
    # A record listed twice (overlap window, webhook + feed): the later copy is the fresher one.
    return {record.id: record for record in records}


def _unresolved_reason(record: ProjectedRecord) -> str:
    names = ", ".join(sorted(record.unresolved))
    return f"waiting for a link: {names} refers to a record that is not linked yet"


def plan_link(
    link: LinkedPair,
    po: ProjectedRecord | None,
    pms: ProjectedRecord | None,
    *,
    policy: ConflictPolicy = "newest-wins",
) -> list[Action]:
    """The actions for one linked pair; pass the side(s) that changed (or were re-read).

    A side passed as None is taken to be unchanged since the last sync, i.e.
    equal to the shadow; when the shadow cannot stand in for it (no shadow for
    some field yet, or a ``manual`` conflict may be parked), the plan is a
    :class:`Fetch` of that side. PowerOffice is never written unread: a PMS
    change that must reach an unread PowerOffice record plans a Fetch of it
    (the PMS is protected by ``If-Match`` instead).
    """
    po_id, pms_id = link.po_id, link.pms_id
    blocked = _blocked(link, po, pms)
    if blocked is not None:
        return [blocked]
    if po is None and pms is None:
        return [Unchanged(po_id, pms_id)]
    po_unread = po is None
    if po is None or pms is None:
        filled = _with_stand_in(link, po, pms, policy)
        if isinstance(filled, Fetch):
            return [filled]
        po, pms = filled

    result = merge_fields(
        link.shadow,
        po.values,
        pms.values,
        policy=policy,
        po_changed_at=po.changed_at,
        pms_changed_at=pms.changed_at,
    )
    if po_unread and result.to_poweroffice:
        # PowerOffice has no If-Match, and its change capture can miss edits (an address
        # changed alone): read it before writing, so a concurrent edit becomes a conflict.
        reason = "PowerOffice is read before it is written (it has no If-Match)"
        return [Fetch(po_id, pms_id, "poweroffice", reason)]
    actions: list[Action] = [RecordConflict(po_id, pms_id, c) for c in result.conflicts]
    if result.to_pms:
        version = pms.version if pms.version is not None else link.pms_version
        actions.append(UpdatePMS(po_id, pms_id, result.to_pms, version))
    if result.to_poweroffice:
        actions.append(UpdatePowerOffice(po_id, pms_id, result.to_poweroffice))
    if result.settled:
        actions.append(SaveShadow(po_id, pms_id, result.settled))
    return actions or [Unchanged(po_id, pms_id)]


def _blocked(
    link: LinkedPair, po: ProjectedRecord | None, pms: ProjectedRecord | None
) -> Action | None:
    """The one action for a pair that is not merged at all (inactive, deleted, waiting)."""
    po_id, pms_id = link.po_id, link.pms_id
    if link.status != "active":
        return Skipped(po_id, pms_id, f"link is {link.status}")
    if pms is not None and pms.deleted:
        return MarkPMSDeleted(po_id, pms_id)
    if po is not None and po.deleted:
        # Never merge a tombstone's empty values into the PMS; deletes go through the
        # reconcile (GET 404, breaker) and end as a deactivation, not as blanked fields.
        return Skipped(po_id, pms_id, "deleted in PowerOffice; the reconcile deactivates it")
    if po is not None and po.unresolved:
        return Wait("poweroffice", po_id, _unresolved_reason(po))
    if pms is not None and pms.unresolved:
        return Wait("pms", pms_id, _unresolved_reason(pms))
    return None


def _with_stand_in(
    link: LinkedPair,
    po: ProjectedRecord | None,
    pms: ProjectedRecord | None,
    policy: ConflictPolicy,
) -> tuple[ProjectedRecord, ProjectedRecord] | Fetch:
    """Both sides, the one not read stood in for by the shadow; or a Fetch of it when the
    shadow cannot stand in."""
    po_id, pms_id = link.po_id, link.pms_id
    present = po if po is not None else pms
    assert present is not None  # for mypy: one of the two is set
    missing: Side = "poweroffice" if po is None else "pms"
    shadow = link.shadow if link.shadow is not None else {}
    unknown = sorted(name for name in present.values if name not in shadow)
    if unknown:
        return Fetch(po_id, pms_id, missing, f"no last synchronised value for {', '.join(unknown)}")
    if policy == "manual":
        # A field parked by a manual conflict differs on both sides and from the shadow,
        # so under ``manual`` the shadow cannot stand in for the side that was not read.
        return Fetch(po_id, pms_id, missing, "a manual conflict may be open; both sides are needed")
    stand_in = ProjectedRecord(
        id=po_id if po is None else pms_id,
        values={name: shadow[name] for name in present.values},
        version=link.pms_version,
    )
    return (stand_in, present) if po is None else (present, stand_in)


def plan_flow(
    ctx: FlowContext,
    *,
    po_changes: Iterable[ProjectedRecord],
    pms_changes: Iterable[ProjectedRecord],
    links: Iterable[LinkedPair],
    pms_candidates: Iterable[ProjectedRecord] = (),
    po_candidates: Iterable[ProjectedRecord] = (),
) -> list[Action]:
    """Plan one flow.

    ``po_changes`` / ``pms_changes``: the changed records of each side,
    projected (PMS tombstones have ``deleted=True``). ``links``: the flow's
    links with their shadows (all of them, or at least those touching the
    changed records and the candidates). ``pms_candidates``: unlinked PMS
    records a PowerOffice record may match (on a first run: all of them);
    ``po_candidates``: the same for PMS-only records when
    ``ctx.create_in_poweroffice`` is on. Unlinked changed records are
    candidates too.
    """
    po_by_id = _dedupe(po_changes)
    pms_by_id = _dedupe(pms_changes)
    links_by_po: dict[str, LinkedPair] = {}
    links_by_pms: dict[str, LinkedPair] = {}
    for link in links:
        links_by_po[link.po_id] = link
        links_by_pms[link.pms_id] = link

    touched = {links_by_po[i].po_id: links_by_po[i] for i in po_by_id if i in links_by_po}
    touched.update({links_by_pms[i].po_id: links_by_pms[i] for i in pms_by_id if i in links_by_pms})
    actions: list[Action] = []
    for po_id in sorted(touched):
        link = touched[po_id]
        pair = plan_link(link, po_by_id.get(po_id), pms_by_id.get(link.pms_id), policy=ctx.policy)
        actions.extend(pair)

    new_po = [r for i, r in sorted(po_by_id.items()) if i not in links_by_po and not r.deleted]
    new_pms = [r for i, r in sorted(pms_by_id.items()) if i not in links_by_pms and not r.deleted]

    pms_pool = _dedupe(chain(pms_candidates, new_pms))
    reported = _plan_new_po(ctx, new_po, pms_pool, set(links_by_pms), actions)

    if not ctx.create_in_poweroffice:
        for record in new_pms:
            if record.id not in reported:
                actions.append(Skipped(None, record.id, SKIPPED_PMS_ONLY))
        return actions

    po_pool = _dedupe(po_candidates)
    busy_po = set(links_by_po) | set(po_by_id)  # handled above, one way or another
    unreported = [r for r in new_pms if r.id not in reported]
    _plan_new_pms(ctx, unreported, po_pool, busy_po, actions)
    return actions


def _plan_new_po(
    ctx: FlowContext,
    new_po: list[ProjectedRecord],
    pms_pool: dict[str, ProjectedRecord],
    linked_pms: set[str],
    actions: list[Action],
) -> set[str]:
    """Match, link or create in the PMS each unlinked PowerOffice record (appended to
    ``actions``); returns the PMS ids now linked or reported."""
    pms_index = CandidateIndex.build("pms", pms_pool.values(), ctx.rules, exclude=linked_pms)
    reported: set[str] = set()  # PMS ids already linked or reported in this plan
    claims: dict[str, list[tuple[ProjectedRecord, str]]] = {}
    for record in new_po:
        if record.unresolved:
            actions.append(Wait("poweroffice", record.id, _unresolved_reason(record)))
            continue
        found = pms_index.find(record.values)
        if found.ambiguous:
            actions.append(Ambiguous("poweroffice", record.id, found.candidates, str(found.rule)))
            reported.update(found.candidates)
        elif found.unique is not None:
            claims.setdefault(found.unique, []).append((record, str(found.rule)))
        else:
            key = idempotency_key(ctx.tenant, ctx.flow, "poweroffice", record.id)
            actions.append(CreateInPMS(record.id, record.values, key))
    actions.extend(_link_claims(claims, pms_pool, "pms", ctx.policy))
    reported.update(claims)
    return reported


def _plan_new_pms(
    ctx: FlowContext,
    new_pms: list[ProjectedRecord],
    po_pool: dict[str, ProjectedRecord],
    busy_po: set[str],
    actions: list[Action],
) -> None:
    """Match, link or create in PowerOffice each unlinked, unreported PMS record (appended
    to ``actions``)."""
    po_index = CandidateIndex.build("poweroffice", po_pool.values(), ctx.rules, exclude=busy_po)
    back_claims: dict[str, list[tuple[ProjectedRecord, str]]] = {}
    for record in new_pms:
        if record.unresolved:
            actions.append(Wait("pms", record.id, _unresolved_reason(record)))
            continue
        found = po_index.find(record.values)
        if found.ambiguous:
            actions.append(Ambiguous("pms", record.id, found.candidates, str(found.rule)))
        elif found.unique is not None:
            back_claims.setdefault(found.unique, []).append((record, str(found.rule)))
        else:
            key = idempotency_key(ctx.tenant, ctx.flow, "pms", record.id)
            actions.append(CreateInPowerOffice(record.id, record.values, key))
    actions.extend(_link_claims(back_claims, po_pool, "poweroffice", ctx.policy))


def _link_claims(
    claims: Mapping[str, list[tuple[ProjectedRecord, str]]],
    pool: Mapping[str, ProjectedRecord],
    target: Side,
    policy: ConflictPolicy,
) -> list[Action]:
    """Link each uniquely claimed ``target`` record; one claimed by several records is ambiguous."""
    actions: list[Action] = []
    for target_id in sorted(claims):
        claimants = claims[target_id]
        if len(claimants) > 1:
            ids = tuple(sorted(record.id for record, _ in claimants))
            actions.append(Ambiguous(target, target_id, ids, claimants[0][1]))
            continue
        source, rule = claimants[0]
        actions.extend(plan_first_link(source, pool[target_id], target, rule, policy))
    return actions


def plan_first_link(
    source: ProjectedRecord,
    other: ProjectedRecord,
    target: Side,
    rule: str,
    policy: ConflictPolicy,
) -> list[Action]:
    """Link ``source`` to the ``target`` record ``other`` it alone matched, then merge the pair."""
    po, pms = (source, other) if target == "pms" else (other, source)
    link = LinkedPair(po_id=po.id, pms_id=pms.id, pms_version=pms.version)
    return [Link(po.id, pms.id, rule), *plan_link(link, po, pms, policy=policy)]


def plan_reconcile(
    side: Side,
    listed_ids: Collection[str],
    links: Iterable[LinkedPair],
    *,
    threshold: float = 0.10,
    confirmed: bool = False,
    inactive_values: Values = DEFAULT_INACTIVE,
) -> ReconcileOutcome:
    """Deletes seen by a full listing of ``side``'s ids for one flow.

    Active links whose ``side`` record is not listed vanished. An empty listing
    while active links exist is a :class:`SourceOutage`. More vanished records
    than ``threshold`` of the active links is a :class:`MassDeleteBlocked`
    unless ``confirmed``. Otherwise each vanished PowerOffice record gives a
    :class:`DeactivateInPMS` (PMS record set to ``inactive_values``) and each
    vanished PMS record a :class:`MarkPMSDeleted`; the executor applies each one
    only after a GET of the vanished record answers 404.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a share between 0 and 1, not {threshold!r}")
    listed = listed_ids if isinstance(listed_ids, AbstractSet) else set(listed_ids)
    # The links are streamed: only the vanished ones are kept (a flow may have 100,000s).
    active = 0
    gone: list[LinkedPair] = []
    for link in links:
        if link.status != "active":
            continue
        active += 1
        if (link.po_id if side == "poweroffice" else link.pms_id) not in listed:
            gone.append(link)
    if not active:
        return ReconcilePlan((), listed=len(listed), linked=0)
    if not listed:
        return SourceOutage(side, active)
    gone.sort(key=lambda link: (link.po_id, link.pms_id))
    if gone and not confirmed and len(gone) > threshold * active:
        ids = tuple(link.po_id if side == "poweroffice" else link.pms_id for link in gone)
        return MassDeleteBlocked(side, ids, active, threshold)
    actions: tuple[DeactivateInPMS | MarkPMSDeleted, ...]
    if side == "poweroffice":
        actions = tuple(DeactivateInPMS(g.po_id, g.pms_id, dict(inactive_values)) for g in gone)
    else:
        actions = tuple(MarkPMSDeleted(g.po_id, g.pms_id, confirm_by_get=True) for g in gone)
    return ReconcilePlan(actions, listed=len(listed), linked=active)


def check_mass_deactivation(
    actions: Iterable[Action],
    *,
    linked: int,
    threshold: float = 0.10,
    confirmed: bool = False,
    inactive_values: Values = DEFAULT_INACTIVE,
) -> MassDeleteBlocked | None:
    """The breaker for a plan: would it make over ``threshold`` of ``linked`` PMS records inactive?

    Counts :class:`DeactivateInPMS` and every :class:`UpdatePMS` that writes the
    inactive values (a mass archive in PowerOffice, or a mapping gone wrong).
    Returns the :class:`MassDeleteBlocked` to stop on, or None to go ahead.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a share between 0 and 1, not {threshold!r}")
    deactivated = {
        action.po_id
        for action in actions
        if isinstance(action, DeactivateInPMS)
        or (isinstance(action, UpdatePMS) and _makes_inactive(action.fields, inactive_values))
    }
    if confirmed or not deactivated or len(deactivated) <= threshold * linked:
        return None
    return MassDeleteBlocked("poweroffice", tuple(sorted(deactivated)), linked, threshold)


def _makes_inactive(fields: Values, inactive_values: Values) -> bool:
    return bool(inactive_values) and all(
        name in fields and values_equal(fields[name], value)
        for name, value in inactive_values.items()
    )
