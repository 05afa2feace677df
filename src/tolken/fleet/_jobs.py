"""What a worker does for one job: sync one tenant, queue the due ones, recover stalled jobs.

:class:`TenantJob` runs one tenant's job: single mode's engine built by
:func:`tolken.compose.open_engine` from the tenant's settings, on the worker's
shared store, drawing on the PostgreSQL budget of the subscription key (a webhook's job
as an urgent user, with ``fleet.webhook_reserve`` of the budget kept for it
while it waits, see :mod:`tolken.connectors.ratelimit`); one
cycle, or a reconcile when asked for (``tenants resync``) or when
``sync.reconcile_every`` cycles have passed since the last one. It records
the tenant's state (``syncing``, then ``idle`` or ``error``) and a row in
``job_runs`` (duration, requests, 429 answers, outcome). A failing tenant's
next run backs off exponentially (:func:`retry_delay`); its job still ends
normally, so it never holds a worker or another tenant.

:class:`Dispatcher` is the periodic task: it queues every tenant whose next
run has come (``backfill`` before its first run, ``scheduled`` after) and
frees tenants left ``queued`` or ``syncing`` by a job that no longer exists.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import structlog

from tolken._redact import redacting
from tolken._redact import shared as shared_redactor
from tolken.compose import open_engine
from tolken.connectors.ratelimit import Budget, BudgetLimiter
from tolken.errors import TolkenError
from tolken.fleet._fleet import Fleet
from tolken.logging import log_context
from tolken.store import JobKind, JobOutcome, JobReason, Tenant, UnknownTenant

__all__ = ["BACKOFF_CAP_SECONDS", "CountingTransport", "Dispatcher", "TenantJob", "retry_delay"]

BACKOFF_CAP_SECONDS = 3600.0
"""The longest a failing tenant waits between two tries (unless its interval is longer)."""

_log = structlog.get_logger("tolken.fleet")


def retry_delay(interval_seconds: float, failures_in_a_row: int) -> float:
    """Seconds until a tenant that failed ``failures_in_a_row + 1`` times in a row tries again.

    Its interval, doubled with each failure before this one, capped at
    :data:`BACKOFF_CAP_SECONDS` (or the interval, if that is longer).
    """
    cap = max(interval_seconds, BACKOFF_CAP_SECONDS)
    return float(min(interval_seconds * 2 ** min(failures_in_a_row, 32), cap))


class CountingTransport(httpx.BaseTransport):
    """Sends through ``inner`` and counts the requests and the 429 answers (thread-safe)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.requests = 0
        self.throttled = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests += 1
        response = self._inner.handle_request(request)
        if response.status_code == 429:
            with self._lock:
                self.throttled += 1
        return response

    def close(self) -> None:
        self._inner.close()


def _describe(exc: BaseException) -> str:
    """One line for ``tenants list``'s last error: tolken's message, else the exception's type."""
    if isinstance(exc, TolkenError):
        text = " ".join(part.strip() for part in str(exc).splitlines()) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    return shared_redactor().text(text)[:1000]


