"""The fleet as the CLI, the dashboard and the worker see it: tenants, the job queue, job runs.

:func:`open_fleet` opens the store of a fleet config (migrating it, and
applying procrastinate's schema once, see :mod:`tolken.fleet._schema`),
unlocks the tenant registry with ``fleet.secret_key`` and connects a
procrastinate app to the same database. :meth:`Fleet.queue_sync` queues one
tenant's sync job::

    with open_fleet(load_fleet_config("tolken.yaml")) as fleet:
        fleet.registry.add(TenantSettings(id="acme", ...))
        fleet.queue_sync("acme", "webhook")      # False: one was waiting already
        fleet.queue_depth(), fleet.latest_run("acme")

Every job of a tenant is queued with ``lock=<tenant>`` (one tenant never runs
twice at once) and ``queueing_lock=<tenant>`` (at most one job waits per
tenant): a burst of webhooks collapses into the one waiting job, which takes
the highest priority and the reconcile asked for by any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import get_args

from procrastinate import App, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import text

from tolken.config import FleetConfig, TolkenConfig
from tolken.connectors.ratelimit import libpq_url
from tolken.fleet._schema import ensure_job_schema
from tolken.store import JobReason, JobRun, Store, TenantRegistry, open_store

__all__ = [
    "JOB_QUEUE",
    "PRIORITIES",
    "SYNC_TASK",
    "Fleet",
    "JobReason",
    "open_fleet",
]

JOB_QUEUE = "tolken"
SYNC_TASK = "tolken.sync_tenant"

PRIORITIES: dict[JobReason, int] = {"webhook": 20, "scheduled": 10, "resync": 0, "backfill": 0}
"""procrastinate runs the highest priority first: webhook > scheduled > backfill/resync."""

# How often queue_sync tries again when the waiting job it would join started meanwhile.
_QUEUE_ATTEMPTS = 3

# A burst joins the waiting job: the highest priority and any reconcile asked for win.
_JOIN_WAITING = text(
    """
    UPDATE procrastinate_jobs
       SET priority = GREATEST(priority, :priority),
           args = args || jsonb_build_object(
               'reconcile', COALESCE((args->>'reconcile')::boolean, false) OR :reconcile,
               'reason', CASE WHEN priority < :priority THEN :reason ELSE args->>'reason' END)
     WHERE queueing_lock = :tenant AND status = 'todo'
    RETURNING id
    """
)


class Fleet:
    """An open fleet: config, store, tenant registry and job queue (see :func:`open_fleet`)."""

    def __init__(
        self, config: FleetConfig, store: Store, registry: TenantRegistry, app: App
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.app = app

    def __repr__(self) -> str:
        return f"Fleet({self.store.engine.url!r})"

    def tenant_config(self, tenant_id: str) -> TolkenConfig:
        """The single-mode config that syncs ``tenant_id`` (:class:`UnknownTenant` if none)."""
        return self.config.tenant_config(self.registry.get(tenant_id).settings)

    # -- the queue -------------------------------------------------------------------

    def queue_sync(self, tenant_id: str, reason: JobReason) -> bool:
        """Queue a sync of ``tenant_id``; False when a job of it was waiting already (joined).

        ``resync`` makes the job a reconcile. A paused tenant is not queued
        (False). :class:`~tolken.store.UnknownTenant` when there is no such tenant.
        """
        if reason not in get_args(JobReason):
            raise ValueError(f"unknown reason {reason!r}")
        tenant = self.registry.get(tenant_id)
        if tenant.paused:
            return False
        reconcile = reason == "resync"
        task = self.app.configure_task(
            SYNC_TASK,
            queue=JOB_QUEUE,
            lock=tenant_id,
            queueing_lock=tenant_id,
            priority=PRIORITIES[reason],
        )
        for _attempt in range(_QUEUE_ATTEMPTS):
            try:
                task.defer(tenant_id=tenant_id, reason=reason, reconcile=reconcile)
            except AlreadyEnqueued:
                if self._join_waiting(tenant_id, reason, reconcile):
                    return False
                continue  # the waiting job started meanwhile: queue a new one
            if tenant.state in ("idle", "error"):
                self.registry.mark_queued(tenant_id)
            return True
        return False

    def _join_waiting(self, tenant_id: str, reason: JobReason, reconcile: bool) -> bool:
        params = {
            "tenant": tenant_id,
            "priority": PRIORITIES[reason],
            "reason": reason,
            "reconcile": reconcile,
        }
        with self.store.engine.begin() as conn:
            return conn.execute(_JOIN_WAITING, params).first() is not None

    def queue_depth(self) -> int:
        """Sync jobs waiting for a worker (every tenant's)."""
        with self.store.engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs "
                    "WHERE task_name = :task AND status = 'todo'"
                ),
                {"task": SYNC_TASK},
            ).scalar_one()
        return int(found)

    def waiting(self) -> dict[str, int]:
        """Each tenant with a job waiting or running, and that job's priority."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT lock, max(priority) FROM procrastinate_jobs "
                    "WHERE task_name = :task AND status IN ('todo', 'doing') GROUP BY lock"
                ),
                {"task": SYNC_TASK},
            )
            return {str(lock): int(priority) for lock, priority in rows}

    # -- job runs --------------------------------------------------------------------

    def runs(self, tenant_id: str, *, limit: int = 50) -> list[JobRun]:
        """The tenant's job runs, newest first."""
        return self.store.job_run_log().job_runs(tenant_id, limit=limit)

    def latest_run(self, tenant_id: str) -> JobRun | None:
        """The tenant's newest job run (``None`` before its first job)."""
        found = self.store.job_run_log().job_runs(tenant_id, limit=1)
        return found[0] if found else None

    def latest_runs(self) -> dict[str, JobRun]:
        """Every tenant's newest job run, by tenant."""
        return self.store.job_run_log().latest_job_runs()

    # -- removing --------------------------------------------------------------------

    def remove(self, tenant_id: str, *, purge: bool = False) -> None:
        """Remove the tenant and its waiting jobs; ``purge``: every row of its data too.

        A job of it running now finds the tenant gone at its next start; pause
        the tenant and wait for ``idle`` first to be sure nothing writes after
        a purge.
        """
        self.registry.remove(tenant_id, purge=purge)
        with self.store.engine.begin() as conn:
            conn.execute(
                text(
                    "DELETE FROM procrastinate_jobs "
                    "WHERE (lock = :tenant OR queueing_lock = :tenant) AND status <> 'doing'"
                ),
                {"tenant": tenant_id},
            )


def job_app(config: FleetConfig) -> App:
    """A procrastinate app on the store's database for deferring (synchronous) calls."""
    return App(
        connector=SyncPsycopgConnector(conninfo=libpq_url(config.store), min_size=1, max_size=4)
    )


@contextmanager
def open_fleet(config: FleetConfig, *, store: Store | None = None) -> Iterator[Fleet]:
    """The fleet of ``config``, open; closed again on exit.

    Opens (and migrates) the store unless one is handed in, applies
    procrastinate's schema when it is missing, and unlocks the tenants:
    :class:`~tolken.errors.ConfigError` when ``fleet.secret_key`` is not theirs,
    :class:`~tolken.errors.Unreachable` when PostgreSQL cannot be reached.
    """
    with ExitStack() as opened:
        if store is None:
            store = opened.enter_context(open_store(config.store))
        ensure_job_schema(store)
        registry = store.tenant_registry(config.fleet.secret_key)
        app = job_app(config)
        app.open()
        opened.callback(app.close)
        yield Fleet(config, store, registry, app)
