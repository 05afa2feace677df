"""Conflicts parked by the ``manual`` policy and settled by a person: write the winner across.

A person settles a parked conflict (dashboard, or ``Store.resolve_conflict``)
by naming the winning side. The next cycle reads the winner's *current* value
of the field (a later edit on that side is not undone), writes it to the other
side and into the shadow, and notes the conflict id in the link's history so
it is applied once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tolken.engine.model import Action, SaveShadow, UpdatePMS, UpdatePowerOffice
from tolken.errors import NotFound
from tolken.store import ConflictRecord, Direction

if TYPE_CHECKING:
    from tolken.engine.apply import Applier

__all__ = ["apply_settled_conflicts"]

SETTLE = "settle-conflict"


def _pending(a: Applier) -> list[ConflictRecord]:
    settled = [
        c
        for c in a.store.list_conflicts(a.tenant, a.flow_id)
        if c.policy == "manual" and c.resolved and c.winner in ("poweroffice", "pms")
    ]
    out = []
    for conflict in settled:
        done = any(
            h.action == SETTLE and h.fields.get("conflict_id") == conflict.id
            for h in a.store.history_for_link(conflict.link_id)
        )
        if not done:
            out.append(conflict)
    return out


def apply_settled_conflicts(a: Applier) -> int:
    """Write the winners of hand-settled conflicts of the flow; returns how many were applied."""
    if a.ctx.policy != "manual" or a.dry_run:
        return 0  # only the manual policy parks conflicts for a person to settle
    applied = 0
    for conflict in _pending(a):
        link = a.store.get_link(conflict.link_id)
        if link is None or link.state != "active":
            continue
        po_id, pms_id = link.poweroffice_id, link.pms_id
        try:
            if conflict.winner == "pms":
                record = a.pms.get(a.pms_resource, pms_id)
                a.pms_records[pms_id] = record
                projected = a.project_pms(record)
            else:
                record = a.poweroffice.get(a.po_resource, po_id)
                a.po_records[po_id] = record
                projected = a.project_po(record)
        except NotFound:
            continue  # the record is gone; the reconcile deals with it
        if projected is None:
            continue
        values = {conflict.field: projected.values.get(conflict.field)}
        write: Action = (
            UpdatePowerOffice(po_id, pms_id, values)
            if conflict.winner == "pms"
            else UpdatePMS(po_id, pms_id, values, None)
        )
        a.apply([write, SaveShadow(po_id, pms_id, values)])
        if (("poweroffice", po_id) in a.open_failures) or (("pms", pms_id) in a.open_failures):
            continue  # the write was parked; try again next cycle
        direction: Direction = "to_poweroffice" if conflict.winner == "pms" else "to_pms"
        a.history(
            link.id,
            direction,
            SETTLE,
            {"conflict_id": conflict.id, "field": conflict.field},
            f"conflict {conflict.id} settled by hand for {conflict.winner}",
            run_id=a.run_id,
        )
        applied += 1
    return applied
