"""The fleet's job runs: one row per job a worker ran for a tenant, for the dashboard and metrics.

A worker opens a row when a tenant's job starts (:meth:`JobRunRepository.start_job_run`)
and closes it with the outcome, the duration, the PowerOffice and PMS
requests, the 429 answers and the records changed
(:meth:`JobRunRepository.finish_job_run`). The rows are keyed by tenant like
every other table, so ``tenants remove --purge`` deletes them too::

    log = store.job_run_log()
    run_id = log.start_job_run("acme", reason="webhook", kind="cycle", worker="host-123")
    log.finish_job_run(run_id, outcome="ok", poweroffice_requests=4, pms_requests=3)
    log.latest_job_runs()["acme"].duration_seconds
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import RowMapping, func, insert, select, update

from tolken._redact import shared as shared_redactor
from tolken.store._base import StoreBase
from tolken.store._models import JobRunRow

__all__ = ["JobKind", "JobOutcome", "JobReason", "JobRun", "JobRunLog", "JobRunRepository"]

JobReason = Literal["webhook", "scheduled", "resync", "backfill"]
JobKind = Literal["cycle", "reconcile"]
JobOutcome = Literal["running", "ok", "error", "stopped"]


@dataclass(frozen=True)
class JobRun:
    """One job of one tenant as a worker ran it."""

    id: int
    tenant: str
    job_id: int | None
    reason: JobReason
    kind: JobKind
    worker: str
    started_at: datetime
    finished_at: datetime | None
    outcome: JobOutcome
    duration_seconds: float | None
    poweroffice_requests: int
    pms_requests: int
    throttled: int
    changes: int
    run_id: int | None
    error: str | None


def _job_run(row: RowMapping) -> JobRun:
    return JobRun(**{name: row[name] for name in JobRun.__dataclass_fields__})


class JobRunLog(StoreBase):
    """Record and read the fleet's job runs, every tenant's (the worker writes, dashboards read)."""

    def start_job_run(
        self,
        tenant: str,
        *,
        reason: JobReason,
        kind: JobKind,
        worker: str,
        job_id: int | None = None,
    ) -> int:
        """Open the row of a job that starts now; its id."""
        with self._write() as conn:
            result = conn.execute(
                insert(JobRunRow)
                .values(
                    tenant=tenant,
                    job_id=job_id,
                    reason=reason,
                    kind=kind,
                    worker=worker,
                    started_at=self.now(),
                )
                .returning(JobRunRow.id)
            )
            return int(result.scalar_one())

    def finish_job_run(
        self,
        job_run_id: int,
        *,
        outcome: JobOutcome,
        poweroffice_requests: int = 0,
        pms_requests: int = 0,
        throttled: int = 0,
        changes: int = 0,
        run_id: int | None = None,
        error: str | None = None,
    ) -> None:
        """Close the row: how the job ended, what it sent; ``error`` is redacted."""
        now = self.now()
        with self._write() as conn:
            started = conn.execute(
                select(JobRunRow.started_at).where(JobRunRow.id == job_run_id)
            ).scalar_one()
            conn.execute(
                update(JobRunRow)
                .where(JobRunRow.id == job_run_id)
                .values(
                    finished_at=now,
                    outcome=outcome,
                    duration_seconds=(now - started).total_seconds(),
                    poweroffice_requests=poweroffice_requests,
                    pms_requests=pms_requests,
                    throttled=throttled,
                    changes=changes,
                    run_id=run_id,
                    error=None if error is None else shared_redactor().text(error),
                )
            )

    def job_runs(self, tenant: str | None = None, *, limit: int = 50) -> list[JobRun]:
        """The newest job runs first, of ``tenant`` or of every tenant."""
        query = select(JobRunRow.__table__).order_by(JobRunRow.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(JobRunRow.tenant == tenant)
        with self._read() as conn:
            return [_job_run(row) for row in conn.execute(query).mappings()]

    def latest_job_runs(self) -> dict[str, JobRun]:
        """Each tenant's newest job run, by tenant."""
        newest = select(func.max(JobRunRow.id)).group_by(JobRunRow.tenant).scalar_subquery()
        query = select(JobRunRow.__table__).where(JobRunRow.id.in_(newest))
        with self._read() as conn:
            return {row["tenant"]: _job_run(row) for row in conn.execute(query).mappings()}

    def cycles_since_reconcile(self, tenant: str) -> int:
        """Finished cycles of ``tenant`` since its last finished reconcile (or since its first)."""
        done = (JobRunRow.tenant == tenant, JobRunRow.outcome == "ok")
        with self._read() as conn:
            last = conn.execute(
                select(func.coalesce(func.max(JobRunRow.id), 0)).where(
                    *done, JobRunRow.kind == "reconcile"
                )
            ).scalar_one()
            count = conn.execute(
                select(func.count()).where(*done, JobRunRow.kind == "cycle", JobRunRow.id > last)
            ).scalar_one()
        return int(count)


class JobRunRepository(StoreBase):
    """Gives the store the fleet's job-run log."""

    def job_run_log(self) -> JobRunLog:
        """The job runs of every tenant (cross-tenant, like the tenant registry)."""
        return JobRunLog(self.engine, self._clock)
