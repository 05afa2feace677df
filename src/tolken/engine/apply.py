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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tolken.connectors.base import Connector, RemoteRecord
from tolken.engine import lifecycle
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
from tolken.engine.pairs import (
    BY_HAND,
    PairState,
    describe,
    group_actions,
    jsonable,
    link_reason,
    park_key,
    side_of,
)
from tolken.engine.plan import FlowContext, plan_link
from tolken.engine.report import AmbiguousMatch, CycleReport, FlowReport, PlannedChange
from tolken.engine.resolver import LinkResolver
from tolken.errors import Fatal, RecordError, Retriable, StaleVersion, Unreachable
from tolken.logging import get_logger
from tolken.mapping import Flow, pms_changes, poweroffice_changes, project, to_pms_flat
from tolken.store import Direction, FlowState, HistoryEntry, Shadow, Store
from tolken.store import Link as StoredLink
from tolken.vocabulary import FlowId

__all__ = ["BY_HAND", "Applier", "group_actions"]  # BY_HAND, group_actions: from pairs


_log = get_logger("tolken.engine")

MAX_REPLANS = 3
"""How often one pair is re-read and re-planned (412, Fetch) before it is parked."""

MAX_CONSECUTIVE_RETRIABLE = 5
"""Records in a row that failed transiently on one system before the run stops: it is down."""


