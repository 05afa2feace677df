"""One flow of one cycle: capture, project, match, plan, apply, move the cursors.

The steps, for flow ``F`` (PowerOffice resource ``R``, PMS resource ``S``):

1. Read PowerOffice ``R`` since the cursor (all of it on the first run or a
   reconcile). A linked record whose content hash equals the shadow's is an
   echo of tolken's own write (or unchanged in a reconcile) and is dropped.
2. Read what changed in PMS ``S`` (shared per cycle) and keep the records that
   belong to ``F`` (``pms_filter``), plus tombstones of linked records.
3. Add the parked records whose retry is due, re-read from both sides.
4. Only when unlinked PowerOffice records need a match: list the unlinked PMS
   records of ``F`` as candidates (and vice versa when ``create_in_poweroffice``).
5. Plan (:func:`tolken.engine.plan.plan_flow`) and apply group by group.
6. Advance the PowerOffice cursor, never past a record that waits or failed
   (a parked record read again before its retry is due waits too).

A reconcile also runs :func:`tolken.engine.plan.plan_reconcile` over the full
listing's ids (deletes, with the mass-delete breaker and the outage guard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from tolken.connectors.base import RemoteRecord
from tolken.engine import batch, settle
from tolken.engine.capture import PMSCapture, read_poweroffice, save_po_cursor
from tolken.engine.cursor import content_hash
from tolken.engine.executor import Executor
from tolken.engine.match import MatchRule
from tolken.engine.model import (
    Action,
    CreateInPMS,
    LinkedPair,
    MassDeleteBlocked,
    ProjectedRecord,
    SourceOutage,
)
from tolken.engine.pairs import group_actions
from tolken.engine.plan import FlowContext, plan_flow, plan_reconcile
from tolken.errors import NotFound, RecordError
from tolken.mapping import Flow, belongs, merge_key_flat
from tolken.store import FlowState, TenantStore
from tolken.vocabulary import FlowId

T = TypeVar("T")

__all__ = ["CANDIDATE_PAGE", "FlowRun", "match_rules"]

CANDIDATE_PAGE = 1000
"""Listed records whose links are looked up in one query (candidates for a match)."""


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, as they come."""
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def match_rules(flow: Flow) -> tuple[MatchRule, ...]:
    """The mapping's merge rules as the planner's :class:`MatchRule`\\ s (flat PMS-path keys)."""
    rules = []
    for index, rule in enumerate(flow.merge_rules):

        def key(values: object, rule: object = rule) -> str | None:
            return merge_key_flat(rule, values)  # type: ignore[arg-type]

        name = f"{rule.poweroffice} = {rule.pms}" + (f" (rule {index + 1})" if index else "")
        rules.append(MatchRule(name, key, key, normalise=lambda v: v))
    return tuple(rules)


