"""Fleet mode: many tenants synced by worker processes on procrastinate, one PowerOffice budget.

The sync of one tenant is single mode's engine, built per job by the
composition root from the tenant's settings in the store. This package adds
what a fleet needs around it: :func:`open_fleet` (the tenants, the job queue
on the store's PostgreSQL and the job runs), :func:`run_worker` (a
``tolken worker`` process: the jobs, the periodic dispatcher and the recovery
of jobs whose worker died), and onboarding and checking tenants.
"""

from tolken.fleet._fleet import JOB_QUEUE, PRIORITIES, SYNC_TASK, Fleet, open_fleet
from tolken.fleet._jobs import retry_delay
from tolken.fleet._onboarding import (
    ConsentUrl,
    TenantCheck,
    check_tenant,
    finalize_onboarding,
    initiate_onboarding,
    tenant_id_for,
)
from tolken.fleet._worker import run_worker
from tolken.store import JobReason

__all__ = [
    "JOB_QUEUE",
    "PRIORITIES",
    "SYNC_TASK",
    "ConsentUrl",
    "Fleet",
    "JobReason",
    "TenantCheck",
    "check_tenant",
    "finalize_onboarding",
    "initiate_onboarding",
    "open_fleet",
    "retry_delay",
    "run_worker",
    "tenant_id_for",
]
