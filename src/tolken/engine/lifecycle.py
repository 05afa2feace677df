"""Creates and deletes: the crash-safe create in either system, and confirmed deactivations.

A create commits its pending-create row before the POST; when a row is
already there (an earlier run crashed after or during the POST), the record is
looked up by its idempotency key first. A PowerOffice record that vanished is
deactivated in the PMS only after a GET answers 404; a PMS delete only marks
the link. Nothing is ever hard-deleted.

The functions take the flow's :class:`~tolken.engine.services.FlowServices`
and plain values, and return what they did; the executor keeps the cycle's
state (reports, pairs, failures) up to date from that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from tolken.connectors.base import RemoteRecord
from tolken.engine.model import CreateInPMS, CreateInPowerOffice, DeactivateInPMS, Side
from tolken.engine.pairs import PairState, without_empty
from tolken.engine.services import FlowServices
from tolken.errors import NotFound, RecordError
from tolken.mapping import pms_changes, poweroffice_changes
from tolken.store import Direction, DuplicatePendingCreate, HistoryEntry, PendingCreate

__all__ = [
    "Recovery",
    "create_in_pms",
    "create_in_poweroffice",
    "deactivate",
    "post_once",
    "recover_pending_creates",
]


def create_in_pms(
    svc: FlowServices,
    action: CreateInPMS,
    po_record: RemoteRecord | None,
    *,
    absent_keys: Collection[str],
    run_id: int | None,
) -> PairState:
    """Create the PMS twin of a PowerOffice record and link it (crash-safe); the new pair."""
    body = without_empty(pms_changes(svc.flow, action.values))
    record, pending_key = post_once(
        svc,
        "pms",
        action.po_id,
        (action.idempotency_key, action.idempotency_key),
        lambda: svc.pms.create(svc.pms_resource, body, idempotency_key=action.idempotency_key),
        absent_keys=absent_keys,
    )
    pair = PairState(None, action.po_id, record.id, dict(action.values), True)
    pair.see_po(po_record)
    pair.see_pms(record)
    svc.store_new_link(pair, ("to_pms", body, "new PowerOffice record"), pending_key, run_id)
    return pair


def create_in_poweroffice(
    svc: FlowServices,
    action: CreateInPowerOffice,
    pms_record: RemoteRecord | None,
    *,
    absent_keys: Collection[str],
    run_id: int | None,
) -> tuple[PairState, RemoteRecord | None]:
    """Create the PowerOffice twin of a PMS-only record and link it (crash-safe).

    Returns the new pair and the PMS record as written back (None when nothing
    PowerOffice assigned had to be sent back).
    """
    body = without_empty(poweroffice_changes(svc.flow, action.values, svc.resolver))
    # Departments and projects have no reference field in PowerOffice: their code is the key.
    remote_key = action.idempotency_key
    if svc.po_resource.casefold() != "customers":
        remote_key = str(body.get("Code") or "")
        if not remote_key:
            raise RecordError(
                f"a {svc.po_resource} record needs a code to be created in PowerOffice",
                system="poweroffice",
            )
    record, pending_key = post_once(
        svc,
        "poweroffice",
        action.pms_id,
        (action.idempotency_key, remote_key),
        lambda: svc.poweroffice.create(svc.po_resource, body, idempotency_key=remote_key),
        absent_keys=absent_keys,
    )
    values = dict(action.values)
    pair = PairState(None, record.id, action.pms_id, values, True)
    pair.see_po(record)
    pair.see_pms(pms_record)
    # PowerOffice fills in what the PMS left empty (a customer's Number): send it back now,
    # or the shadow would claim the PMS has it and the pair would never differ again.
    created = svc.project_po(record)
    assigned = {
        k: v
        for k, v in (created.values if created is not None else {}).items()
        if v is not None and v != values.get(k)
    }
    back = pms_changes(svc.flow, assigned)
    written_back = None
    if back:
        written_back = svc.pms.update(svc.pms_resource, action.pms_id, back)
        pair.see_pms(written_back)
        pair.fields.update(assigned)
    svc.store_new_link(pair, ("to_poweroffice", body, "new PMS record"), pending_key, run_id)
    return pair, written_back


def post_once(
    svc: FlowServices,
    target: Side,
    source_id: str,
    keys: tuple[str, str],
    post: Callable[[], RemoteRecord],
    *,
    absent_keys: Collection[str],
) -> tuple[RemoteRecord, str | None]:
    """The crash-safe create: pending row committed first, lookup by key before a re-post.

    ``keys`` is ``(pending-row key, key the remote system knows the record by)``.
    Returns the record and the pending key still to resolve (in the same
    transaction as the link, so a crash in between leaves the row pending).
    A pending row is never abandoned here: a create that was refused may be
    posted again later, and if that answer is lost, only a pending row lets the
    next run find the record by its key. ``absent_keys``: keys looked up this
    cycle and not found, so the record may be posted at once.
    """
    key, remote_key = keys
    try:
        svc.store.add_pending_create(svc.flow_id, target, source_id, key)
        open_key: str | None = key
    except DuplicatePendingCreate:
        # The key was used before: an interrupted or refused create. Look before posting.
        pending = svc.store.get_pending_create(key)
        open_key = key if pending is not None and pending.state == "pending" else None
        if key not in absent_keys:
            found = svc.connector(target).find_by_idempotency_key(svc.resource(target), remote_key)
            if found is not None:
                return found, open_key
    return post(), open_key


def deactivate(svc: FlowServices, action: DeactivateInPMS, run_id: int | None) -> None:
    """Make the PMS record of a vanished PowerOffice record inactive and end the link.

    The caller has confirmed the PowerOffice record is gone (GET 404).
    """
    body = pms_changes(svc.flow, action.values)
    with contextlib.suppress(NotFound):  # gone on both sides: only the link needs marking
        svc.pms.update(svc.pms_resource, action.pms_id, body)
    reason = "the PowerOffice record is gone (GET answered 404)"
    svc.end_link(action.po_id, "source-deleted", ("to_pms", "deactivate", body, reason), run_id)


@dataclass
class Recovery:
    """What :func:`recover_pending_creates` did: the pairs it linked, the keys nobody has."""

    linked: list[tuple[str, str]] = field(default_factory=list)
    absent_keys: set[str] = field(default_factory=set)


def recover_pending_creates(svc: FlowServices, run_id: int | None) -> Recovery:
    """Settle the creates an earlier run left pending (it crashed or lost the answer).

    Each is looked up by its idempotency key: a record that exists is linked
    to its source (the merge follows when the pair is next planned). One that
    does not exist stays pending (the planner creates it again with the same
    key), except when its source got linked meanwhile: then it is abandoned.
    Rows whose source is parked and not due yet are left for later, so a
    refused record costs no lookup per cycle.
    """
    recovery = Recovery()
    pendings = svc.store.pending_creates(svc.flow_id)
    if not pendings:
        return recovery
    now = svc.now()
    waiting = {
        (f.side, f.record_id)
        for f in svc.store.list_failures(svc.flow_id)
        if f.next_attempt_at > now
    }
    for pending in pendings:
        source_side: Side = "poweroffice" if pending.target == "pms" else "pms"
        if (source_side, pending.source_id) not in waiting:
            _recover_one(svc, pending, source_side, recovery, run_id)
    return recovery


def _recover_one(
    svc: FlowServices,
    pending: PendingCreate,
    source_side: Side,
    recovery: Recovery,
    run_id: int | None,
) -> None:
    to_pms = pending.target == "pms"
    store, flow_id = svc.store, svc.flow_id
    source_link = (
        store.get_link_by_po(flow_id, pending.source_id)
        if to_pms
        else store.get_link_by_pms(flow_id, pending.source_id)
    )
    if source_link is not None:
        store.abandon_pending_create(pending.idempotency_key)  # linked another way
        return
    if not to_pms and svc.po_resource.casefold() != "customers":
        return  # keyed by Code, known only from the record: the create path looks it up
    target = pending.target
    found = svc.connector(target).find_by_idempotency_key(
        svc.resource(target), pending.idempotency_key
    )
    if found is None:
        recovery.absent_keys.add(pending.idempotency_key)
        return
    po_id, pms_id = (pending.source_id, found.id) if to_pms else (found.id, pending.source_id)
    with store.transaction():
        if store.get_link_by_po(flow_id, po_id) is None and (
            store.get_link_by_pms(flow_id, pms_id) is None
        ):
            link = store.create_link(flow_id, po_id, pms_id)
            reason = "found by its idempotency key after an interrupted run"
            direction: Direction = "to_pms" if to_pms else "to_poweroffice"
            svc.record_history([HistoryEntry(link.id, direction, "create", {}, reason, run_id)])
            svc.resolver.add(flow_id, po_id, pms_id)
            recovery.linked.append((po_id, pms_id))
        store.resolve_pending_create(pending.idempotency_key, found.id)
    # The source was parked when its create failed ambiguously; it is settled now.
    store.resolve_failure(flow_id, source_side, pending.source_id)
