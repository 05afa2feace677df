"""The executor: applies one flow's planned actions; the writes, then link + shadow + history.

An :class:`Executor` is built per flow and cycle from the flow's services
(:class:`~tolken.engine.services.FlowServices`: store, connectors, mapping,
clock) and owns the :class:`CycleState` of that flow: the records read, the
live pairs, the open failures, what waits. Actions arrive in *groups*:
everything the planner said about one record or one linked pair, in plan
order. A group succeeds or is parked as a whole: a
:class:`~tolken.errors.RecordError` (or a :class:`~tolken.errors.Retriable`
error the connector's own retries did not cure) parks the record with the
remote message, and the run goes on. After each successful write the link's
shadow and history are stored in one transaction, so a crash between two
writes re-plans only what is left.

Re-planning is a bounded loop: a :class:`~tolken.engine.model.Fetch`, or a
stale PMS version (412), ends the group's pass with a :class:`Reread`; the
pair's side is read again, the pair planned again and the new group applied,
at most :data:`MAX_REPLANS` times. In a dry run nothing is written, not even
to the store: writes become :class:`~tolken.engine.report.PlannedChange`\\ s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

from tolken.connectors.base import RemoteRecord
from tolken.engine import lifecycle
from tolken.engine.merge import values_equal
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
from tolken.engine.pairs import PairState, describe, jsonable, link_reason, park_key
from tolken.engine.plan import plan_link
from tolken.engine.report import AmbiguousMatch, CycleReport, FlowReport, PlannedChange
from tolken.engine.services import FlowServices
from tolken.errors import Fatal, RecordError, Retriable, StaleVersion, Unreachable
from tolken.mapping import pms_changes, poweroffice_changes
from tolken.store import Direction, FlowState, HistoryEntry, Shadow
from tolken.store import Link as StoredLink

__all__ = ["MAX_CONSECUTIVE_RETRIABLE", "MAX_REPLANS", "CycleState", "Executor", "Reread"]

MAX_REPLANS = 3
"""How often one pair is re-read and re-planned (412, Fetch) before it is parked."""

MAX_CONSECUTIVE_RETRIABLE = 5
"""Records in a row that failed transiently on one system before the run stops: it is down."""

_Lifecycle = CreateInPMS | CreateInPowerOffice | DeactivateInPMS | MarkPMSDeleted
_Note = Ambiguous | Wait | Skipped | Unchanged | RecordConflict


@dataclass
class CycleState:
    """The state of one flow in one cycle; its :class:`Executor` keeps it up to date.

    ``absent_keys``: idempotency keys looked up this cycle and not found (the
    create may post at once). ``waiting_po`` / ``waiting_pms``: records that
    wait (the cursors stay before them). ``links``: the flow's stored links,
    loaded once per flow. ``in_doubt``: writes of parked pairs that may have landed.
    """

    report: FlowReport
    cycle: CycleReport
    dry_run: bool = False
    run_id: int | None = None
    po_records: dict[str, RemoteRecord] = field(default_factory=dict)
    po_hashes: dict[str, str] = field(default_factory=dict)
    """The content hash of a record in ``po_records`` that came with one (the listing worked it
    out): :meth:`Executor.po_hash`."""
    pms_records: dict[str, RemoteRecord] = field(default_factory=dict)
    open_failures: set[tuple[str, str]] = field(default_factory=set)
    absent_keys: set[str] = field(default_factory=set)
    waiting_po: set[str] = field(default_factory=set)
    waiting_pms: set[str] = field(default_factory=set)
    links: FlowState | None = None
    pairs: dict[tuple[str, str], PairState] = field(default_factory=dict)
    retriable_streak: dict[str, int] = field(default_factory=dict)
    in_doubt: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Per PowerOffice id of a parked pair, per side: the field values of a write whose answer
    never came (:meth:`Executor.plan_pair`); loaded from the open failures, kept with them."""


@dataclass(frozen=True)
class Reread:
    """The pair's ``side`` must be read again and the pair planned again (Fetch, 412)."""

    po_id: str
    pms_id: str
    side: Side


