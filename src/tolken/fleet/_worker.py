"""``tolken worker``: one process running tenants' jobs, the dispatcher and stalled-job recovery.

A procrastinate worker on the store's database with ``fleet.concurrency``
job slots. Its jobs are synchronous (the engine), so each runs in a thread of
a pool sized to the slots. Besides the tenants' jobs it runs two periodic
tasks, deduplicated across every worker by procrastinate (one run per tick,
whichever worker gets it):

* the **dispatcher** (every :data:`DISPATCH_EVERY_SECONDS`), which queues the
  tenants whose next run has come (:class:`~tolken.fleet._jobs.Dispatcher`);
* the **recovery** (every :data:`RECOVER_EVERY_SECONDS`), which puts back in
  the queue the jobs of workers that stopped sending heartbeats for
  ``fleet.stalled_after_seconds`` (a SIGKILL, a lost machine):
  procrastinate 3's ``get_stalled_jobs`` and ``retry_job``. The engine's
  per-record commits make running a tenant's job again safe.

SIGTERM or SIGINT sets the stop every running engine watches (the record in
flight is finished and committed, the cycle ends) and stops the worker, which
waits for its jobs and exits 0; a second signal ends it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import structlog
from procrastinate import App, JobContext, PsycopgConnector

from tolken.config import FleetConfig
from tolken.connectors.ratelimit import libpq_url, postgres_limiter
from tolken.fleet._fleet import JOB_QUEUE, SYNC_TASK, Fleet, open_fleet
from tolken.fleet._jobs import Dispatcher, TenantJob
from tolken.store import JobReason

__all__ = ["DISPATCH_EVERY_SECONDS", "RECOVER_EVERY_SECONDS", "run_worker"]

DISPATCH_EVERY_SECONDS = 2
RECOVER_EVERY_SECONDS = 5

DISPATCH_TASK = "tolken.dispatch"
RECOVER_TASK = "tolken.recover_stalled"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_HOUSEKEEPING_PRIORITY = 100  # before any tenant's job: they are short and keep the fleet going

_log = structlog.get_logger("tolken.fleet")


def worker_name() -> str:
    """This process as logs and ``job_runs`` name it: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _job_app(fleet: Fleet, job: TenantJob, concurrency: int) -> App:
    """The worker's procrastinate app with its three tasks."""
    config = fleet.config
    app = App(
        connector=PsycopgConnector(
            conninfo=libpq_url(config.store), min_size=1, max_size=concurrency + 4
        )
    )
    dispatcher = Dispatcher(fleet)
    stalled_after = config.fleet.stalled_after_seconds

    @app.task(name=SYNC_TASK, queue=JOB_QUEUE, pass_context=True)
    def sync_tenant(
        context: JobContext, tenant_id: str, reason: JobReason, reconcile: bool = False
    ) -> None:
        job.run(tenant_id, reason, reconcile=reconcile, job_id=context.job.id)

    @app.periodic(cron=f"* * * * * */{DISPATCH_EVERY_SECONDS}")
    @app.task(
        name=DISPATCH_TASK,
        queue=JOB_QUEUE,
        queueing_lock=DISPATCH_TASK,
        priority=_HOUSEKEEPING_PRIORITY,
    )
    def dispatch(timestamp: int) -> None:  # noqa: ARG001 - procrastinate passes the tick
        dispatcher.dispatch()

    @app.periodic(cron=f"* * * * * */{RECOVER_EVERY_SECONDS}")
    @app.task(
        name=RECOVER_TASK,
        queue=JOB_QUEUE,
        queueing_lock=RECOVER_TASK,
        priority=_HOUSEKEEPING_PRIORITY,
        pass_context=True,
    )
    async def recover_stalled(context: JobContext, timestamp: int) -> None:  # noqa: ARG001
        manager = context.app.job_manager
        for stalled in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
            await manager.retry_job(stalled)
            _log.warning(
                "job of a dead worker queued again",
                tenant=stalled.lock,
                job_id=stalled.id,
                task=stalled.task_name,
            )

    return app


async def _work(app: App, concurrency: int, stop: threading.Event, stalled_after: float) -> None:
    # procrastinate's cron takes seconds as a sixth column: "* * * * * */2" is every 2 s.
    loop = asyncio.get_running_loop()
    # Synchronous jobs run in the loop's default executor: one thread per slot, and spare.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency + 2))
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[JOB_QUEUE],
                name=worker_name(),
                concurrency=concurrency,
                install_signal_handlers=False,
                delete_jobs="successful",
                update_heartbeat_interval=stalled_after / 3,
                stalled_worker_timeout=stalled_after,
            )
        )

        def on_signal(signum: signal.Signals) -> None:
            if stop.is_set():  # the second: final, as tolken._signals does it
                for sig in _SIGNALS:
                    loop.remove_signal_handler(sig)
                signal.raise_signal(signum)
                return
            _log.info("stop requested: finishing the records in flight", signal=signum.name)
            stop.set()
            worker.cancel()

        # The loop's own handlers: they wake it at once, whichever thread the signal hit.
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await worker
        except asyncio.CancelledError:
            if not stop.is_set():
                raise


def run_worker(config: FleetConfig, *, concurrency: int | None = None) -> int:
    """Run one worker until SIGTERM/SIGINT; 0 when it stopped as asked."""
    slots = concurrency or config.fleet.concurrency
    stop = threading.Event()
    # One line per HTTP request, partly from read-ahead threads without the tenant: too chatty.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    with open_fleet(config) as fleet:
        limiter = postgres_limiter(
            config.store,
            config.poweroffice.subscription_key.get_secret_value(),
            config.poweroffice.requests_per_second,
            stop=stop,
            max_connections=max(4, slots),
            reserve=config.poweroffice.requests_per_second * config.fleet.webhook_reserve,
        )
        try:
            job = TenantJob(fleet, limiter.budget, stop, worker_name())
            app = _job_app(fleet, job, slots)
            _log.info("worker started", worker=worker_name(), concurrency=slots)
            asyncio.run(_work(app, slots, stop, config.fleet.stalled_after_seconds))
        finally:
            limiter.close()
    _log.info("worker stopped", worker=worker_name())
    return 0