class _Replan(Exception):
    """Re-read ``side`` of the pair and plan it again."""

    def __init__(self, side: Side) -> None:
        super().__init__(side)
        self.side = side


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
    state: FlowState | None = None
    absent_keys: set[str] = field(default_factory=set)
    """Idempotency keys looked up this cycle and not found: the create may post at once."""
    waiting_po: set[str] = field(default_factory=set)
    waiting_pms: set[str] = field(default_factory=set)
    _retriable_streak: dict[str, int] = field(default_factory=dict)
    _pairs: dict[tuple[str, str], PairState] = field(default_factory=dict)

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
        side, record_id = park_key(first)
        updated = False
        try:
            updated = self._apply_group(group, depth=0)
        except Fatal:
            raise
        except (RecordError, Retriable, StaleVersion) as exc:
            self.note_failure(exc)
            self.park(side, record_id, exc)
            return
        self.note_success()
        if updated:
            self.report.add("updated")
        if not isinstance(first, Ambiguous | Wait):
            self.settled({(side, record_id), *_pair_keys(first)})

    def note_success(self) -> None:
        """A record went through: the run of transient failures is broken."""
        self._retriable_streak.clear()

    def settled(self, keys: set[tuple[str, str]]) -> None:
        """A record (or either record of a pair) that was parked went through: unpark it."""
        if self.dry_run:
            return
        for side, record_id in keys & self.open_failures:
            self.store.resolve_failure(self.tenant, self.flow_id, side_of(side), record_id)
            self.open_failures.discard((side, record_id))

    def note_failure(self, exc: Exception) -> None:
        """Count transient failures in a row per system; too many means it is down (Fatal)."""
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

    def history(
        self,
        link_id: int,
        direction: Direction,
        action: str,
        fields: Mapping[str, Any],
        reason: str,
        *,
        run_id: int | None = None,
    ) -> None:
        """Record (and log) one write tolken made for a link."""
        self.history_many(
            [HistoryEntry(link_id, direction, action, dict(fields), reason, run_id=run_id)]
        )

    def history_many(self, entries: Iterable[HistoryEntry]) -> None:
        """Record (and log) many writes: the store keeps the audit trail, the log shows it."""
        entries = list(entries)
        self.store.add_history_many(entries)
        for e in entries:
            _log.info(
                "record written",
                link_id=e.link_id,
                direction=e.direction,
                action=e.action,
                fields=sorted(e.fields),
                reason=e.reason,
            )

    def park(self, side: str, record_id: str, exc: Exception) -> None:
        """Park a record with its error (retried with backoff) and count it as failed."""
        self.report.add("failed")
        if self.dry_run:
            return
        _log.warning("record parked", side=side, record_id=record_id, error=str(exc))
        if isinstance(exc, RecordError | Retriable | StaleVersion):
            self.store.record_error(self.tenant, self.flow_id, side_of(side), record_id, exc)
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

    def _pair(self, po_id: str, pms_id: str) -> PairState:
        key = (po_id, pms_id)
        pair = self._pairs.get(key)
        if pair is None:
            link, shadow = self._stored_link(po_id)
            pair = PairState(
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

    def _stored_link(self, po_id: str) -> tuple[StoredLink | None, Shadow | None]:
        # The flow's state loaded at the start answers without a query per pair.
        if self.state is not None:
            link = self.state.by_po(po_id)
            if link is not None:
                return link, self.state.shadow(link.id)
        link = self.store.get_link_by_po(self.tenant, self.flow_id, po_id)
        return link, self.store.load_shadow(link.id) if link is not None else None

    def _save(
        self,
        pair: PairState,
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
                self.history(
                    pair.link_id,
                    "to_pms" if direction == "to_pms" else "to_poweroffice",
                    action,
                    jsonable(fields),
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
            lifecycle.create_in_pms(self, action)
        elif isinstance(action, CreateInPowerOffice):
            lifecycle.create_in_poweroffice(self, action)
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
            lifecycle.mark_pms_deleted(self, action)
        elif isinstance(action, DeactivateInPMS):
            lifecycle.deactivate(self, action)
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
        _log.warning(
            "ambiguous match", side=action.source, record_id=action.record_id, error=message
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
        po_value, pms_value = jsonable(c.poweroffice), jsonable(c.pms)
        for known in self.store.list_conflicts(self.tenant, self.flow_id, link_id=pair.link_id):
            same = known.poweroffice_value == po_value and known.pms_value == pms_value
            if known.field == c.field and same:
                return  # re-planning the same pair repeats a conflict already recorded
        _log.info(
            "conflict recorded",
            link_id=pair.link_id,
            field=c.field,
            policy=c.policy,
            winner=c.winner or "parked",
        )
        self.store.record_conflict(
            self.tenant,
            self.flow_id,
            pair.link_id,
            c.field,
            poweroffice_value=po_value,
            pms_value=pms_value,
            shadow_value=jsonable(c.shadow),
            policy=c.policy,
            winner=c.winner or "parked",
            run_id=self.run_id,
        )

    def _link(self, action: Link) -> None:
        po, pms = self.po_records.get(action.po_id), self.pms_records.get(action.pms_id)
        pair = PairState(None, action.po_id, action.pms_id, {}, False)
        pair.see_po(po)
        pair.see_pms(pms)
        self._pairs[(action.po_id, action.pms_id)] = pair
        self.resolver.add(self.flow_id, action.po_id, action.pms_id)
        self.report.add("linked")
        if self.dry_run:
            self._plan("link", action.po_id, action.pms_id, link_reason(action.rule))
            pair.link_id = -1
            return
        with self.store.transaction():
            link = self.store.create_link(self.tenant, self.flow_id, action.po_id, action.pms_id)
            self.history(
                link.id, "to_pms", "link", {}, link_reason(action.rule), run_id=self.run_id
            )
        pair.link_id = link.id

    def _update_pms(self, action: UpdatePMS) -> None:
        pair = self._pair(action.po_id, action.pms_id)
        body = pms_changes(self.flow, action.fields)
        if self.dry_run:
            self._plan("update-pms", action.po_id, action.pms_id, describe(action.fields))
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
            self._plan("update-poweroffice", action.po_id, action.pms_id, describe(action.fields))
            pair.fields.update(action.fields)
            return
        if changes:
            record = self.poweroffice.update(self.po_resource, action.po_id, changes)
            self.po_records[action.po_id] = record
            pair.see_po(record)
        pair.fields.update(action.fields)
        self._save(pair, "to_poweroffice", "update", changes, "changed in the PMS")


def _pair_keys(action: Action) -> set[tuple[str, str]]:
    """Both records of a pair action, as failure keys (a pair may be parked under either)."""
    po_id, pms_id = getattr(action, "po_id", None), getattr(action, "pms_id", None)
    if isinstance(po_id, str) and isinstance(pms_id, str):
        return {("poweroffice", po_id), ("pms", pms_id)}
    return set()
