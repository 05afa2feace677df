"""Fleet mode: many tenants synced by worker processes on procrastinate, one PowerOffice budget.

The sync of one tenant is single mode's engine, built per job by the
composition root from the tenant's settings in the store. This package adds
what a fleet needs around it: :func:`open_fleet` (the tenants, the job queue
on the store's PostgreSQL and the job runs) and :func:`run_worker` (a
``tolken worker`` process: the jobs, the periodic dispatcher and the recovery
of jobs whose worker died).
"""

from tolken.fleet._fleet import JOB_QUEUE, PRIORITIES, SYNC_TASK, Fleet, JobReason, open_fleet

__all__ = ["JOB_QUEUE", "PRIORITIES", "SYNC_TASK", "Fleet", "JobReason", "open_fleet"]
