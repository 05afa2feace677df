"""Batches: many creates or first links applied with a few store transactions, not a few each.

The flow runner hands over runs of consecutive groups that need no per-record
decision: creates in the PMS, and first links whose two records already agree
(``[Link]`` or ``[Link, SaveShadow]``). Crash safety is as for one record:
pending rows are committed before any POST, and a created record whose link
was not committed yet is found by its idempotency key by the next run.
Anything unusual (a reused key, a duplicate link) falls back to the
one-by-one path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tolken.connectors.base import RemoteRecord
from tolken.engine.lifecycle import _store_new_link
from tolken.engine.model import Action, CreateInPMS, Link, SaveShadow, Unchanged
from tolken.engine.pairs import PairState, jsonable, link_reason, without_empty
from tolken.errors import Fatal, RecordError, Retriable
from tolken.mapping import pms_changes
from tolken.store import DuplicateLink, DuplicatePendingCreate, HistoryEntry

if TYPE_CHECKING:
    from tolken.engine.apply import Applier

__all__ = ["BATCH", "create_many_in_pms", "is_plain_link", "link_many"]

BATCH = 50
"""Groups per batch: small enough that a stop request is honoured quickly."""


def create_many_in_pms(a: Applier, actions: list[CreateInPMS]) -> None:
    """Create many PMS records with two store transactions for the lot instead of two each.

    Crash safety is unchanged: every pending row is committed before any POST,
    and a record whose link was not committed yet is found by its key by the
    next run. A key used before (an interrupted create) takes the one-by-one
    path, which looks the record up first.
    """
    if a.dry_run or len(actions) < 2:
        for action in actions:
            a.apply([action])
        return
    fresh, reused = _add_pending(a, actions)
    made: list[tuple[CreateInPMS, RemoteRecord, dict[str, Any]]] = []
    try:
        for action in fresh:
            body = without_empty(pms_changes(a.flow, action.values))
            try:
                record = a.pms.create(a.pms_resource, body, idempotency_key=action.idempotency_key)
            except Fatal:
                raise
            except (RecordError, Retriable) as exc:
                a.note_failure(exc)
                a.park("poweroffice", action.po_id, exc)
                continue
            a.note_success()
            made.append((action, record, body))
    finally:
        _link_created(a, made)
    for action in reused:
        a.apply([action])


def _add_pending(
    a: Applier, actions: list[CreateInPMS]
) -> tuple[list[CreateInPMS], list[CreateInPMS]]:
    """Commit the pending rows of a batch: (fresh, reused keys) actions."""
    try:
        # One statement for the lot; it fails as a whole when any key was used before.
        a.store.add_pending_creates(
            a.tenant, a.flow_id, "pms", [(x.po_id, x.idempotency_key) for x in actions]
        )
        return list(actions), []
    except DuplicatePendingCreate:
        pass
    fresh: list[CreateInPMS] = []
    reused: list[CreateInPMS] = []
    with a.store.transaction():
        for action in actions:
            try:
                a.store.add_pending_create(
                    a.tenant, a.flow_id, "pms", action.po_id, action.idempotency_key
                )
                fresh.append(action)
            except DuplicatePendingCreate:
                reused.append(action)
    return fresh, reused


def _link_created(a: Applier, made: list[tuple[CreateInPMS, RemoteRecord, dict[str, Any]]]) -> None:
    """Link, shadow and record the history of many new PMS records in one transaction."""
    if not made:
        return
    pairs: list[PairState] = []
    for action, record, _body in made:
        pair = PairState(None, action.po_id, record.id, dict(action.values), True)
        pair.see_po(a.po_records.get(action.po_id))
        pair.see_pms(record)
        pairs.append(pair)
    try:
        with a.store.transaction():
            a.store.resolve_pending_creates(
                {action.idempotency_key: record.id for action, record, _body in made}
            )
            links = a.store.create_links(a.tenant, a.flow_id, [(p.po_id, p.pms_id) for p in pairs])
            for pair, link in zip(pairs, links, strict=True):
                pair.link_id = link.id
            a.store.save_shadows({p.link_id: p.shadow() for p in pairs if p.link_id is not None})
            a.history_many(
                HistoryEntry(
                    link.id,
                    "to_pms",
                    "create",
                    jsonable(body),
                    "new PowerOffice record",
                    run_id=a.run_id,
                )
                for link, (_action, _record, body) in zip(links, made, strict=True)
            )
    except DuplicateLink:
        # Someone linked one of them meanwhile: settle them one by one.
        for pair, (action, _record, body) in zip(pairs, made, strict=True):
            try:
                _store_new_link(
                    a, pair, "to_pms", body, "new PowerOffice record", action.idempotency_key
                )
            except DuplicateLink as exc:
                a.park("poweroffice", action.po_id, exc)
        return
    for pair in pairs:
        pair.stored, pair.has_shadow = pair.shadow(), True
        a._pairs[(pair.po_id, pair.pms_id)] = pair
        a.resolver.add(a.flow_id, pair.po_id, pair.pms_id)
        a.report.add("created")
        a.settled({("poweroffice", pair.po_id)})


def is_plain_link(group: list[Action]) -> bool:
    """A first link whose records already agree: no write to either system."""
    return (
        isinstance(group[0], Link)
        and len(group) <= 2
        and all(isinstance(action, SaveShadow | Unchanged) for action in group[1:])
    )


def link_many(a: Applier, groups: list[list[Action]]) -> None:
    """Store many first links (and their agreed shadows) in one transaction."""
    if a.dry_run or len(groups) < 2:
        for group in groups:
            a.apply(group)
        return
    pairs: list[tuple[PairState, Link, bool]] = []
    for group in groups:
        link = group[0]
        assert isinstance(link, Link)
        values: dict[str, Any] = {}
        for action in group[1:]:
            if isinstance(action, SaveShadow):
                values.update(action.values)
        pair = PairState(None, link.po_id, link.pms_id, values, bool(values))
        pair.see_po(a.po_records.get(link.po_id))
        pair.see_pms(a.pms_records.get(link.pms_id))
        pairs.append((pair, link, isinstance(group[-1], Unchanged)))
    try:
        with a.store.transaction():
            links = a.store.create_links(
                a.tenant, a.flow_id, [(p.po_id, p.pms_id) for p, _l, _u in pairs]
            )
            for (pair, _link, _unchanged), stored in zip(pairs, links, strict=True):
                pair.link_id = stored.id
            a.store.save_shadows(
                {p.link_id: p.shadow() for p, _l, _u in pairs if p.has_shadow and p.link_id}
            )
            a.history_many(
                HistoryEntry(
                    stored.id, "to_pms", "link", {}, link_reason(link.rule), run_id=a.run_id
                )
                for stored, (_pair, link, _unchanged) in zip(links, pairs, strict=True)
            )
    except DuplicateLink:
        for group in groups:
            a.apply(group)  # one by one: the duplicate is parked, the others linked
        return
    for pair, _link, unchanged in pairs:
        if pair.has_shadow:
            pair.stored = pair.shadow()
        a._pairs[(pair.po_id, pair.pms_id)] = pair
        a.resolver.add(a.flow_id, pair.po_id, pair.pms_id)
        a.report.add("linked")
        if unchanged:
            a.report.add("unchanged")
        a.note_success()
        a.settled({("poweroffice", pair.po_id), ("pms", pair.pms_id)})
