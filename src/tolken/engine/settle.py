"""Conflicts parked by the ``manual`` policy and settled by a person: write the winner across.

A person settles a parked conflict (dashboard, or ``Store.resolve_conflict``)
by naming the winning side. The next cycle reads the winner's *current* value
of the field (a later edit on that side is not undone), writes it to the other
side and into the shadow, and notes the conflict id in the link's history so
it is applied once. The executor does the reads and writes; this module says
which conflicts are due, what to write and how to note it.
"""

from __future__ import annotations

from tolken.engine.model import Action, ProjectedRecord, SaveShadow, UpdatePMS, UpdatePowerOffice
from tolken.engine.services import FlowServices
from tolken.store import ConflictRecord, Direction, HistoryEntry, Link

__all__ = ["SETTLE", "note_settled", "settled_conflicts", "settling_writes"]

SETTLE = "settle-conflict"
"""The history action that marks a settled conflict as applied."""


def settled_conflicts(svc: FlowServices) -> list[tuple[ConflictRecord, Link]]:
    """The hand-settled conflicts of active links whose winner was not written yet."""
    out = []
    for conflict in svc.store.list_conflicts(svc.tenant, svc.flow_id):
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
