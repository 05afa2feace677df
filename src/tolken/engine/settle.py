"""Conflicts parked by the ``manual`` policy and settled by a person: write the winner across.

A person settles a parked conflict (dashboard, or ``Store.resolve_conflict``)
by naming the winning side. The next cycle reads the winner's *current* value
of the field (a later edit on that side is not undone), writes it to the other
side and into the shadow, and notes the conflict id in the link's history so
it is applied once. :func:`apply_settled_conflicts` does it through the
flow's :class:`~tolken.engine.executor.Executor` (its public methods), so a
write that fails is parked like any other.
"""

from __future__ import annotations

from tolken.engine.executor import Executor
from tolken.engine.model import Action, ProjectedRecord, SaveShadow, UpdatePMS, UpdatePowerOffice
from tolken.engine.services import FlowServices
from tolken.errors import NotFound
from tolken.store import ConflictRecord, Direction, HistoryEntry, Link
from tolken.vocabulary import Side

__all__ = [
    "SETTLE",
    "apply_settled_conflicts",
    "note_settled",
    "settled_conflicts",
    "settling_writes",
]

SETTLE = "settle-conflict"
"""The history action that marks a settled conflict as applied."""


def settled_conflicts(svc: FlowServices) -> list[tuple[ConflictRecord, Link]]:
    """The hand-settled conflicts of active links whose winner was not written yet."""
    out = []
    for conflict in svc.store.list_conflicts(svc.flow_id):
        if not (
            conflict.policy == "manual"
            and conflict.resolved
            and conflict.winner in ("poweroffice", "pms")
        ):
            continue
        done = any(
            h.action == SETTLE and h.fields.get("conflict_id") == conflict.id
            for h in svc.store.history_for_link(conflict.link_id)
        )
        link = None if done else svc.store.get_link(conflict.link_id)
        if link is not None and link.state == "active":
            out.append((conflict, link))
    return out


def settling_writes(conflict: ConflictRecord, link: Link, winner: ProjectedRecord) -> list[Action]:
    """The group that writes the winner's current value across and into the shadow."""
    po_id, pms_id = link.poweroffice_id, link.pms_id
    values = {conflict.field: winner.values.get(conflict.field)}
    write: Action = (
        UpdatePowerOffice(po_id, pms_id, values)
        if conflict.winner == "pms"
        else UpdatePMS(po_id, pms_id, values, None)
    )
    return [write, SaveShadow(po_id, pms_id, values)]


def note_settled(svc: FlowServices, conflict: ConflictRecord, run_id: int | None) -> None:
    """Note in the link's history that the settled conflict was applied (so it is applied once)."""
    direction: Direction = "to_poweroffice" if conflict.winner == "pms" else "to_pms"
    entry = HistoryEntry(
        conflict.link_id,
        direction,
        SETTLE,
        {"conflict_id": conflict.id, "field": conflict.field},
        f"conflict {conflict.id} settled by hand for {conflict.winner}",
        run_id=run_id,
    )
    svc.record_history([entry])


def apply_settled_conflicts(executor: Executor) -> int:
    """Write the winners of hand-settled conflicts of the flow; how many were applied."""
    svc, st = executor.services, executor.state
    if svc.ctx.policy != "manual" or st.dry_run:
        return 0  # only the manual policy parks conflicts for a person to settle
    applied = 0
    for conflict, link in settled_conflicts(svc):
        winner = _read_winner(executor, conflict, link)
        if winner is None:
            continue
        executor.apply(settling_writes(conflict, link, winner))
        keys = {("poweroffice", link.poweroffice_id), ("pms", link.pms_id)}
        if keys & st.open_failures:
            continue  # the write was parked; try again next cycle
        note_settled(svc, conflict, st.run_id)
        applied += 1
    return applied


def _read_winner(
    executor: Executor, conflict: ConflictRecord, link: Link
) -> ProjectedRecord | None:
    """The winning side's current record, projected (None when it is gone)."""
    svc = executor.services
    side: Side = "pms" if conflict.winner == "pms" else "poweroffice"
    record_id = link.pms_id if side == "pms" else link.poweroffice_id
    try:
        record = svc.connector(side).get(svc.resource(side), record_id)
    except NotFound:
        return None  # the record is gone; the reconcile deals with it
    executor.remember(side, record)
    return svc.project_pms(record) if side == "pms" else svc.project_po(record)
