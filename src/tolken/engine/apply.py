"""Apply a flow's planned actions: the writes, then link + shadow + history, atomically.

One :class:`Applier` per flow and cycle. Actions arrive in *groups*: everything
the planner said about one record or one linked pair, in plan order. A group
succeeds or is parked as a whole: a :class:`~tolken.errors.RecordError` (or a
:class:`~tolken.errors.Retriable` error the connector's own retries did not
cure) parks the record with the remote message, and the run goes on. After
each successful write the link's shadow and history are stored in one
transaction, so a crash between two writes re-plans only what is left.

A stale PMS version (412) or a :class:`~tolken.engine.model.Fetch` re-reads the
record and re-plans the pair (bounded). In a dry run nothing is written, not
even to the store: writes become :class:`~tolken.engine.report.PlannedChange`\\ s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine.cursor import content_hash
from tolken.engine.model import (
    Action,
    Ambiguous,
    CreateInPMS,
    CreateInPowerOffice,
    DeactivateInPMS,
    Fetch,
    Link,
    LinkedPair,
    MarkPMSDeleted,
    ProjectedRecord,
    RecordConflict,
    SaveShadow,
    Side,
    Skipped,
    Unchanged,
    UpdatePMS,
    UpdatePowerOffice,
    Wait,
)
from tolken.engine.plan import FlowContext, plan_link
from tolken.engine.report import AmbiguousMatch, CycleReport, FlowReport, PlannedChange
from tolken.engine.resolver import LinkResolver
from tolken.errors import Fatal, NotFound, RecordError, Retriable, StaleVersion, Unreachable
from tolken.mapping import Flow, pms_changes, poweroffice_changes, project, to_pms_flat
from tolken.store import DuplicateLink, Shadow, Store
from tolken.store.records import Flow as FlowId

__all__ = ["BY_HAND", "Applier", "group_actions"]

BY_HAND = "by hand (tolken link)"
"""The ``rule`` of a link made with ``tolken link``."""

MAX_REPLANS = 3
"""How often one pair is re-read and re-planned (412, Fetch) before it is parked."""

MAX_CONSECUTIVE_RETRIABLE = 5
"""Records in a row that failed transiently on one system before the run stops: it is down."""


def _key(action: Action) -> tuple[str, ...]:
    if isinstance(action, CreateInPMS):
        return ("create", "poweroffice", action.po_id)
    if isinstance(action, CreateInPowerOffice):
        return ("create", "pms", action.pms_id)
    if isinstance(action, Ambiguous | Wait):
        return ("one", action.source, action.record_id)
    if isinstance(action, Skipped):
        return ("skip", str(action.po_id), str(action.pms_id))
    return ("pair", action.po_id, action.pms_id)


def group_actions(actions: Sequence[Action]) -> Iterator[list[Action]]:
    """Split a plan into groups: consecutive actions about the same record or pair."""
    group: list[Action] = []
    for action in actions:
        if group and (_key(action) != _key(group[0]) or isinstance(action, Link)):
            yield group
            group = []
        group.append(action)
    if group:
        yield group


class _Replan(Exception):
    """Re-read ``side`` of the pair and plan it again."""

    def __init__(self, side: Side) -> None:
        super().__init__(side)
        self.side = side


@dataclass
class _Pair:
    """The live state of one linked pair while its group is applied."""

    link_id: int | None
    po_id: str
    pms_id: str
    fields: dict[str, Any]
    has_shadow: bool
    po_hash: str | None = None
    po_changed_at: datetime | None = None
    pms_version: int | None = None
    pms_hash: str | None = None
    pms_changed_at: datetime | None = None
    stored: Shadow | None = None

    def see_po(self, record: RemoteRecord | None) -> None:
        if record is not None and not record.deleted:
            self.po_hash = content_hash(record.data)
            self.po_changed_at = record.changed_at

    def see_pms(self, record: RemoteRecord | None) -> None:
        if record is not None and not record.deleted:
            self.pms_hash = content_hash(record.data)
            self.pms_changed_at = record.changed_at
            self.pms_version = record.version

    def shadow(self) -> Shadow:
        return Shadow(
            dict(self.fields),
            None,
            self.po_hash,
            self.po_changed_at,
            self.pms_version,
            self.pms_hash,
            self.pms_changed_at,
        )


@dataclass
class Applier:
    """Applies one flow's action groups; see the module docstring."""

    tenant: str
    flow_id: FlowId
    flow: Flow
    ctx: FlowContext
    store: Store
    poweroffice: Connector
    pms: Connector
    resolver: LinkResolver
    report: FlowReport
    cycle: CycleReport
    po_records: dict[str, RemoteRecord]
    pms_records: dict[str, RemoteRecord]
    open_failures: set[tuple[str, str]]
    dry_run: bool = False
    run_id: int | None = None
    waiting_po: set[str] = field(default_factory=set)
    waiting_pms: set[str] = field(default_factory=set)
    _retriable_streak: dict[str, int] = field(default_factory=dict)
    _pairs: dict[tuple[str, str], _Pair] = field(default_factory=dict)

    @property
    def po_resource(self) -> str:
        return self.flow.poweroffice

    @property
    def pms_resource(self) -> str:
        return self.flow.pms

    # -- groups ---------------------------------------------------------------

    def apply(self, group: list[Action]) -> None:
        """Apply one group; park the record on a record-level or lasting transient error."""
        first = group[0]
        side, record_id = _park_key(first)
        updated = False
        try:
            updated = self._apply_group(group, depth=0)
        except Fatal:
            raise
        except (RecordError, Retriable, StaleVersion) as exc:
            self._note_retriable(exc)
            self._park(side, record_id, exc)
            return
        self._retriable_streak.clear()
        if updated:
            self.report.add("updated")
        settled = not isinstance(first, Ambiguous | Wait)
        if settled and (side, record_id) in self.open_failures and not self.dry_run:
            self.store.resolve_failure(self.tenant, self.flow_id, _side(side), record_id)
            self.open_failures.discard((side, record_id))

    def _note_retriable(self, exc: Exception) -> None:
        if not isinstance(exc, Retriable):
            self._retriable_streak.clear()
            return
        system = exc.system or "remote system"
        streak = self._retriable_streak.get(system, 0) + 1
        self._retriable_streak = {system: streak}
        if streak >= MAX_CONSECUTIVE_RETRIABLE:
            raise Unreachable(
                f"{streak} records in a row failed after retries; last error: {exc.message}",
                system=system,
            ) from exc

    def _park(self, side: str, record_id: str, exc: Exception) -> None:
        self.report.add("failed")
        if self.dry_run:
            return
        if isinstance(exc, RecordError | Retriable | StaleVersion):
            self.store.record_error(self.tenant, self.flow_id, _side(side), record_id, exc)
        self.open_failures.add((side, record_id))

    def _apply_group(self, group: list[Action], *, depth: int) -> bool:
        updated = False
        for action in group:
            try:
                updated = self._apply_one(action) or updated
            except _Replan as replan:
                if depth >= MAX_REPLANS:
                    raise StaleVersion(
                        f"the record kept changing while tolken wrote it ({MAX_REPLANS} re-reads)",
                        system="pms" if replan.side == "pms" else "poweroffice",
                    ) from None
                assert not isinstance(action, CreateInPMS | CreateInPowerOffice | Ambiguous | Wait)
                assert not isinstance(action, Skipped)
                fresh = self._replan(action.po_id, action.pms_id, replan.side)
                return self._apply_group(fresh, depth=depth + 1) or updated
        return updated

    def _replan(self, po_id: str, pms_id: str, side: Side) -> list[Action]:
        if side == "pms":
            self.pms_records[pms_id] = self.pms.get(self.pms_resource, pms_id)
        else:
            self.po_records[po_id] = self.poweroffice.get(self.po_resource, po_id)
        pair = self._pair(po_id, pms_id)
        link = LinkedPair(
            po_id,
            pms_id,
            shadow=dict(pair.fields) if pair.has_shadow else None,
            pms_version=pair.pms_version,
        )
        po = self.project_po(self.po_records.get(po_id))
        pms = self.project_pms(self.pms_records.get(pms_id))
        return plan_link(link, po, pms, policy=self.ctx.policy)

    # -- projections ----------------------------------------------------------

    def project_po(self, record: RemoteRecord | None) -> ProjectedRecord | None:
        """A PowerOffice record in the flat field space (unresolved references noted)."""
        if record is None:
            return None
        unresolved: set[str] = set()
        values = to_pms_flat(self.flow, record.data, self.resolver, unresolved=unresolved)
        return ProjectedRecord(
            record.id, values, changed_at=record.changed_at, unresolved=frozenset(unresolved)
        )

    def project_pms(self, record: RemoteRecord | None) -> ProjectedRecord | None:
        """A PMS record (or tombstone) in the flat field space."""
        if record is None:
            return None
        if record.deleted:
            return ProjectedRecord(record.id, {}, deleted=True)
        return ProjectedRecord(
            record.id,
            project(self.flow, record.data),
            changed_at=record.changed_at,
            version=record.version,
        )

    # -- pairs ----------------------------------------------------------------

    def _pair(self, po_id: str, pms_id: str) -> _Pair:
        key = (po_id, pms_id)
        pair = self._pairs.get(key)
        if pair is None:
            link = self.store.get_link_by_po(self.tenant, self.flow_id, po_id)
            shadow = self.store.load_shadow(link.id) if link is not None else None
            pair = _Pair(
                link.id if link is not None else None,
                po_id,
                pms_id,
                dict(shadow.fields) if shadow is not None else {},
                shadow is not None,
                stored=shadow,
            )
            if shadow is not None:
                pair.po_hash, pair.po_changed_at = (
                    shadow.poweroffice_hash,
                    shadow.poweroffice_changed_at,
                )
                pair.pms_version, pair.pms_hash = shadow.pms_version, shadow.pms_hash
                pair.pms_changed_at = shadow.pms_changed_at
            pair.see_po(self.po_records.get(po_id))
            pair.see_pms(self.pms_records.get(pms_id))
            self._pairs[key] = pair
        return pair

    def _save(
        self,
        pair: _Pair,
        direction: str | None,
        action: str,
        fields: Mapping[str, Any],
        reason: str,
    ) -> None:
        """Store the pair's shadow (and a history entry for a write) in one transaction."""
        if self.dry_run or pair.link_id is None:
            return
        shadow = pair.shadow()
        with self.store.transaction():
            self.store.save_shadow(pair.link_id, shadow)
            if direction is not None:
                self.store.add_history(
                    pair.link_id,
                    "to_pms" if direction == "to_pms" else "to_poweroffice",
                    action,
                    _jsonable(fields),
                    reason,
                    run_id=self.run_id,
                )
        pair.stored = shadow
        pair.has_shadow = True

    def _plan(self, kind: str, po_id: str | None, pms_id: str | None, detail: str) -> None:
        self.cycle.planned.append(PlannedChange(self.flow_id, kind, po_id, pms_id, detail))

    # -- actions --------------------------------------------------------------

    def _apply_one(self, action: Action) -> bool:
        """Apply one action; True when it wrote a linked pair (an update)."""
        if isinstance(action, CreateInPMS):
            self._create_in_pms(action)
        elif isinstance(action, CreateInPowerOffice):
            self._create_in_poweroffice(action)
        elif isinstance(action, Link):
            self._link(action)
        elif isinstance(action, RecordConflict):
            self._conflict(action)
        elif isinstance(action, UpdatePMS):
            self._update_pms(action)
            return True
        elif isinstance(action, UpdatePowerOffice):
            self._update_poweroffice(action)
            return True
        elif isinstance(action, SaveShadow):
            pair = self._pair(action.po_id, action.pms_id)
            pair.fields.update(action.values)
            self._save(pair, None, "settle", action.values, "both sides agree")
        elif isinstance(action, Unchanged):
            self.report.add("unchanged")
            pair = self._pair(action.po_id, action.pms_id)
            if pair.has_shadow and (pair.stored is None or pair.shadow()[1:] != pair.stored[1:]):
                self._save(pair, None, "seen", {}, "")  # remember versions and hashes seen
        elif isinstance(action, Fetch):
            raise _Replan(action.side)
        elif isinstance(action, Wait):
            self.report.add("waiting")
            (self.waiting_po if action.source == "poweroffice" else self.waiting_pms).add(
                action.record_id
            )
        elif isinstance(action, Skipped):
            self.report.add("skipped")
        elif isinstance(action, Ambiguous):
            self._ambiguous(action)
        elif isinstance(action, MarkPMSDeleted):
            self._mark_pms_deleted(action)
        elif isinstance(action, DeactivateInPMS):
            self._deactivate(action)
        return False

    def _ambiguous(self, action: Ambiguous) -> None:
        self.report.add("ambiguous")
        match = AmbiguousMatch(
            self.flow_id, action.source, action.record_id, action.candidates, action.rule
        )
        self.cycle.ambiguous.append(match)
        if self.dry_run:
            return
        other = "PMS" if action.source == "poweroffice" else "PowerOffice"
        message = (
            f"{len(action.candidates)} {other} records match by {action.rule}: "
            f"{', '.join(action.candidates)}; link one by hand with tolken link"
        )
        self.store.record_failure(
            self.tenant, self.flow_id, action.source, action.record_id, "AmbiguousMatch", message
        )
        self.open_failures.add((action.source, action.record_id))

    def _conflict(self, action: RecordConflict) -> None:
        c = action.conflict
        self.report.add("conflicts")
        if self.dry_run:
            self._plan(
                "conflict", action.po_id, action.pms_id, f"{c.field}: {c.winner or 'parked'}"
            )
            return
        pair = self._pair(action.po_id, action.pms_id)
        assert pair.link_id is not None
        po_value, pms_value = _jsonable(c.poweroffice), _jsonable(c.pms)
        for known in self.store.list_conflicts(self.tenant, self.flow_id, link_id=pair.link_id):
            same = known.poweroffice_value == po_value and known.pms_value == pms_value
            if known.field == c.field and same:
                return  # re-planning the same pair repeats a conflict already recorded
        self.store.record_conflict(
            self.tenant,
            self.flow_id,
            pair.link_id,
            c.field,
            poweroffice_value=po_value,
            pms_value=pms_value,
            shadow_value=_jsonable(c.shadow),
            policy=c.policy,
            winner=c.winner or "parked",
            run_id=self.run_id,
        )

    def _link(self, action: Link) -> None:
        po, pms = self.po_records.get(action.po_id), self.pms_records.get(action.pms_id)
        pair = _Pair(None, action.po_id, action.pms_id, {}, False)
        pair.see_po(po)
        pair.see_pms(pms)
        self._pairs[(action.po_id, action.pms_id)] = pair
        self.resolver.add(self.flow_id, action.po_id, action.pms_id)
        self.report.add("linked")
        if self.dry_run:
            self._plan("link", action.po_id, action.pms_id, _link_reason(action.rule))
            pair.link_id = -1
            return
        with self.store.transaction():
            link = self.store.create_link(self.tenant, self.flow_id, action.po_id, action.pms_id)
            self.store.add_history(
                link.id, "to_pms", "link", {}, _link_reason(action.rule), run_id=self.run_id
            )
        pair.link_id = link.id

    def _update_pms(self, action: UpdatePMS) -> None:
        pair = self._pair(action.po_id, action.pms_id)
        body = pms_changes(self.flow, action.fields)
        if self.dry_run:
            self._plan("update-pms", action.po_id, action.pms_id, _describe(action.fields))
            pair.fields.update(action.fields)
            return
        version = action.expected_version if action.expected_version is not None else None
        try:
            record = self.pms.update(self.pms_resource, action.pms_id, body, version=version)
        except StaleVersion:
            raise _Replan("pms") from None
        self.pms_records[action.pms_id] = record
        pair.see_pms(record)
        pair.fields.update(action.fields)
        self._save(pair, "to_pms", "update", body, "changed in PowerOffice")

    def _update_poweroffice(self, action: UpdatePowerOffice) -> None:
        pair = self._pair(action.po_id, action.pms_id)
        changes = poweroffice_changes(self.flow, action.fields, self.resolver)
        if self.dry_run:
            self._plan("update-poweroffice", action.po_id, action.pms_id, _describe(action.fields))
            pair.fields.update(action.fields)
            return
        if changes:
            record = self.poweroffice.update(self.po_resource, action.po_id, changes)
            self.po_records[action.po_id] = record
            pair.see_po(record)
        pair.fields.update(action.fields)
        self._save(pair, "to_poweroffice", "update", changes, "changed in the PMS")

    def _create_in_pms(self, action: CreateInPMS) -> None:
        body = _without_empty(pms_changes(self.flow, action.values))
        if self.dry_run:
            self.report.add("created")
            self._plan("create-in-pms", action.po_id, None, _describe(action.values))
            return
        record = self._create(
            "pms",
            action.po_id,
            action.idempotency_key,
            action.idempotency_key,
            lambda: self.pms.create(
                self.pms_resource, body, idempotency_key=action.idempotency_key
            ),
        )
        pair = _Pair(None, action.po_id, record.id, dict(action.values), True)
        pair.see_po(self.po_records.get(action.po_id))
        pair.see_pms(record)
        self._store_new_link(pair, "to_pms", body, "new PowerOffice record")

    def _create_in_poweroffice(self, action: CreateInPowerOffice) -> None:
        body = _without_empty(poweroffice_changes(self.flow, action.values, self.resolver))
        if self.dry_run:
            self.report.add("created")
            self._plan("create-in-poweroffice", None, action.pms_id, _describe(action.values))
            return
        # Departments and projects have no reference field in PowerOffice: their code is the key.
        remote_key = action.idempotency_key
        if self.po_resource.casefold() != "customers":
            remote_key = str(body.get("Code") or "")
            if not remote_key:
                raise RecordError(
                    f"a {self.po_resource} record needs a code to be created in PowerOffice",
                    system="poweroffice",
                )
        record = self._create(
            "poweroffice",
            action.pms_id,
            action.idempotency_key,
            remote_key,
            lambda: self.poweroffice.create(self.po_resource, body, idempotency_key=remote_key),
        )
        values = dict(action.values)
        pair = _Pair(None, record.id, action.pms_id, values, True)
        pair.see_po(record)
        pair.see_pms(self.pms_records.get(action.pms_id))
        self._store_new_link(pair, "to_poweroffice", body, "new PMS record")

    def _create(
        self,
        target: Side,
        source_id: str,
        key: str,
        remote_key: str,
        post: Callable[[], RemoteRecord],
    ) -> RemoteRecord:
        """The crash-safe create: pending row committed first, lookup by key after a crash."""
        connector = self.pms if target == "pms" else self.poweroffice
        resource = self.pms_resource if target == "pms" else self.po_resource
        pending = self.store.get_pending_create(key)
        if pending is None:
            self.store.add_pending_create(self.tenant, self.flow_id, target, source_id, key)
        else:
            found = connector.find_by_idempotency_key(resource, remote_key)
            if found is not None:
                if pending.state == "pending":
                    self.store.resolve_pending_create(key, found.id)
                return found
        try:
            record = post()
        except RecordError:
            if pending is None or pending.state == "pending":
                self.store.abandon_pending_create(key)  # refused: nothing was made
            raise
        if pending is None or pending.state == "pending":
            self.store.resolve_pending_create(key, record.id)
        return record

    def _store_new_link(
        self, pair: _Pair, direction: str, body: Mapping[str, Any], reason: str
    ) -> None:
        try:
            with self.store.transaction():
                link = self.store.create_link(self.tenant, self.flow_id, pair.po_id, pair.pms_id)
                pair.link_id = link.id
                self._save(pair, direction, "create", body, reason)
        except DuplicateLink:
            pair.link_id = None
            raise
        self._pairs[(pair.po_id, pair.pms_id)] = pair
        self.resolver.add(self.flow_id, pair.po_id, pair.pms_id)
        self.report.add("created")

    def _mark_pms_deleted(self, action: MarkPMSDeleted) -> None:
        if action.confirm_by_get and _exists(self.pms, self.pms_resource, action.pms_id):
            return
        self.report.add("pms_deleted")
        if self.dry_run:
            self._plan("mark-pms-deleted", action.po_id, action.pms_id, "deleted in the PMS")
            return
        link = self.store.get_link_by_po(self.tenant, self.flow_id, action.po_id)
        if link is not None:
            with self.store.transaction():
                self.store.set_link_state(link.id, "pms-deleted")
                self.store.add_history(
                    link.id,
                    "to_poweroffice",
                    "pms-deleted",
                    {},
                    "the PMS record was deleted; PowerOffice is left as it is",
                    run_id=self.run_id,
                )

    def _deactivate(self, action: DeactivateInPMS) -> None:
        if _exists(self.poweroffice, self.po_resource, action.po_id):
            return  # still there: the listing missed it
        self.report.add("deactivated")
        body = pms_changes(self.flow, action.values)
        if self.dry_run:
            self._plan("deactivate-in-pms", action.po_id, action.pms_id, _describe(action.values))
            return
        with contextlib.suppress(NotFound):  # gone on both sides: only the link needs marking
            self.pms.update(self.pms_resource, action.pms_id, body)
        link = self.store.get_link_by_po(self.tenant, self.flow_id, action.po_id)
        if link is not None:
            with self.store.transaction():
                self.store.set_link_state(link.id, "source-deleted")
                self.store.add_history(
                    link.id,
                    "to_pms",
                    "deactivate",
                    body,
                    "the PowerOffice record is gone (GET answered 404)",
                    run_id=self.run_id,
                )


def _link_reason(rule: str) -> str:
    return "linked " + rule if rule == BY_HAND else f"merge rule {rule}"


def _exists(connector: Connector, resource: str, record_id: str) -> bool:
    try:
        connector.get(resource, record_id)
    except NotFound:
        return False
    return True


def _park_key(action: Action) -> tuple[str, str]:
    if isinstance(action, CreateInPowerOffice):
        return ("pms", action.pms_id)
    if isinstance(action, Ambiguous | Wait):
        return (action.source, action.record_id)
    if isinstance(action, Skipped):
        return (
            ("pms", str(action.pms_id)) if action.po_id is None else ("poweroffice", action.po_id)
        )
    return ("poweroffice", action.po_id)


def _side(side: str) -> Side:
    return "pms" if side == "pms" else "poweroffice"


def _without_empty(body: Mapping[str, Any]) -> dict[str, Any]:
    """A create body without empty values (nested objects with nothing in them dropped)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, Mapping):
            value = _without_empty(value)
            if not value:
                continue
        if value is None or value == "":
            continue
        out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _describe(values: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(values.items()) if v is not None)
    return shown[:200]