class TenantJob:
    """Runs tenants' sync jobs in one worker process (thread-safe: one per process)."""

    def __init__(self, fleet: Fleet, budget: Budget, stop: threading.Event, worker: str) -> None:
        self.fleet = fleet
        self.budget = budget
        self.stop = stop
        self.worker = worker
        # Loading the CA certificates costs ~80 ms of CPU: once per process, not per job.
        self._tls = httpx.create_ssl_context()

    def _transport(self) -> CountingTransport:
        return CountingTransport(httpx.HTTPTransport(verify=self._tls))

    def run(
        self, tenant_id: str, reason: JobReason, *, reconcile: bool, job_id: int | None
    ) -> None:
        """Sync ``tenant_id`` once (module docstring); a failure of the tenant is recorded."""
        with log_context(tenant=tenant_id, job_id=job_id, reason=reason):
            registry = self.fleet.registry
            try:
                tenant = registry.get(tenant_id)
            except UnknownTenant:
                _log.info("tenant removed: job dropped")
                return
            if tenant.paused:
                registry.mark_idle(tenant_id)
                _log.info("tenant paused: job dropped")
                return
            registry.mark_syncing(tenant_id)
            kind: JobKind = "reconcile" if reconcile or self._reconcile_due(tenant) else "cycle"
            with redacting(tenant.settings.secrets()):
                self._sync(tenant, reason, kind, job_id)

    def _reconcile_due(self, tenant: Tenant) -> bool:
        cycles = self.fleet.store.job_run_log().cycles_since_reconcile(tenant.id)
        return cycles + 1 >= self.fleet.config.sync.reconcile_every

    def _sync(self, tenant: Tenant, reason: JobReason, kind: JobKind, job_id: int | None) -> None:
        log = self.fleet.store.job_run_log()
        registry = self.fleet.registry
        run = log.start_job_run(
            tenant.id, reason=reason, kind=kind, worker=self.worker, job_id=job_id
        )
        poweroffice, pms = self._transport(), self._transport()
        started = time.monotonic()
        _log.info("tenant sync started", kind=kind)
        try:
            config = self.fleet.config.tenant_config(tenant.settings)
            with open_engine(
                config,
                store=self.fleet.store,
                transports={"poweroffice": poweroffice, "pms": pms},
                stop=self.stop,
                rate_limiter=BudgetLimiter(self.budget, stop=self.stop, urgent=reason == "webhook"),
            ) as engine:
                report = engine.run_cycle(reconcile=kind == "reconcile")
        except Exception as exc:  # noqa: BLE001 - any failure is the tenant's, shown as its error
            error = _describe(exc)
            interval = config_interval(self.fleet, tenant)
            delay = retry_delay(interval, tenant.failures_in_a_row)
            registry.record_failure(
                tenant.id, error, next_run_at=registry.now() + timedelta(seconds=delay)
            )
            log.finish_job_run(
                run,
                outcome="error",
                poweroffice_requests=poweroffice.requests,
                pms_requests=pms.requests,
                throttled=poweroffice.throttled,
                error=error,
            )
            _log.warning("tenant sync failed", error=error, retry_in_seconds=round(delay, 1))
            return
        changes = sum(report.total(key) for key in ("created", "linked", "updated", "deactivated"))
        stopped = "; ".join(f"{f}: {r.stopped}" for f, r in report.flows.items() if r.stopped)
        now = registry.now()
        outcome: JobOutcome = "ok"
        if report.interrupted:
            # The records done are committed; the tenant is due again for the next worker.
            outcome = "stopped"
            registry.record_success(tenant.id, next_run_at=now)
            _log.info("tenant sync stopped by the worker's stop", changes=changes)
        elif stopped:
            outcome = "error"
            delay = retry_delay(config_interval(self.fleet, tenant), tenant.failures_in_a_row)
            registry.record_failure(tenant.id, stopped, next_run_at=now + timedelta(seconds=delay))
            _log.warning("tenant sync stopped a flow", error=stopped)
        else:
            interval = config_interval(self.fleet, tenant)
            registry.record_success(tenant.id, next_run_at=now + timedelta(seconds=interval))
            _log.info(
                "tenant sync finished",
                kind=kind,
                changes=changes,
                seconds=round(time.monotonic() - started, 3),
                poweroffice_requests=poweroffice.requests,
                throttled=poweroffice.throttled,
            )
        log.finish_job_run(
            run,
            outcome=outcome,
            poweroffice_requests=poweroffice.requests,
            pms_requests=pms.requests,
            throttled=poweroffice.throttled,
            changes=changes,
            run_id=report.run_id,
            error=stopped or None,
        )


def config_interval(fleet: Fleet, tenant: Tenant) -> float:
    """The tenant's interval between scheduled runs (its own, else the config's)."""
    return tenant.settings.interval_seconds or fleet.config.sync.interval_seconds


class Dispatcher:
    """The periodic task: queue the due tenants, free the ones a lost job left behind."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def dispatch(self) -> int:
        """Queue every due tenant; the number of jobs queued (joined ones not counted)."""
        registry = self.fleet.registry
        queued = 0
        for tenant in registry.due():
            reason: JobReason = "backfill" if tenant.last_run_at is None else "scheduled"
            try:
                queued += self.fleet.queue_sync(tenant.id, reason)
            except UnknownTenant:
                continue  # removed meanwhile
        self._free_lost()
        return queued

    def _free_lost(self) -> None:
        waiting = self.fleet.waiting()
        for tenant in self.fleet.registry.all():
            if tenant.state in ("queued", "syncing") and tenant.id not in waiting:
                try:
                    self.fleet.registry.mark_idle(tenant.id)
                except UnknownTenant:
                    continue
                _log.info("tenant had no job: idle again", tenant=tenant.id)
