"""Prometheus metrics of fleet-mode ``/metrics``: per-tenant series carry a ``tenant`` label.

Counted in the serve process as they happen:

- ``tolken_webhooks_total{tenant,outcome}``: PMS deliveries ``accepted`` or ``rejected``.

Fed, at each scrape, with the job runs the workers finished since this
process started (the newest :data:`_JOB_WINDOW` job runs are read; older
ones were counted at an earlier scrape):

- ``tolken_jobs_total{tenant,outcome}``: finished sync jobs (ok, error, stopped);
- ``tolken_job_duration_seconds{kind}`` (histogram; ``cycle`` or ``reconcile``);
- ``tolken_tenant_last_job_duration_seconds{tenant}``;
- ``tolken_poweroffice_requests_total{subscription_key}`` and
  ``tolken_poweroffice_throttled_total{subscription_key}``: the budget used and
  the 429s, labelled ``sha256:<first 12 hex digits>`` of the subscription key,
  never the key (every tenant of a fleet shares the config's one key).

Read from the store at each scrape (the workers write it, so serve needs no
worker in-process):

- ``tolken_store_up``: 1 when the store answered;
- ``tolken_queue_depth``: sync jobs waiting in the queue;
- ``tolken_tenants{status}``: tenants by status (idle, queued, syncing, error, paused);
- ``tolken_tenant_status{tenant,status}``: 1 for the tenant's current status;
- ``tolken_tenant_failures_in_a_row{tenant}``: failed jobs since the last success;
- ``tolken_sync_lag_seconds{tenant}``: since the start of the tenant's newest
  successful cycle (a cycle runs every enabled flow);
- ``tolken_links{tenant,flow,state}``, ``tolken_failures{tenant,flow}``,
  ``tolken_conflicts{tenant,flow}``, ``tolken_oldest_failure_age_seconds{tenant,flow}``:
  single mode's flow gauges, read for the whole fleet in a few queries.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tolken.errors import TolkenError
from tolken.fleet import Fleet
from tolken.store import FlowCounts
from tolken.web.metrics import CONTENT_TYPE, FlowGauges
from tolken.web.status import FLOWS

__all__ = ["FleetMetrics", "key_digest"]

_STATUSES = ("idle", "queued", "syncing", "error", "paused")
# Job runs read per scrape: far more than a fleet of thousands starts between two scrapes.
_JOB_WINDOW = 2000
_JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def key_digest(key: str) -> str:
    """A label naming a key without revealing it: ``sha256:`` and 12 hex digits."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


class FleetMetrics:
    """The fleet's registry: webhook counters plus gauges read from the store at each scrape."""

    content_type = CONTENT_TYPE

    def __init__(self, fleet: Fleet) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._fleet = fleet
        self._key = key_digest(fleet.config.poweroffice.subscription_key.get_secret_value())
        self.webhooks = Counter(
            "tolken_webhooks",
            "PMS webhook deliveries received, by tenant and outcome (accepted, rejected).",
            ["tenant", "outcome"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "tolken_jobs",
            "Finished sync jobs, by tenant and outcome (ok, error, stopped).",
            ["tenant", "outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "tolken_job_duration_seconds",
            "Duration of finished sync jobs, by kind (cycle, reconcile).",
            ["kind"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.last_duration = Gauge(
            "tolken_tenant_last_job_duration_seconds",
            "Duration of the tenant's newest finished sync job.",
            ["tenant"],
            registry=self.registry,
        )
        self.requests = Counter(
            "tolken_poweroffice_requests",
            "PowerOffice requests of finished sync jobs, by subscription key (a digest).",
            ["subscription_key"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "tolken_poweroffice_throttled",
            "PowerOffice 429 answers in finished sync jobs, by subscription key (a digest).",
            ["subscription_key"],
            registry=self.registry,
        )
        self.requests.labels(subscription_key=self._key)
        self.throttled.labels(subscription_key=self._key)
        self._lock = threading.Lock()
        self._seen: set[int] = set()
        self.registry.register(_FleetCollector(fleet))

    def observe_jobs(self) -> None:
        """Feed the job runs finished since the last scrape into the job counters."""
        try:
            runs = self._fleet.store.job_run_log().job_runs(limit=_JOB_WINDOW)
        except TolkenError:
            return  # the store gauge says the store is down
        with self._lock:
            for run in reversed(runs):
                if run.finished_at is None or run.id in self._seen:
                    continue
                self._seen.add(run.id)
                self.jobs.labels(tenant=run.tenant, outcome=run.outcome).inc()
                if run.duration_seconds is not None:
                    self.job_duration.labels(kind=run.kind).observe(run.duration_seconds)
                    self.last_duration.labels(tenant=run.tenant).set(run.duration_seconds)
                self.requests.labels(subscription_key=self._key).inc(run.poweroffice_requests)
                self.throttled.labels(subscription_key=self._key).inc(run.throttled)
            # Ids older than the window are never read again: forget them.
            self._seen &= {run.id for run in runs}

    def render(self) -> bytes:
        """The exposition text for a scrape."""
        self.observe_jobs()
        return generate_latest(self.registry)


class _FleetCollector(Collector):
    """Gauges read from the store (and the job queue) at scrape time."""

    def __init__(self, fleet: Fleet) -> None:
        self._store = fleet.store
        self._fleet = fleet

    def describe(self) -> list[Metric]:
        return []  # collected lazily: describing would query the store at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tolken_store_up", "1 when the store answered this scrape.")
        try:
            tenants = self._fleet.registry.all()
            depth = self._fleet.queue_depth()
        except TolkenError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queue = GaugeMetricFamily("tolken_queue_depth", "Sync jobs waiting in the queue.")
        queue.add_metric([], depth)
        yield queue
        by_status = GaugeMetricFamily("tolken_tenants", "Tenants by status.", labels=["status"])
        status = GaugeMetricFamily(
            "tolken_tenant_status",
            "1 for the tenant's current status.",
            labels=["tenant", "status"],
        )
        in_a_row = GaugeMetricFamily(
            "tolken_tenant_failures_in_a_row",
            "Failed sync jobs of the tenant since its last success.",
            labels=["tenant"],
        )
        for name in _STATUSES:
            by_status.add_metric([name], sum(t.status == name for t in tenants))
        for tenant in tenants:
            status.add_metric([tenant.id, tenant.status], 1)
            in_a_row.add_metric([tenant.id], tenant.failures_in_a_row)
        yield from (by_status, status, in_a_row)
        yield from self._flows([t.id for t in tenants])

    def _flows(self, tenant_ids: list[str]) -> Iterator[Metric]:
        """Single mode's flow gauges with a tenant label, from three cross-tenant queries."""
        gauges = FlowGauges.make(
            ["tenant"], lag_labels=["tenant"], lag_help="the tenant's newest successful sync cycle"
        )
        now = self._store.now()
        view = self._store.fleet_view()
        counts = view.flow_counts_by_tenant()
        successes = view.last_successes_by_tenant()
        for (tenant_id, flow), first_seen in view.oldest_failures_by_tenant().items():
            age = max((now - first_seen).total_seconds(), 0.0)
            gauges.oldest.add_metric([tenant_id, flow], age)
        for tenant_id in tenant_ids:
            if tenant_id in successes:
                lag = max((now - successes[tenant_id]).total_seconds(), 0.0)
                gauges.lag.add_metric([tenant_id], lag)
            tenant_counts = counts.get(tenant_id, {})
            for flow in FLOWS:
                c = tenant_counts.get(flow, FlowCounts())
                gauges.add_flow([tenant_id], flow, c.links, c.open_failures, c.parked_conflicts)
        yield from gauges.families()
