"""Creates and deletes: the crash-safe create in either system, and confirmed deactivations.

A create commits its pending-create row before the POST; when a row is
already there (an earlier run crashed after or during the POST), the record is
looked up by its idempotency key first. A PowerOffice record that vanished is
deactivated in the PMS only after a GET answers 404; a PMS delete only marks
the link. Nothing is ever hard-deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine.model import (
    CreateInPMS,
    CreateInPowerOffice,
    DeactivateInPMS,
    MarkPMSDeleted,
    Side,
)
from tolken.engine.pairs import PairState, describe, without_empty
from tolken.errors import NotFound, RecordError
from tolken.mapping import pms_changes, poweroffice_changes
from tolken.store import Direction, DuplicateLink, DuplicatePendingCreate, LinkState

if TYPE_CHECKING:
    from tolken.engine.apply import Applier

__all__ = [
    "create_in_pms",
    "create_in_poweroffice",
    "deactivate",
    "mark_pms_deleted",
    "recover_pending_creates",
]


def create_in_pms(a: Applier, action: CreateInPMS) -> None:
    """Create the PMS twin of a PowerOffice record and link it (crash-safe)."""
    body = without_empty(pms_changes(a.flow, action.values))
    if a.dry_run:
        a.report.add("created")
        a._plan("create-in-pms", action.po_id, None, describe(action.values))
        return
    record, pending_key = _create(
        a,
        "pms",
        action.po_id,
        action.idempotency_key,
        action.idempotency_key,
        lambda: a.pms.create(a.pms_resource, body, idempotency_key=action.idempotency_key),
    )
    pair = PairState(None, action.po_id, record.id, dict(action.values), True)
    pair.see_po(a.po_records.get(action.po_id))
    pair.see_pms(record)
    _store_new_link(a, pair, "to_pms", body, "new PowerOffice record", pending_key)


def create_in_poweroffice(a: Applier, action: CreateInPowerOffice) -> None:
    """Create the PowerOffice twin of a PMS-only record and link it (crash-safe)."""
    body = without_empty(poweroffice_changes(a.flow, action.values, a.resolver))
    if a.dry_run:
        a.report.add("created")
        a._plan("create-in-poweroffice", None, action.pms_id, describe(action.values))
        return
    # Departments and projects have no reference field in PowerOffice: their code is the key.
    remote_key = action.idempotency_key
    if a.po_resource.casefold() != "customers":
        remote_key = str(body.get("Code") or "")
        if not remote_key:
            raise RecordError(
                f"a {a.po_resource} record needs a code to be created in PowerOffice",
                system="poweroffice",
            )
    record, pending_key = _create(
        a,
        "poweroffice",
        action.pms_id,
        action.idempotency_key,
        remote_key,
        lambda: a.poweroffice.create(a.po_resource, body, idempotency_key=remote_key),
    )
    values = dict(action.values)
    pair = PairState(None, record.id, action.pms_id, values, True)
    pair.see_po(record)
    pair.see_pms(a.pms_records.get(action.pms_id))
    # PowerOffice fills in what the PMS left empty (a customer's Number): send it back now,
    # or the shadow would claim the PMS has it and the pair would never differ again.
    created = a.project_po(record)
    assigned = {
        k: v
        for k, v in (created.values if created is not None else {}).items()
        if v is not None and v != values.get(k)
    }
    back = pms_changes(a.flow, assigned)
    if back:
        a.pms_records[action.pms_id] = a.pms.update(a.pms_resource, action.pms_id, back)
        pair.see_pms(a.pms_records[action.pms_id])
        pair.fields.update(assigned)
    _store_new_link(a, pair, "to_poweroffice", body, "new PMS record", pending_key)


def _create(
    a: Applier,
    target: Side,
    source_id: str,
    key: str,
    remote_key: str,
    post: Callable[[], RemoteRecord],
) -> tuple[RemoteRecord, str | None]:
    """The crash-safe create: pending row committed first, lookup by key before a re-post.

    Returns the record and the pending key still to resolve (in the same
    transaction as the link, so a crash in between leaves the row pending).
    A pending row is never abandoned here: a create that was refused may be
    posted again later, and if that answer is lost, only a pending row lets the
    next run find the record by its key.
    """
    connector = a.pms if target == "pms" else a.poweroffice
    resource = a.pms_resource if target == "pms" else a.po_resource
    try:
        a.store.add_pending_create(a.tenant, a.flow_id, target, source_id, key)
        open_key: str | None = key
    except DuplicatePendingCreate:
        # The key was used before: an interrupted or refused create. Look before posting.
        pending = a.store.get_pending_create(key)
        open_key = key if pending is not None and pending.state == "pending" else None
        if key not in a.absent_keys:
            found = connector.find_by_idempotency_key(resource, remote_key)
            if found is not None:
                return found, open_key
    return post(), open_key


def _store_new_link(
    a: Applier,
    pair: PairState,
    direction: str,
    body: Mapping[str, Any],
    reason: str,
    pending_key: str | None,
) -> None:
    created_id = pair.pms_id if direction == "to_pms" else pair.po_id
    try:
        with a.store.transaction():
            if pending_key is not None:
                a.store.resolve_pending_create(pending_key, created_id)
            link = a.store.create_link(a.tenant, a.flow_id, pair.po_id, pair.pms_id)
            pair.link_id = link.id
            a._save(pair, direction, "create", body, reason)
    except DuplicateLink:
        pair.link_id = None
        raise
    a._pairs[(pair.po_id, pair.pms_id)] = pair
    a.resolver.add(a.flow_id, pair.po_id, pair.pms_id)
    a.report.add("created")


def mark_pms_deleted(a: Applier, action: MarkPMSDeleted) -> None:
    if action.confirm_by_get and _exists(a.pms, a.pms_resource, action.pms_id):
        return
    a.report.add("pms_deleted")
    if a.dry_run:
        a._plan("mark-pms-deleted", action.po_id, action.pms_id, "deleted in the PMS")
        return
    _end_link(
        a,
        action.po_id,
        "pms-deleted",
        "to_poweroffice",
        "pms-deleted",
        {},
        "the PMS record was deleted; PowerOffice is left as it is",
    )


def deactivate(a: Applier, action: DeactivateInPMS) -> None:
    if _exists(a.poweroffice, a.po_resource, action.po_id):
        return  # still there: the listing missed it
    a.report.add("deactivated")
    body = pms_changes(a.flow, action.values)
    if a.dry_run:
        a._plan("deactivate-in-pms", action.po_id, action.pms_id, describe(action.values))
        return
    with contextlib.suppress(NotFound):  # gone on both sides: only the link needs marking
        a.pms.update(a.pms_resource, action.pms_id, body)
    _end_link(
        a,
        action.po_id,
        "source-deleted",
        "to_pms",
        "deactivate",
        body,
        "the PowerOffice record is gone (GET answered 404)",
    )


def _end_link(
    a: Applier,
    po_id: str,
    state: LinkState,
    direction: Direction,
    action: str,
    fields: Mapping[str, Any],
    reason: str,
) -> None:
    """Set the state of the link of ``po_id`` (if any) and record why, in one transaction."""
    link = a.store.get_link_by_po(a.tenant, a.flow_id, po_id)
    if link is not None:
        with a.store.transaction():
            a.store.set_link_state(link.id, state)
            a.history(link.id, direction, action, fields, reason, run_id=a.run_id)


def _exists(connector: Connector, resource: str, record_id: str) -> bool:
    try:
        connector.get(resource, record_id)
    except NotFound:
        return False
    return True


def recover_pending_creates(a: Applier) -> int:
    """Settle the creates an earlier run left pending (it crashed or lost the answer).

    Each is looked up by its idempotency key: a record that exists is linked
    to its source (the merge follows when the pair is next planned). One that
    does not exist stays pending (the planner creates it again with the same
    key), except when its source got linked meanwhile: then it is abandoned.
    Rows whose source is parked and not due yet are left for later, so a
    refused record costs no lookup per cycle. Returns how many were linked.
    """
    pendings = a.store.pending_creates(a.tenant, a.flow_id)
    if not pendings:
        return 0
    now = a.store.now()
    waiting = {
        (f.side, f.record_id)
        for f in a.store.list_failures(a.tenant, a.flow_id)
        if f.next_attempt_at > now
    }
    linked = 0
    for pending in pendings:
        to_pms = pending.target == "pms"
        source_side: Side = "poweroffice" if to_pms else "pms"
        if (source_side, pending.source_id) in waiting:
            continue
        source_link = (
            a.store.get_link_by_po(a.tenant, a.flow_id, pending.source_id)
            if to_pms
            else a.store.get_link_by_pms(a.tenant, a.flow_id, pending.source_id)
        )
        if source_link is not None:
            a.store.abandon_pending_create(pending.idempotency_key)  # linked another way
            continue
        if not to_pms and a.po_resource.casefold() != "customers":
            continue  # keyed by Code, known only from the record: the create path looks it up
        connector = a.pms if to_pms else a.poweroffice
        resource = a.pms_resource if to_pms else a.po_resource
        found = connector.find_by_idempotency_key(resource, pending.idempotency_key)
        if found is None:
            a.absent_keys.add(pending.idempotency_key)
            continue
        po_id, pms_id = (pending.source_id, found.id) if to_pms else (found.id, pending.source_id)
        with a.store.transaction():
            if a.store.get_link_by_po(a.tenant, a.flow_id, po_id) is None and (
                a.store.get_link_by_pms(a.tenant, a.flow_id, pms_id) is None
            ):
                link = a.store.create_link(a.tenant, a.flow_id, po_id, pms_id)
                a.history(
                    link.id,
                    "to_pms" if to_pms else "to_poweroffice",
                    "create",
                    {},
                    "found by its idempotency key after an interrupted run",
                    run_id=a.run_id,
                )
                a.resolver.add(a.flow_id, po_id, pms_id)
                a.report.add("created")  # the interrupted create, completed now
                linked += 1
            a.store.resolve_pending_create(pending.idempotency_key, found.id)
        # The source was parked when its create failed ambiguously; it is settled now.
        a.store.resolve_failure(a.tenant, a.flow_id, source_side, pending.source_id)
    return linked