class Executor:
    """Applies one flow's action groups with its services; see the module docstring."""

    def __init__(self, services: FlowServices, state: CycleState) -> None:
        self.services = services
        self.state = state

    # -- records ----------------------------------------------------------------

    def remember(self, side: Side, record: RemoteRecord, digest: str | None = None) -> None:
        """Keep a record read this cycle (the latest copy wins), with its content hash when
        that is known already (``digest``, of this copy's data)."""
        if side == "pms":
            self.state.pms_records[record.id] = record
            return
        self.state.po_records[record.id] = record
        if digest is None:
            self.state.po_hashes.pop(record.id, None)
        else:
            self.state.po_hashes[record.id] = digest

    def po_hash(self, po_id: str) -> str | None:
        """The content hash of the remembered PowerOffice record ``po_id``, when it came with
        one (else :meth:`~tolken.engine.pairs.PairState.see_po` works it out)."""
        return self.state.po_hashes.get(po_id)

    # -- groups -----------------------------------------------------------------

    def apply(self, group: Sequence[Action]) -> None:
        """Apply one group; park the record on a record-level or lasting transient error."""
        first = group[0]
        side, record_id = park_key(first)
        try:
            updated = self._apply_group(group)
        except Fatal:
            raise
        except (RecordError, Retriable, StaleVersion) as exc:
            self.note_failure(exc)
            self.park(side, record_id, exc)
            return
        self.note_success()
        if updated:
            self.state.report.add("updated")
        if not isinstance(first, Ambiguous | Wait):
            self.settled({(side, record_id), *_pair_keys(first)})

    def note_success(self) -> None:
        """A record went through: the run of transient failures is broken."""
        self.state.retriable_streak.clear()

    def note_failure(self, exc: Exception) -> None:
        """Count transient failures in a row per system; too many means it is down (Fatal)."""
        if not isinstance(exc, Retriable):
            self.state.retriable_streak.clear()
            return
        system = exc.system or "remote system"
        streak = self.state.retriable_streak.get(system, 0) + 1
        self.state.retriable_streak = {system: streak}
        if streak >= MAX_CONSECUTIVE_RETRIABLE:
            raise Unreachable(
                f"{streak} records in a row failed after retries; last error: {exc.message}",
                system=system,
            ) from exc

    def settled(self, keys: set[tuple[str, str]]) -> None:
        """A record (or either record of a pair) that was parked went through: unpark it."""
        st = self.state
        if st.dry_run:
            return
        svc = self.services
        for side, record_id in keys & st.open_failures:
            svc.store.resolve_failure(svc.flow_id, _side(side), record_id)
            st.open_failures.discard((side, record_id))
        for side, record_id in keys:
            # A write in doubt is settled once the pair went through, even before the
            # parked record's retry is due: its values must not stand in for the shadow again.
            if side == "poweroffice" and st.in_doubt.pop(record_id, None) is not None:
                svc.store.resolve_failure(svc.flow_id, "poweroffice", record_id)

    def park(self, side: str, record_id: str, exc: Exception) -> None:
        """Park a record with its error (retried with backoff) and count it as failed."""
        st, svc = self.state, self.services
        st.report.add("failed")
        if st.dry_run:
            return
        svc.log.warning("record parked", side=side, record_id=record_id, error=str(exc))
        if isinstance(exc, RecordError | Retriable | StaleVersion):
            in_doubt = st.in_doubt.get(record_id) if side == "poweroffice" else None
            svc.store.record_error(svc.flow_id, _side(side), record_id, exc, in_doubt=in_doubt)
        st.open_failures.add((side, record_id))

    def _apply_group(self, group: Sequence[Action]) -> bool:
        """Apply a group, re-reading and re-planning its pair at most MAX_REPLANS times."""
        wrote, reread = self._apply_actions(group)
        replans = 0
        while reread is not None:
            if replans == MAX_REPLANS:
                raise StaleVersion(
                    f"the record kept changing while tolken wrote it ({MAX_REPLANS} re-reads)",
                    system=reread.side,
                )
            replans += 1
            wrote_again, reread = self._apply_actions(self._replan(reread))
            wrote = wrote or wrote_again
        return wrote

    def _apply_actions(self, group: Sequence[Action]) -> tuple[bool, Reread | None]:
        """Apply actions in order until one asks for a re-read: (wrote an update, that re-read)."""
        updated = False
        for action in group:
            outcome = self._apply_one(action)
            if isinstance(outcome, Reread):
                return updated, outcome
            updated = outcome or updated
        return updated, None

    def _replan(self, reread: Reread) -> list[Action]:
        """Read the pair's side again and plan the pair from what is known now."""
        svc, st = self.services, self.state
        record_id = reread.pms_id if reread.side == "pms" else reread.po_id
        self.remember(
            reread.side, svc.connector(reread.side).get(svc.resource(reread.side), record_id)
        )
        pair = self.pair(reread.po_id, reread.pms_id)
        link = LinkedPair(
            reread.po_id,
            reread.pms_id,
            shadow=dict(pair.fields) if pair.has_shadow else None,
            pms_version=pair.pms_version,
        )
        po = svc.project_po(st.po_records.get(reread.po_id))
        pms = svc.project_pms(st.pms_records.get(reread.pms_id))
        return self.plan_pair(link, po, pms)

    def plan_pair(
        self, link: LinkedPair, po: ProjectedRecord | None, pms: ProjectedRecord | None
    ) -> list[Action]:
        """Plan a linked pair (:func:`plan_link`), a write of it whose answer never came settled.

        A write that failed after the connector's retries (a lost answer, a timeout) may
        have landed. Where the written side now holds what tolken wrote, that value is the
        last synchronised one, not an edit there: without this, a person who puts the other
        side back to the shadow's value meanwhile would see tolken's own write come back as
        a change and overwrite theirs, with no conflict recorded.
        """
        landed = self._landed(link, po, pms)
        if landed:
            link = replace(link, shadow={**(link.shadow or {}), **landed})
        actions = plan_link(link, po, pms, policy=self.services.ctx.policy)
        if landed and not isinstance(actions[0], Fetch | Wait | Skipped | MarkPMSDeleted):
            # Stored with the pair's shadow by whatever the plan saves.
            self.pair(link.po_id, link.pms_id).fields.update(landed)
            if isinstance(actions[0], Unchanged):
                return [SaveShadow(link.po_id, link.pms_id, landed)]
        return actions

    def _landed(
        self, link: LinkedPair, po: ProjectedRecord | None, pms: ProjectedRecord | None
    ) -> dict[str, Any]:
        """The in-doubt values that their side holds now and that differ from the shadow."""
        written = self.state.in_doubt.get(link.po_id)
        if not written or link.shadow is None:
            return {}
        landed: dict[str, Any] = {}
        for side, record in (("poweroffice", po), ("pms", pms)):
            if record is None:
                continue
            for name, value in written.get(side, {}).items():
                if (
                    name in record.values
                    and values_equal(record.values[name], value)
                    and not values_equal(link.shadow.get(name), value)
                ):
                    landed[name] = value
        return landed

    def _in_doubt(self, po_id: str, side: Side, values: Mapping[str, Any]) -> None:
        """A write of ``values`` to ``side`` failed without an answer: it may have landed."""
        sides = self.state.in_doubt.setdefault(po_id, {})
        sides[side] = {**sides.get(side, {}), **{k: jsonable(v) for k, v in values.items()}}

    # -- pairs ------------------------------------------------------------------

    def pair(self, po_id: str, pms_id: str) -> PairState:
        """The live state of a linked pair (from the stored link and shadow on first use)."""
        st = self.state
        pair = st.pairs.get((po_id, pms_id))
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
            pair.see_po(st.po_records.get(po_id))
            pair.see_pms(st.pms_records.get(pms_id))
            st.pairs[(po_id, pms_id)] = pair
        return pair

    def _stored_link(self, po_id: str) -> tuple[StoredLink | None, Shadow | None]:
        # The flow's links loaded at the start answer without a query per pair.
        svc, links = self.services, self.state.links
        if links is not None:
            link = links.by_po(po_id)
            if link is not None:
                return link, links.shadow(link.id)
        link = svc.store.get_link_by_po(svc.flow_id, po_id)
        return link, svc.store.load_shadow(link.id) if link is not None else None

    def adopt(self, pair: PairState, count: str) -> None:
        """A pair linked this cycle: keep its live state and count it under ``count``."""
        self.state.pairs[(pair.po_id, pair.pms_id)] = pair
        self.state.report.add(count)

    def _planned(self, kind: str, po_id: str | None, pms_id: str | None, detail: str) -> None:
        flow_id = self.services.flow_id
        self.state.cycle.planned.append(PlannedChange(flow_id, kind, po_id, pms_id, detail))

    # -- dispatch ---------------------------------------------------------------

    def _apply_one(self, action: Action) -> bool | Reread:
        """Apply one action: True when it wrote a linked pair (an update), or a re-read to do."""
        match action:
            case CreateInPMS() | CreateInPowerOffice() | DeactivateInPMS() | MarkPMSDeleted():
                self._lifecycle(action)
            case Ambiguous() | Wait() | Skipped() | Unchanged() | RecordConflict():
                self._note(action)
            case Link():
                self._link(action)
            case SaveShadow():
                pair = self.pair(action.po_id, action.pms_id)
                pair.fields.update(action.values)
                self._save(pair, None)
            case UpdatePMS():
                return self._update_pms(action)
            case UpdatePowerOffice():
                self._update_poweroffice(action)
                return True
            case Fetch():
                return Reread(action.po_id, action.pms_id, action.side)
            case _:
                assert_never(action)
        return False

    def _lifecycle(self, action: _Lifecycle) -> None:
        match action:
            case CreateInPMS():
                self._create_in_pms(action)
            case CreateInPowerOffice():
                self._create_in_poweroffice(action)
            case DeactivateInPMS():
                self._deactivate(action)
            case MarkPMSDeleted():
                self._mark_pms_deleted(action)
            case _:
                assert_never(action)

    def _note(self, action: _Note) -> None:
        report = self.state.report
        match action:
            case Ambiguous():
                self._ambiguous(action)
            case Wait():
                report.add("waiting")
                st = self.state
                (st.waiting_po if action.source == "poweroffice" else st.waiting_pms).add(
                    action.record_id
                )
            case Skipped():
                report.add("skipped")
            case Unchanged():
                report.add("unchanged")
                pair = self.pair(action.po_id, action.pms_id)
                if pair.has_shadow and (
                    pair.stored is None or pair.shadow()[1:] != pair.stored[1:]
                ):
                    self._save(pair, None)  # remember versions and hashes seen
            case RecordConflict():
                self._conflict(action)
            case _:
                assert_never(action)

    # -- handlers ---------------------------------------------------------------

    def _save(
        self, pair: PairState, write: tuple[Direction, Mapping[str, Any], str] | None
    ) -> None:
        """Store the pair's shadow (and the history of an update: direction, fields, reason)."""
        if self.state.dry_run:
            return
        update = None if write is None else (write[0], "update", write[1], write[2])
        self.services.save_pair(pair, update, self.state.run_id)

    def _link(self, action: Link) -> None:
        st, svc = self.state, self.services
        pair = PairState(None, action.po_id, action.pms_id, {}, False)
        pair.see_po(st.po_records.get(action.po_id), self.po_hash(action.po_id))
        pair.see_pms(st.pms_records.get(action.pms_id))
        self.adopt(pair, "linked")
        svc.resolver.add(svc.flow_id, action.po_id, action.pms_id)
        if st.dry_run:
            self._planned("link", action.po_id, action.pms_id, link_reason(action.rule))
            pair.link_id = -1
            return
        with svc.store.transaction():
            link = svc.store.create_link(svc.flow_id, action.po_id, action.pms_id)
            reason = link_reason(action.rule)
            svc.record_history([HistoryEntry(link.id, "to_pms", "link", {}, reason, st.run_id)])
            self._settle_pending_create(action.po_id, action.pms_id)
        pair.link_id = link.id

    def _settle_pending_create(self, po_id: str, pms_id: str) -> None:
        """A create left pending for either record of a pair just linked by a match is done.

        An earlier run made the record but lost the answer; recovery could not
        look it up by key (a project's key is its code), so the match found it.
        """
        store = self.services.store
        for pending in store.pending_creates(self.services.flow_id):
            source, made = (po_id, pms_id) if pending.target == "pms" else (pms_id, po_id)
            if pending.source_id == source:
                store.resolve_pending_create(pending.idempotency_key, made)

    def _update_pms(self, action: UpdatePMS) -> bool | Reread:
        st, svc = self.state, self.services
        pair = self.pair(action.po_id, action.pms_id)
        body = pms_changes(svc.flow, action.fields)
        if st.dry_run:
            self._planned("update-pms", action.po_id, action.pms_id, describe(action.fields))
            pair.fields.update(action.fields)
            return True
        try:
            record = svc.pms.update(
                svc.pms_resource, action.pms_id, body, version=action.expected_version
            )
        except StaleVersion:
            return Reread(action.po_id, action.pms_id, "pms")
        except Retriable:
            self._in_doubt(action.po_id, "pms", action.fields)
            raise
        self.remember("pms", record)
        pair.see_pms(record)
        pair.fields.update(action.fields)
        self._save(pair, ("to_pms", body, "changed in PowerOffice"))
        return True

    def _update_poweroffice(self, action: UpdatePowerOffice) -> None:
        st, svc = self.state, self.services
        pair = self.pair(action.po_id, action.pms_id)
        changes = poweroffice_changes(svc.flow, action.fields, svc.resolver)
        if st.dry_run:
            kind = "update-poweroffice"
            self._planned(kind, action.po_id, action.pms_id, describe(action.fields))
            pair.fields.update(action.fields)
            return
        if changes:
            try:
                record = svc.poweroffice.update(svc.po_resource, action.po_id, changes)
            except Retriable:
                self._in_doubt(action.po_id, "poweroffice", action.fields)
                raise
            self.remember("poweroffice", record)
            pair.see_po(record)
        pair.fields.update(action.fields)
        self._save(pair, ("to_poweroffice", changes, "changed in the PMS"))

    def _ambiguous(self, action: Ambiguous) -> None:
        st, svc = self.state, self.services
        st.report.add("ambiguous")
        st.cycle.ambiguous.append(
            AmbiguousMatch(
                svc.flow_id, action.source, action.record_id, action.candidates, action.rule
            )
        )
        if st.dry_run:
            return
        self.services.record_ambiguous(action)
        st.open_failures.add((action.source, action.record_id))

    def _conflict(self, action: RecordConflict) -> None:
        st, c = self.state, action.conflict
        st.report.add("conflicts")
        if st.dry_run:
            detail = f"{c.field}: {c.winner or 'parked'}"
            self._planned("conflict", action.po_id, action.pms_id, detail)
            return
        link_id = self.pair(action.po_id, action.pms_id).link_id
        assert link_id is not None
        self.services.record_conflict(link_id, c, st.run_id)

    def _create_in_pms(self, action: CreateInPMS) -> None:
        st = self.state
        if st.dry_run:
            st.report.add("created")
            self._planned("create-in-pms", action.po_id, None, describe(action.values))
            return
        pair = lifecycle.create_in_pms(
            self.services,
            action,
            st.po_records.get(action.po_id),
            absent_keys=st.absent_keys,
            run_id=st.run_id,
        )
        self.adopt(pair, "created")

    def _create_in_poweroffice(self, action: CreateInPowerOffice) -> None:
        st = self.state
        if st.dry_run:
            st.report.add("created")
            self._planned("create-in-poweroffice", None, action.pms_id, describe(action.values))
            return
        pair, written_back = lifecycle.create_in_poweroffice(
            self.services,
            action,
            st.pms_records.get(action.pms_id),
            absent_keys=st.absent_keys,
            run_id=st.run_id,
        )
        if written_back is not None:
            self.remember("pms", written_back)
        self.adopt(pair, "created")

    def _deactivate(self, action: DeactivateInPMS) -> None:
        if self.services.exists("poweroffice", action.po_id):
            return  # still there: the listing missed it
        st = self.state
        st.report.add("deactivated")
        if st.dry_run:
            detail = describe(action.values)
            self._planned("deactivate-in-pms", action.po_id, action.pms_id, detail)
            return
        lifecycle.deactivate(self.services, action, st.run_id)

    def _mark_pms_deleted(self, action: MarkPMSDeleted) -> None:
        if action.confirm_by_get and self.services.exists("pms", action.pms_id):
            return
        st = self.state
        st.report.add("pms_deleted")
        if st.dry_run:
            self._planned("mark-pms-deleted", action.po_id, action.pms_id, "deleted in the PMS")
            return
        reason = "the PMS record was deleted; PowerOffice is left as it is"
        write: tuple[Direction, str, dict[str, Any], str] = (
            "to_poweroffice",
            "pms-deleted",
            {},
            reason,
        )
        self.services.end_link(action.po_id, "pms-deleted", write, st.run_id)

    # -- start of a flow ----------------------------------------------------------

    def recover_pending_creates(self) -> int:
        """Settle the creates an earlier run left pending; how many were linked."""
        recovery = lifecycle.recover_pending_creates(self.services, self.state.run_id)
        self.state.absent_keys |= recovery.absent_keys
        for _pair in recovery.linked:
            self.state.report.add("created")  # the interrupted create, completed now
        return len(recovery.linked)


def _side(side: str) -> Side:
    return "pms" if side == "pms" else "poweroffice"


def _pair_keys(action: Action) -> set[tuple[str, str]]:
    """Both records of a pair action, as failure keys (a pair may be parked under either)."""
    match action:
        case CreateInPMS() | CreateInPowerOffice() | Ambiguous() | Wait():
            return set()
        case Skipped(po_id=str() as po_id, pms_id=str() as pms_id):
            return {("poweroffice", po_id), ("pms", pms_id)}
        case Skipped():
            return set()
        case _:
            return {("poweroffice", action.po_id), ("pms", action.pms_id)}
