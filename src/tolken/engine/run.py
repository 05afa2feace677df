"""The executor: :class:`SyncEngine` runs sync cycles over the flows in dependency order.

A thin shell around the pure core (planner, merge, cursor rules): it reads
through the connectors, asks the planner, applies the actions (see
:mod:`tolken.engine.executor`) and keeps the store up to date. It is handed its
parts (config, store, connectors, mapping); :func:`tolken.compose.open_engine`
builds them from a config::

    with open_engine(load_config("tolken.yaml")) as engine:
        report = engine.run_cycle()
        print(report.to_json())

A :class:`~tolken.errors.Fatal` error (bad credentials, a system that cannot
be reached) ends the cycle: the run is recorded as failed and the error is
raised. Everything record-level is parked and counted in the report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from tolken.config import TolkenConfig
from tolken.connectors.base import Connector
from tolken.engine.capture import PMSCapture
from tolken.engine.executor import CycleState, Executor
from tolken.engine.flow import FlowRun, flow_context
from tolken.engine.model import Link, LinkedPair
from tolken.engine.pairs import BY_HAND, group_actions
from tolken.engine.plan import plan_link
from tolken.engine.report import CycleReport
from tolken.engine.resolver import LinkResolver
from tolken.engine.services import FlowServices
from tolken.errors import RecordError, Stopped, TolkenError
from tolken.logging import get_logger, log_context
from tolken.mapping import Mapping, belongs, load_mapping
from tolken.store import DuplicateLink, OpenWork, RunStatus, Store, TenantStore
from tolken.vocabulary import FlowId

__all__ = ["RequestCounts", "SyncEngine"]


_log = get_logger("tolken.engine")


class RequestCounts(Protocol):
    """HTTP requests per system so far; whoever makes the connectors' clients counts them."""

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by system (``poweroffice``, ``pms``)."""
        ...


class SyncEngine:
    """Runs sync cycles for one tenant: the three flows, both ways, with the store.

    ``poweroffice`` and ``pms`` are any :class:`~tolken.connectors.base.Connector`;
    ``counter`` (optional) reports requests per system; ``stop`` is the event
    :meth:`request_stop` sets (the one the connectors' waits and listings
    watch, when the composition root shares it). The engine opens
    nothing, so it closes nothing: whoever handed it its parts closes them.
    """

    def __init__(
        self,
        config: TolkenConfig,
        store: Store,
        poweroffice: Connector,
        pms: Connector,
        mapping: Mapping | None = None,
        *,
        counter: RequestCounts | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.store: TenantStore = store.for_tenant(config.tenant)
        self.poweroffice = poweroffice
        self.pms = pms
        self.mapping = mapping or load_mapping(config.mapping)
        self.counter = counter
        self.tenant = config.tenant
        self.cycles = 0
        self.stop_event = stop if stop is not None else threading.Event()

    def request_stop(self) -> None:
        """Finish the record in flight, commit, and end the cycle (SIGTERM/SIGINT)."""
        self.stop_event.set()

    # -- cycles ---------------------------------------------------------------

    def flows(self) -> list[FlowId]:
        """The enabled flows in dependency order."""
        order: list[FlowId] = list(self.mapping.order())
        return [f for f in order if self.config.sync.flow(f).enabled]

    def due_for_reconcile(self) -> bool:
        """True when the next cycle is a scheduled reconcile (every ``sync.reconcile_every``)."""
        return (self.cycles + 1) % self.config.sync.reconcile_every == 0

    def run_cycle(
        self,
        *,
        reconcile: bool = False,
        dry_run: bool = False,
        confirm_deletes: bool = False,
        progress: Callable[[str], None] | None = None,
        on_record: Callable[[str, int, int], None] | None = None,
    ) -> CycleReport:
        """One cycle of every enabled flow; ``dry_run`` writes nothing anywhere (``plan``).

        ``progress(flow)`` is called as each flow starts, ``on_record(flow, done,
        total)`` after each record (or pair) of it was applied.
        """
        before = self.counter.snapshot() if self.counter else {}
        report = CycleReport(reconciled=reconcile, dry_run=dry_run)
        started = self.store.now()
        run_id = None if dry_run else self.store.start_run()
        report.run_id = run_id
        open_work = self.store.open_work()
        resolver = LinkResolver(self.store, remember_unstored=dry_run)
        pms_capture = PMSCapture(
            self.pms,
            self.store,
            use_feed=self.config.pms.change_capture == "changes",
            stop=self.stop_event.is_set,
        )
        status: RunStatus = "ok"
        cycle = _CycleRun(
            resolver, pms_capture, started, run_id, reconcile, dry_run, confirm_deletes, open_work
        )
        try:
            status = self._run_flows(
                report,
                cycle,
                progress=progress,
                on_record=on_record,
            )
            if not dry_run and not report.interrupted:
                pms_capture.commit()
        except Stopped:
            # A wait or listing cut short by the stop: nothing half-read is kept.
            report.interrupted = True
        except BaseException as exc:
            # Record every way a cycle can end (a bug, Ctrl-C twice), never leave it "running".
            report.requests = self._requests(before)
            if run_id is not None:
                message = str(exc) if isinstance(exc, TolkenError) else repr(exc)
                self.store.finish_run(
                    run_id,
                    "failed",
                    counts=_counts(report),
                    requests=report.requests,
                    error=message,
                )
            raise
        finally:
            pms_capture.close()
        report.requests = self._requests(before)
        if run_id is not None:
            self.store.finish_run(
                run_id,
                "stopped" if report.interrupted else status,
                counts=_counts(report),
                requests=report.requests,
                error="interrupted" if report.interrupted else None,
            )
        if not dry_run:
            self.cycles += 1
        return report

    def _run_flows(
        self,
        report: CycleReport,
        cycle: _CycleRun,
        *,
        progress: Callable[[str], None] | None,
        on_record: Callable[[str, int, int], None] | None,
    ) -> RunStatus:
        """Run the enabled flows in order until one is interrupted (``stopped``: a breaker)."""
        status: RunStatus = "ok"
        overlap = timedelta(seconds=self.config.poweroffice.overlap_seconds)
        sync = self.config.sync
        for flow_id in self.flows():
            if self.stop_event.is_set():
                report.interrupted = True
                break
            if progress is not None:
                progress(flow_id)
            executor = self._executor(
                flow_id, report, cycle.resolver, dry_run=cycle.dry_run, run_id=cycle.run_id
            )
            with log_context(run_id=cycle.run_id, flow=flow_id):
                finished = FlowRun(
                    executor,
                    self.store,
                    cycle.pms_capture,
                    overlap,
                    cycle.started,
                    reconcile=cycle.reconcile,
                    confirm_deletes=cycle.confirm_deletes,
                    mass_delete_threshold=sync.mass_delete_threshold,
                    reconcile_pms=self.config.pms.change_capture == "polling",
                    should_stop=self.stop_event.is_set,
                    on_progress=on_record,
                    open_work=cycle.open_work,
                ).run()
                flow_report = report.flow(flow_id)
                counts = {k: v for k, v in flow_report.counts.items() if v}
                if counts or flow_report.stopped:
                    _log.info("flow synchronised", counts=counts, stopped=flow_report.stopped)
            if not finished:
                report.interrupted = True
                break
            if flow_report.stopped:
                status = "stopped"
        return status

    def _executor(
        self,
        flow_id: FlowId,
        report: CycleReport,
        resolver: LinkResolver,
        *,
        dry_run: bool,
        run_id: int | None,
    ) -> Executor:
        """The executor of one flow for one cycle: this engine's services, a fresh state."""
        flow = self.mapping.flow(flow_id)
        sync = self.config.sync
        ctx = flow_context(
            self.tenant,
            flow_id,
            flow,
            sync.policy_for(flow_id),
            sync.flow(flow_id).create_in_poweroffice,
        )
        services = FlowServices(
            tenant=self.tenant,
            flow_id=flow_id,
            flow=flow,
            ctx=ctx,
            store=self.store,
            poweroffice=self.poweroffice,
            pms=self.pms,
            resolver=resolver,
        )
        state = CycleState(report.flow(flow_id), report, dry_run=dry_run, run_id=run_id)
        return Executor(services, state)

    def link_by_hand(self, flow_id: FlowId, po_id: str, pms_id: str) -> CycleReport:
        """Link two existing records (``tolken link``) and merge them at once.

        Both records must exist and the PMS record must belong to the flow;
        a record that is already linked is refused with
        :class:`~tolken.store.DuplicateLink`. The merge follows first-link
        rules: an empty value never overwrites a non-empty one, and differing
        values are conflicts settled by the flow's policy.
        """
        flow = self.mapping.flow(flow_id)
        po_record = self.poweroffice.get(flow.poweroffice, po_id)
        pms_record = self.pms.get(flow.pms, pms_id)
        if not belongs(flow, pms_record.data):
            raise RecordError(
                f"PMS {flow.pms} record {pms_id} is not part of the {flow_id} flow "
                f"(it does not match {dict(flow.pms_filter)})",
                system="pms",
            )
        for existing, side, record_id in (
            (self.store.get_link_by_po(flow_id, po_id), "PowerOffice", po_id),
            (self.store.get_link_by_pms(flow_id, pms_id), "PMS", pms_id),
        ):
            if existing is not None:
                raise DuplicateLink(
                    f"{side} record {record_id} is already linked in {flow_id} "
                    f"(PowerOffice {existing.poweroffice_id} <-> PMS {existing.pms_id})"
                )
        report = CycleReport()
        executor = self._executor(
            flow_id, report, LinkResolver(self.store), dry_run=False, run_id=None
        )
        executor.remember("poweroffice", po_record)
        executor.remember("pms", pms_record)
        po = executor.services.project_po(po_record)
        pms = executor.services.project_pms(pms_record)
        pair = LinkedPair(po_id, pms_id, pms_version=pms_record.version)
        actions = [
            Link(po_id, pms_id, BY_HAND),
            *plan_link(pair, po, pms, policy=executor.services.ctx.policy),
        ]
        for group in group_actions(actions):
            executor.apply(group)
        for side_name, record_id in (("poweroffice", po_id), ("pms", pms_id)):
            self.store.resolve_failure(flow_id, side_name, record_id)  # type: ignore[arg-type]
        return report

    def _requests(self, before: dict[str, int]) -> dict[str, int]:
        now = self.counter.snapshot() if self.counter else {}
        return {
            system: now.get(system, 0) - before.get(system, 0) for system in ("poweroffice", "pms")
        }

    def watch(
        self,
        *,
        on_cycle: Callable[[CycleReport], None] | None = None,
        on_error: Callable[[TolkenError], bool] | None = None,
        wait: Callable[[float], object] | None = None,
        reconcile_first: bool = False,
    ) -> None:
        """Run cycles every ``sync.interval_seconds`` until :meth:`request_stop`.

        Reconciles every ``sync.reconcile_every`` cycles. ``on_error`` decides
        whether a fatal error ends the loop (return False) or waits for the
        next cycle (True); without it the error is raised. ``wait(seconds)``
        sleeps between cycles (by default until the interval passes or a stop
        is requested); one that returns early, woken by new work, starts the
        next cycle at once (the serve loop's webhooks). ``reconcile_first`` runs
        a reconcile before the loop (``sync --watch --reconcile``); its errors are raised.
        """
        wait = wait or self.stop_event.wait
        if reconcile_first and not self.stop_event.is_set():
            first = self.run_cycle(reconcile=True)
            if on_cycle is not None:
                on_cycle(first)
        while not self.stop_event.is_set():
            try:
                report = self.run_cycle(reconcile=self.due_for_reconcile())
            except TolkenError as exc:
                self.cycles += 1  # so a reconcile that keeps failing does not block the schedule
                if on_error is None or not on_error(exc):
                    raise
            else:
                if on_cycle is not None:
                    on_cycle(report)
            if self.stop_event.is_set():
                break
            wait(self.config.sync.interval_seconds)


@dataclass(frozen=True)
class _CycleRun:
    """What every flow of one cycle shares."""

    resolver: LinkResolver
    pms_capture: PMSCapture
    started: datetime
    run_id: int | None
    reconcile: bool
    dry_run: bool
    confirm_deletes: bool
    open_work: OpenWork


def _counts(report: CycleReport) -> dict[str, dict[str, int]]:
    return {flow_id: dict(flow.counts) for flow_id, flow in report.flows.items()}