@dataclass
class FlowRun:
    """Everything one flow needs for one cycle; :meth:`run` does the work."""

    executor: Executor
    store: TenantStore
    pms_capture: PMSCapture
    overlap: timedelta
    run_started_at: datetime
    reconcile: bool = False
    confirm_deletes: bool = False
    mass_delete_threshold: float = 0.10
    reconcile_pms: bool = False
    should_stop: Callable[[], bool] = lambda: False
    on_progress: Callable[[str, int, int], None] | None = None
    """Called as ``(flow, done, total)`` while the flow's records are applied."""

    def run(self) -> bool:
        """Run the flow; False when it was interrupted (a stop was requested)."""
        ex = self.executor
        svc, st = ex.services, ex.state
        if not st.dry_run:
            ex.recover_pending_creates()
            settle.apply_settled_conflicts(ex)
        state = self.store.load_flow_state(svc.flow_id)
        st.links = state
        capture = read_poweroffice(
            svc.poweroffice,
            self.store,
            svc.po_resource,
            overlap=self.overlap,
            full=self.reconcile,
            # Unchanged records are dropped page by page while the listing is read,
            # their stored hashes read for that page only: nothing is held.
            unchanged=lambda page: _po_unchanged(state, page),
        )
        deletes: list[Action] = []
        if self.reconcile:
            stop_reason, deletes = self._reconcile_deletes(state, capture.listed_ids())
            if stop_reason is not None:
                st.report.stopped = stop_reason
                return True
        po_changed = capture.records
        pms_changed = self._changed_pms(state)
        backing_off = self._add_due_failures(state, po_changed, pms_changed)
        # A parked PowerOffice record read again (the cursor stays before it) is
        # retried only when its backoff is over (or after tolken retry): it waits.
        held_back = {r.id for r in po_changed if r.id in backing_off}
        if held_back:
            po_changed = [r for r in po_changed if r.id not in held_back]
            st.report.add("waiting", len(held_back))
        for record in po_changed:
            ex.remember("poweroffice", record)
        for record in pms_changed:
            ex.remember("pms", record)

        po_projected = self._project_po(po_changed)
        pms_projected = [p for r in pms_changed if (p := svc.project_pms(r)) is not None]
        state.prefetch(
            poweroffice_ids=[p.id for p in po_projected], pms_ids=[p.id for p in pms_projected]
        )
        unlinked_po = [p for p in po_projected if state.by_po(p.id) is None and not p.unresolved]
        pms_candidates = self._pms_candidates(state) if unlinked_po else []
        unlinked_pms = [p for p in pms_projected if state.by_pms(p.id) is None and not p.deleted]
        po_candidates: list[ProjectedRecord] = []
        if svc.ctx.create_in_poweroffice and unlinked_pms:
            po_candidates = self._po_candidates(state)
        links = _touched_links(state, po_projected, pms_projected)

        actions = plan_flow(
            svc.ctx,
            po_changes=po_projected,
            pms_changes=pms_projected,
            links=links,
            pms_candidates=pms_candidates,
            po_candidates=po_candidates,
        )
        groups = list(group_actions([*deletes, *actions]))
        if self.on_progress is not None and not groups:
            self.on_progress(svc.flow_id, 0, 0)
        if not self._apply(groups):
            return False
        if not st.dry_run:
            # Never past a record that waits or failed (DESIGN §4): a parked record
            # keeps the cursor before it until it syncs.
            failed = {rid for side, rid in st.open_failures if side == "poweroffice"}
            save_po_cursor(
                self.store,
                capture,
                st.waiting_po | failed | held_back,
                run_started_at=self.run_started_at,
                overlap=self.overlap,
            )
            if st.waiting_pms:
                self.pms_capture.hold(svc.pms_resource)
        return True

    def _apply(self, groups: list[list[Action]]) -> bool:
        """Apply the groups in order, creates and plain first links in batches.

        False when a stop was requested (the batch in hand is finished first).
        """
        ex, done, total = self.executor, 0, len(groups)
        creates: list[CreateInPMS] = []
        links: list[list[Action]] = []

        def flush() -> None:
            nonlocal done
            if creates:
                batch.create_many_in_pms(ex, creates)
            if links:
                batch.link_many(ex, links)
            if creates or links:
                done += len(creates) + len(links)
                creates.clear()
                links.clear()
                self._progress(done, total)

        for group in groups:
            if self.should_stop():
                flush()
                return False
            if len(group) == 1 and isinstance(group[0], CreateInPMS) and not links:
                creates.append(group[0])
            elif batch.is_plain_link(group) and not creates:
                links.append(group)
            else:
                flush()
                if len(group) == 1 and isinstance(group[0], CreateInPMS):
                    creates.append(group[0])
                    continue
                if batch.is_plain_link(group):
                    links.append(group)
                    continue
                ex.apply(group)
                done += 1
                self._progress(done, total)
                continue
            if len(creates) + len(links) >= batch.BATCH:
                flush()
        flush()
        return True

    def _progress(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(self.executor.services.flow_id, done, total)

    # -- steps ----------------------------------------------------------------

    def _changed_pms(self, state: FlowState) -> list[RemoteRecord]:
        svc = self.executor.services
        changed = []
        records = self.pms_capture.changes(svc.pms_resource)
        state.prefetch(pms_ids=[r.id for r in records])
        for record in records:
            link = state.by_pms(record.id)
            if record.deleted:
                if link is not None:
                    changed.append(record)
                continue
            if not belongs(svc.flow, record.data):
                continue
            if link is not None:
                _, pms_hash = state.hashes(link.id)
                if pms_hash is not None and pms_hash == content_hash(record.data):
                    continue
            changed.append(record)
        return changed

    def _add_due_failures(
        self, state: FlowState, po_changed: list[RemoteRecord], pms_changed: list[RemoteRecord]
    ) -> set[str]:
        """Re-read the parked records whose retry is due (both sides of a linked pair).

        Returns the ids of parked PowerOffice records whose retry is not due yet.
        """
        svc, st = self.executor.services, self.executor.state
        # One read of the flow's open failures per cycle (dry run included), split here.
        parked = self.store.list_failures(svc.flow_id)
        now = self.store.now()
        due = sorted(
            (f for f in parked if f.next_attempt_at <= now),
            key=lambda f: (f.next_attempt_at, f.id),
        )
        backing_off = {
            f.record_id for f in parked if f.side == "poweroffice" and f.next_attempt_at > now
        }
        have_po = {r.id for r in po_changed}
        have_pms = {r.id for r in pms_changed}
        for failure in due:
            st.open_failures.add((failure.side, failure.record_id))
            link = (
                state.by_po(failure.record_id)
                if failure.side == "poweroffice"
                else state.by_pms(failure.record_id)
            )
            po_id = failure.record_id if failure.side == "poweroffice" else None
            pms_id = failure.record_id if failure.side == "pms" else None
            if link is not None:
                po_id, pms_id = link.poweroffice_id, link.pms_id
            try:
                if po_id is not None and po_id not in have_po:
                    po_changed.append(svc.poweroffice.get(svc.po_resource, po_id))
                    have_po.add(po_id)
                if pms_id is not None and pms_id not in have_pms:
                    pms_changed.append(self._get_pms(pms_id))
                    have_pms.add(pms_id)
            except NotFound:
                # The parked record is gone; a reconcile deals with deleted linked records.
                if not st.dry_run:
                    self.store.resolve_failure(svc.flow_id, failure.side, failure.record_id)
                    st.open_failures.discard((failure.side, failure.record_id))
        return backing_off

    def _get_pms(self, pms_id: str) -> RemoteRecord:
        try:
            return self.executor.services.pms.get(self.executor.services.pms_resource, pms_id)
        except NotFound:
            return RemoteRecord(self.executor.services.pms_resource, pms_id, {}, deleted=True)

    def _project_po(self, records: Iterable[RemoteRecord]) -> list[ProjectedRecord]:
        svc, st = self.executor.services, self.executor.state
        projected = []
        for record in records:
            try:
                value = svc.project_po(record)
            except RecordError as exc:
                # A value the mapping cannot convert: park the record, go on.
                st.report.add("failed")
                if not st.dry_run:
                    self.store.record_error(svc.flow_id, "poweroffice", record.id, exc)
                    st.open_failures.add(("poweroffice", record.id))
                continue
            if value is not None:
                projected.append(value)
        return projected

    def _pms_candidates(self, state: FlowState) -> list[ProjectedRecord]:
        svc, st = self.executor.services, self.executor.state
        out = []
        for page in chunked(self.pms_capture.listing(svc.pms_resource), CANDIDATE_PAGE):
            linked = state.linked_pms([r.id for r in page])
            for record in page:
                if record.id not in linked and belongs(svc.flow, record.data):
                    st.pms_records.setdefault(record.id, record)
                    projected = svc.project_pms(record)
                    if projected is not None:
                        out.append(projected)
        return out

    def _po_candidates(self, state: FlowState) -> list[ProjectedRecord]:
        svc, st = self.executor.services, self.executor.state
        out = []
        for page in chunked(svc.poweroffice.list(svc.po_resource), CANDIDATE_PAGE):
            linked = state.linked_poweroffice([r.id for r in page])
            for record in page:
                if record.id in linked:
                    continue
                st.po_records.setdefault(record.id, record)
                try:
                    projected = svc.project_po(record)
                except RecordError:
                    continue
                if projected is not None and not projected.unresolved:
                    out.append(projected)
        return out

    def _reconcile_deletes(
        self, state: FlowState, listed_ids: list[str]
    ) -> tuple[str | None, list[Action]]:
        """Deletes seen by the full listing(s); a reason when the flow must stop instead."""
        svc = self.executor.services
        pairs = [
            LinkedPair(po_id, pms_id, status=status) for po_id, pms_id, status in state.pairs()
        ]
        actions: list[Action] = []
        sides: list[tuple[str, list[str]]] = [("poweroffice", listed_ids)]
        if self.reconcile_pms:
            sides.append(("pms", [r.id for r in self.pms_capture.listing(svc.pms_resource)]))
        for side, ids in sides:
            outcome = plan_reconcile(
                "poweroffice" if side == "poweroffice" else "pms",
                ids,
                pairs,
                threshold=self.mass_delete_threshold,
                confirmed=self.confirm_deletes,
            )
            if isinstance(outcome, MassDeleteBlocked):
                return (
                    f"mass-delete breaker: {len(outcome.would_delete)} of {outcome.linked} "
                    f"linked {side} records vanished ({outcome.share:.0%} > "
                    f"{outcome.threshold:.0%}); nothing was changed. Check {side}, then run "
                    f"tolken sync --once --reconcile --confirm-deletes",
                    [],
                )
            if isinstance(outcome, SourceOutage):
                return (f"{side} outage: {outcome.reason}; nothing was changed", [])
            actions.extend(outcome.actions)
        return None, actions


def _po_unchanged(state: FlowState, page: Sequence[tuple[str, str]]) -> set[str]:
    """The ids of a page's ``(id, content hash)`` whose content is what tolken last saw or
    wrote (linked, and the shadow's hash equal), read in one query keyed by the page's ids."""
    stored = state.poweroffice_hashes([record_id for record_id, _ in page])
    return {record_id for record_id, digest in page if stored.get(record_id) == digest}


def _touched_links(
    state: FlowState, po: Iterable[ProjectedRecord], pms: Iterable[ProjectedRecord]
) -> list[LinkedPair]:
    """The links (with shadows) of the changed records, for the planner."""
    found = {}
    for record in po:
        link = state.by_po(record.id)
        if link is not None:
            found[link.id] = link
    for record in pms:
        link = state.by_pms(record.id)
        if link is not None:
            found[link.id] = link
    pairs = []
    for link_id, link in found.items():
        shadow = state.shadow(link_id)
        pairs.append(
            LinkedPair(
                link.poweroffice_id,
                link.pms_id,
                shadow=shadow.fields if shadow is not None else None,
                status=link.state,
                pms_version=shadow.pms_version if shadow is not None else None,
            )
        )
    return pairs


def flow_context(
    tenant: str, flow_id: FlowId, flow: Flow, policy: str, create_po: bool
) -> FlowContext:
    """The planner's view of a flow's settings."""
    return FlowContext(
        tenant=tenant,
        flow=flow_id,
        policy=policy,  # type: ignore[arg-type]
        create_in_poweroffice=create_po,
        rules=match_rules(flow),
    )
