"""One flow of one cycle, a page at a time: capture, project, match, plan, apply, drop.

The steps, for flow ``F`` (PowerOffice resource ``R``, PMS resource ``S``);
what is read is set aside in the cycle's :class:`~tolken.engine.staging.Staging`
(a private SQLite file) and read back a page at a time, so memory does not
grow with the record count:

1. Read PowerOffice ``R`` since the cursor (all of it on the first run or a
   reconcile). A linked record whose content hash equals the shadow's is an
   echo of tolken's own write (or unchanged in a reconcile) and is dropped
   (asked per listing page); the others are set aside. Every listed record's
   id, content hash and time is noted in the staging (not held) for step 6
   and a reconcile.
2. Read what changed in PMS ``S`` (shared per cycle) and set aside the records
   that belong to ``F`` (``pms_filter``), plus tombstones of linked records.
3. Add the parked records whose retry is due, re-read from both sides.
4. Linked pairs, page by page: project, plan (:func:`tolken.engine.plan.plan_link`),
   apply, drop. The unlinked records are set aside, projected.
5. Unlinked records (:mod:`tolken.engine.paged`), only when there are any:
   the unlinked PMS records of ``F`` are pooled as candidates, indexed in SQL
   by each merge rule's key; a match pass over every unlinked PowerOffice
   record notes its claims, then a decide pass links, reports or creates
   page by page. Unclaimed PMS-only records are skipped, or matched the other
   way when ``create_in_poweroffice`` is on.
6. Advance the PowerOffice cursor, never past a record that waits or failed
   (a parked record read again before its retry is due waits too), folding
   the noted listing in a page at a time (:class:`tolken.engine.cursor.Advance`).

A reconcile also runs :func:`tolken.engine.plan.plan_reconcile` over the full
listing's ids (deletes, with the mass-delete breaker and the outage guard),
asked of the staging a page of links at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tolken.connectors.base import RemoteRecord
from tolken.engine import batch, settle
from tolken.engine.capture import PMSCapture, read_poweroffice, save_po_cursor
from tolken.engine.cursor import content_hash
from tolken.engine.executor import Executor
from tolken.engine.match import MatchRule
from tolken.engine.model import (
    Action,
    CreateInPMS,
    Link,
    LinkedPair,
    MassDeleteBlocked,
    ProjectedRecord,
    Side,
    Skipped,
    SourceOutage,
)
from tolken.engine.paged import decide, note_matches, pages
from tolken.engine.pairs import group_actions
from tolken.engine.plan import SKIPPED_PMS_ONLY, FlowContext, plan_reconcile
from tolken.engine.staging import StagedCandidates, StagedClaims, StagedIds, Staging
from tolken.errors import NotFound, RecordError
from tolken.mapping import Flow, belongs, merge_key_flat
from tolken.store import FlowState, OpenWork, TenantStore
from tolken.vocabulary import FlowId

__all__ = ["CANDIDATE_PAGE", "FlowRun", "match_rules"]

CANDIDATE_PAGE = 1000
"""Listed records whose links are looked up in one query (candidates for a match)."""


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
    open_work: OpenWork | None = None
    """The flows with pending creates and open failures at the cycle's start (one query for
    every flow); ``None`` asks the store for this flow's."""
    _done: int = 0
    _total: int = 0
    _writers: batch.Writers | None = None

    def run(self) -> bool:
        """Run the flow; False when it was interrupted (a stop was requested).

        One :class:`~tolken.engine.batch.Writers` pool POSTs every batch of creates of the flow.
        """
        with batch.Writers(self.executor.services) as writers:
            self._writers = writers
            try:
                return self._run()
            finally:
                self._writers = None

    def _run(self) -> bool:
        ex = self.executor
        svc, st = ex.services, ex.state
        if not st.dry_run:
            # Only this flow's own runs leave its creates pending: none at the cycle's start
            # means none now, and nothing to look up.
            if self.open_work is None or svc.flow_id in self.open_work.pending_creates:
                ex.recover_pending_creates()
            settle.apply_settled_conflicts(ex)
        state = self.store.load_flow_state(svc.flow_id)
        st.links = state
        # None of the flow's records is linked (a first sync): no link or hash is looked up.
        # Nothing before _new_records links a record of the flow (deletes need links).
        any_linked = state.has_links()  # one row looked at: an idle cycle counts nothing
        kinds = _Kinds(svc.flow_id)
        staging = self.staging
        for kind in kinds.all():
            staging.drop(kind)
        capture = read_poweroffice(
            svc.poweroffice,
            self.store,
            svc.po_resource,
            overlap=self.overlap,
            full=self.reconcile,
            # Unchanged records are dropped page by page while the listing is read,
            # their stored hashes read for that page only; the changed ones are set aside.
            staging=staging,
            listed_kind=kinds.listed,
            unchanged=(lambda page: _po_unchanged(state, page)) if any_linked else None,
            keep=lambda page: staging.put_hashed(kinds.po, page),
        )
        deletes: list[Action] = []
        if self.reconcile:
            stop_reason, deletes = self._reconcile_deletes(state, capture.listed_ids())
            if stop_reason is not None:
                st.report.stopped = stop_reason
                staging.drop(kinds.listed)
                return True
        self._stage_pms_changes(state, kinds.pms, any_linked=any_linked)
        backing_off = self._add_due_failures(state, kinds)
        # A parked PowerOffice record read again (the cursor stays before it) is
        # retried only when its backoff is over (or after tolken retry): it waits.
        held_back = staging.has(kinds.po, backing_off)
        if held_back:
            staging.delete(kinds.po, held_back)
            st.report.add("waiting", len(held_back))
        self._done = 0
        self._total = len(deletes) + staging.count(kinds.po) + staging.count(kinds.pms)
        if self.on_progress is not None and not self._total:
            self.on_progress(svc.flow_id, 0, 0)
        finished = (
            self._apply(list(group_actions(deletes)))
            and self._linked_pairs(state, kinds, any_linked=any_linked)
            and self._new_records(state, kinds)
        )
        for kind in kinds.all():
            staging.drop(kind)
        if finished and not st.dry_run:
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
        staging.drop(kinds.listed)
        return finished

    @property
    def staging(self) -> Staging:
        """Where this cycle's records are set aside (the PMS capture's, one per cycle)."""
        return self.pms_capture.staging

    def _apply_page(self, actions: list[Action]) -> bool:
        """Apply one page's actions, then drop what the page read (records, pairs, links)."""
        ex = self.executor
        finished = self._apply(list(group_actions(actions)))
        ex.state.po_records.clear()
        ex.state.po_hashes.clear()
        ex.state.pms_records.clear()
        ex.state.pairs.clear()
        if ex.state.links is not None:
            ex.state.links.forget()
        return finished

    def _linked_pairs(self, state: FlowState, kinds: _Kinds, *, any_linked: bool) -> bool:
        """Plan and apply the linked pairs that changed, a page at a time; the unlinked changed
        records are set aside for :meth:`_new_records` (all of them unless ``any_linked``)."""
        ex, staging = self.executor, self.staging
        svc = ex.services
        for page in staging.pages(kinds.po):
            projected = self._project_po(page)
            parked = {r.id for r in page} - {p.id for p in projected}
            if parked:
                staging.delete(kinds.po, parked)  # not planned: a PMS change plans alone
            if not any_linked:
                staging.put_projected(kinds.new_po, projected)
                continue
            state.prefetch(poweroffice_ids=[p.id for p in projected])
            raw = {r.id: r for r in page}
            linked = [(p, link) for p in projected if (link := state.by_po(p.id)) is not None]
            staging.put_projected(kinds.new_po, (p for p in projected if state.by_po(p.id) is None))
            other = staging.get_many(kinds.pms, [link.pms_id for _, link in linked])
            actions: list[Action] = []
            for po, link in linked:
                ex.remember("poweroffice", raw[po.id])
                pms_raw = other.get(link.pms_id)
                if pms_raw is not None:
                    ex.remember("pms", pms_raw)
                pair = _linked_pair(state, link.id)
                pms = svc.project_pms(pms_raw)
                actions.extend(ex.plan_pair(pair, po, pms))
            if not self._apply_page(actions):
                return False
        for page in staging.pages(kinds.pms):
            if not any_linked:
                staging.put_projected(
                    kinds.new_pms, (p for r in page if (p := svc.project_pms(r)) is not None)
                )
                continue
            state.prefetch(pms_ids=[r.id for r in page])
            linked_pms = [(r, link) for r in page if (link := state.by_pms(r.id)) is not None]
            planned = staging.has(kinds.po, [link.poweroffice_id for _, link in linked_pms])
            staging.put_projected(
                kinds.new_pms,
                (
                    p
                    for r in page
                    if state.by_pms(r.id) is None and (p := svc.project_pms(r)) is not None
                ),
            )
            actions = []
            for record, link in linked_pms:
                if link.poweroffice_id in planned:
                    continue  # planned with its PowerOffice side above
                ex.remember("pms", record)
                pair = _linked_pair(state, link.id)
                actions.extend(ex.plan_pair(pair, None, svc.project_pms(record)))
            if not self._apply_page(actions):
                return False
        return True

    def _new_records(self, state: FlowState, kinds: _Kinds) -> bool:
        """Match, link or create the unlinked changed records (:mod:`tolken.engine.paged`)."""
        ex, staging = self.executor, self.staging
        svc = ex.services
        ctx = svc.ctx
        book: StagedClaims | None = None
        if staging.count(kinds.new_po):
            pool = staging.candidates(kinds.pool_pms, "pms", ctx.rules)
            # A first read's changes are the full listing: each listed record is linked, set
            # aside as changed (pooled below) or not the flow's, so it adds nothing to the pool.
            if not self.pms_capture.listed_as_changes(svc.pms_resource) and self._any_resolved_po(
                kinds.new_po
            ):
                for page in self.pms_capture.listing(svc.pms_resource):
                    ids = [r.id for r in page]
                    # The changed ones are pooled below (the fresher copy, projected already).
                    skip = state.linked_pms(ids) | staging.has(kinds.new_pms, ids)
                    pool.add(
                        (r, p)
                        for r in page
                        if r.id not in skip
                        and belongs(svc.flow, r.data)
                        and (p := svc.project_pms(r)) is not None
                    )
            for projected in staging.pages_projected(kinds.new_pms):
                pool.add_staged(projected, kinds.new_pms, kinds.pms)
            book = staging.claims(kinds.pool_pms)
            if not self._two_passes("pms", kinds.new_po, kinds.po, pool, book):
                return False
        for projected in staging.pages_projected(kinds.new_pms):
            reported = book.reported([p.id for p in projected]) if book is not None else set()
            rest = [p for p in projected if p.id not in reported and not p.deleted]
            if ctx.create_in_poweroffice:
                staging.put_projected(kinds.unreported, rest)
            elif not self._apply_page([Skipped(None, p.id, SKIPPED_PMS_ONLY) for p in rest]):
                return False
        if not staging.count(kinds.unreported):
            return True
        pool = staging.candidates(kinds.pool_po, "poweroffice", ctx.rules)
        for listed in pages(svc.poweroffice.list(svc.po_resource), CANDIDATE_PAGE):
            linked = state.linked_poweroffice([r.id for r in listed])
            busy = linked | staging.has(kinds.po, [r.id for r in listed])
            pool.add(
                (r, p)
                for r in listed
                if r.id not in busy
                and (p := self._project_quiet(r)) is not None
                and not p.unresolved
            )
        return self._two_passes(
            "poweroffice", kinds.unreported, kinds.pms, pool, staging.claims(kinds.pool_po)
        )

    def _any_resolved_po(self, kind: str) -> bool:
        """Whether an unlinked record can match at all (else the PMS is not listed)."""
        return any(not p.unresolved for page in self.staging.pages_projected(kind) for p in page)

    def _project_quiet(self, record: RemoteRecord) -> ProjectedRecord | None:
        try:
            return self.executor.services.project_po(record)
        except RecordError:
            return None

    def _two_passes(
        self, target: Side, kind: str, raw_kind: str, pool: StagedCandidates, book: StagedClaims
    ) -> bool:
        """The match pass, then the decide pass with its actions applied, a page at a time."""
        ex, staging = self.executor, self.staging
        svc = ex.services
        source: Side = "poweroffice" if target == "pms" else "pms"
        if not pool.empty():  # else nothing matches, nothing is noted (an initial sync)
            for projected in staging.pages_projected(kind):
                note_matches(projected, pool, book)
        for projected in staging.pages_projected(kind):
            actions = decide(svc.ctx, target, projected, pool, book)
            # With the listing's content hash (PowerOffice), for the new pair's shadow.
            for record, digest in staging.get_hashed(raw_kind, [p.id for p in projected]).values():
                ex.remember(source, record, digest)
            linked = [
                a.pms_id if target == "pms" else a.po_id for a in actions if isinstance(a, Link)
            ]
            for record in pool.raw_many(linked).values():
                ex.remember(target, record)
            if not self._apply_page(actions):
                return False
        return True

    def _apply(self, groups: list[list[Action]]) -> bool:
        """Apply the groups in order, creates and plain first links in batches.

        False when a stop was requested (the batch in hand is finished first).
        """
        ex = self.executor
        creates: list[CreateInPMS] = []
        links: list[list[Action]] = []

        def flush() -> None:
            if creates:
                batch.create_many_in_pms(ex, creates, self._writers)
            if links:
                batch.link_many(ex, links)
            if creates or links:
                self._done += len(creates) + len(links)
                creates.clear()
                links.clear()
                self._progress()

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
                self._done += 1
                self._progress()
                continue
            if len(creates) + len(links) >= batch.BATCH:
                flush()
        flush()
        return True

    def _progress(self) -> None:
        if self.on_progress is not None:
            total = max(self._total, self._done)  # a record's groups may outnumber its count
            self.on_progress(self.executor.services.flow_id, self._done, total)

    # -- steps ----------------------------------------------------------------

    def _stage_pms_changes(self, state: FlowState, kind: str, *, any_linked: bool) -> None:
        """Set aside the flow's PMS changes: its records that changed (not echoes of tolken's
        own writes) and tombstones of linked records (none unless ``any_linked``)."""
        svc = self.executor.services
        changes_kind = self.pms_capture.changes_kind(svc.pms_resource)
        for records in self.pms_capture.changes(svc.pms_resource):
            if any_linked:
                state.prefetch(pms_ids=[r.id for r in records])
            changed = []
            for record in records:
                link = state.by_pms(record.id) if any_linked else None
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
            # The bodies are copied in SQL (the records were set aside as read already).
            self.staging.copy(changes_kind, kind, [r.id for r in changed])
            state.forget()

    def _add_due_failures(self, state: FlowState, kinds: _Kinds) -> set[str]:
        """Re-read the parked records whose retry is due (both sides of a linked pair).

        Returns the ids of parked PowerOffice records whose retry is not due yet.
        """
        svc, st, staging = self.executor.services, self.executor.state, self.staging
        # One read of the flow's open failures per cycle (dry run included), split here; none
        # when it had none at the cycle's start and parked nothing since (only its own steps
        # park its records: the recovery and the settled conflicts above).
        work = self.open_work
        quiet = (
            work is not None
            and svc.flow_id not in work.failures
            and svc.flow_id not in work.pending_creates
            and not st.open_failures
        )
        parked = [] if quiet else self.store.list_failures(svc.flow_id)
        now = self.store.now()
        due = sorted(
            (f for f in parked if f.next_attempt_at <= now),
            key=lambda f: (f.next_attempt_at, f.id),
        )
        backing_off = {
            f.record_id for f in parked if f.side == "poweroffice" and f.next_attempt_at > now
        }
        for failure in parked:
            # A write of a parked pair that may have landed (Executor.plan_pair).
            in_doubt = (failure.details or {}).get("in_doubt")
            if failure.side == "poweroffice" and in_doubt:
                st.in_doubt[failure.record_id] = in_doubt
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
                if po_id is not None and not staging.has(kinds.po, [po_id]):
                    staging.put(kinds.po, [svc.poweroffice.get(svc.po_resource, po_id)])
                if pms_id is not None and not staging.has(kinds.pms, [pms_id]):
                    staging.put(kinds.pms, [self._get_pms(pms_id)])
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
        """The records projected; one the mapping cannot convert is parked and left out."""
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

    def _reconcile_deletes(
        self, state: FlowState, listed_ids: StagedIds
    ) -> tuple[str | None, list[Action]]:
        """Deletes seen by the full listing(s); a reason when the flow must stop instead.

        The listed ids stay in the staging: each page of links asks which of its ids
        were listed in one query."""
        svc = self.executor.services

        def pairs(side: Side, ids: StagedIds) -> Iterator[LinkedPair]:
            # Streamed from the store for each side: the links are not held.
            for chunk in pages(state.pairs(), CANDIDATE_PAGE):
                ids.prefetch(
                    [po_id if side == "poweroffice" else pms_id for po_id, pms_id, _ in chunk]
                )
                for po_id, pms_id, status in chunk:
                    yield LinkedPair(po_id, pms_id, status=status)

        actions: list[Action] = []
        sides: list[tuple[Side, StagedIds]] = [("poweroffice", listed_ids)]
        if self.reconcile_pms:
            sides.append(("pms", self.pms_capture.listing_ids(svc.pms_resource)))
        for side, ids in sides:
            outcome = plan_reconcile(
                side,
                ids,
                pairs(side, ids),
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


def _linked_pair(state: FlowState, link_id: int) -> LinkedPair:
    """A stored link with its shadow, for the planner."""
    link = state.get(link_id)
    assert link is not None  # for mypy: asked for a link just found
    shadow = state.shadow(link_id)
    return LinkedPair(
        link.poweroffice_id,
        link.pms_id,
        shadow=shadow.fields if shadow is not None else None,
        status=link.state,
        pms_version=shadow.pms_version if shadow is not None else None,
    )


@dataclass(frozen=True)
class _Kinds:
    """The staging kinds of one flow's cycle."""

    flow: str

    @property
    def po(self) -> str:
        """The PowerOffice records that changed."""
        return f"po:{self.flow}"

    @property
    def pms(self) -> str:
        """The flow's PMS changes."""
        return f"pms:{self.flow}"

    @property
    def new_po(self) -> str:
        """The unlinked PowerOffice changes."""
        return f"new-po:{self.flow}"

    @property
    def new_pms(self) -> str:
        """The unlinked PMS changes."""
        return f"new-pms:{self.flow}"

    @property
    def unreported(self) -> str:
        """The unlinked PMS changes no PowerOffice record claimed or reported."""
        return f"unreported:{self.flow}"

    @property
    def pool_pms(self) -> str:
        """The PMS candidates' pool."""
        return f"to-pms:{self.flow}"

    @property
    def pool_po(self) -> str:
        """The PowerOffice candidates' pool."""
        return f"to-poweroffice:{self.flow}"

    @property
    def listed(self) -> str:
        """What the PowerOffice listing gave (ids, hashes, times): the cursor and a reconcile."""
        return f"po-listed:{self.flow}"

    def all(self) -> tuple[str, ...]:
        """Every record kind (pools are emptied when made)."""
        return (self.po, self.pms, self.new_po, self.new_pms, self.unreported)


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
