"""Prometheus metrics for ``/metrics``: one :class:`Metrics` (and registry) per app.

Counted as they happen (through the hooks below):

- ``tolken_requests_total{system,status}``: HTTP responses per remote system
  (``poweroffice``, ``pms``) and status code (``error`` when no response came);
- ``tolken_throttled_requests_total{system}``: the 429s among them;
- ``tolken_webhooks_total{outcome}``: PMS deliveries ``accepted`` or ``rejected``.

Read from the store at each scrape, so they hold whichever process ran the sync:

- ``tolken_sync_lag_seconds{flow}``: time since the start of the flow's last
  successful cycle;
- ``tolken_oldest_failure_age_seconds{flow}``: how long the oldest parked record
  has waited (the change that is pending longest);
- ``tolken_links{flow,state}``, ``tolken_failures{flow}`` (open),
  ``tolken_conflicts{flow}`` (parked for a person);
- ``tolken_run_duration_seconds`` (histogram), ``tolken_runs_total{status}`` and
  ``tolken_sync_records_total{flow,outcome}`` (created, linked, updated,
  conflicts, failed), fed with every finished run not seen before;
- ``tolken_store_up``: 1 when the store answered.

Connectors count their requests by attaching a hook to their ``httpx.Client``::

    client = httpx.Client(event_hooks={"response": [metrics.response_hook("pms")]})

or, where only a transport can be handed in (``open_engine(transports=...)``),
with ``metrics.transport("pms")``, which wraps the default transport.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tolken.errors import TolkenError
from tolken.store import TenantStore
from tolken.web.status import FLOWS, flow_statuses

__all__ = ["CONTENT_TYPE", "LINK_STATES", "FlowGauges", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Cycles take from tens of milliseconds (idle) to minutes (a first run over 100,000 records).
_OUTCOMES = ("created", "linked", "updated", "conflicts", "failed")
_RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


LINK_STATES = ("active", "source-deleted", "pms-deleted")


@dataclass(frozen=True)
class FlowGauges:
    """The per-flow gauges of ``/metrics`` (lag, links, failures, conflicts, oldest failure),
    labelled ``labels`` first (fleet mode: ``tenant``) and then as single mode labels them."""

    lag: GaugeMetricFamily
    links: GaugeMetricFamily
    failures: GaugeMetricFamily
    conflicts: GaugeMetricFamily
    oldest: GaugeMetricFamily

    @classmethod
    def make(cls, labels: list[str], *, lag_labels: list[str], lag_help: str) -> FlowGauges:
        """Empty gauges; the lag is labelled ``lag_labels`` (single mode: per flow, fleet
        mode: per tenant) and ``lag_help`` names what it counts from."""
        return cls(
            lag=GaugeMetricFamily(
                "tolken_sync_lag_seconds",
                f"Seconds since the start of {lag_help}.",
                labels=lag_labels,
            ),
            links=GaugeMetricFamily(
                "tolken_links", "Links by flow and state.", labels=[*labels, "flow", "state"]
            ),
            failures=GaugeMetricFamily(
                "tolken_failures",
                "Parked records waiting for a retry or a fix.",
                labels=[*labels, "flow"],
            ),
            conflicts=GaugeMetricFamily(
                "tolken_conflicts",
                "Conflicts parked for a person (manual policy).",
                labels=[*labels, "flow"],
            ),
            oldest=GaugeMetricFamily(
                "tolken_oldest_failure_age_seconds",
                "Seconds since the flow's oldest open failure was first seen (absent when none).",
                labels=[*labels, "flow"],
            ),
        )

    def add_flow(
        self,
        label_values: list[str],
        flow: str,
        links: Mapping[str, int],
        failures: int,
        conflicts: int,
    ) -> None:
        """One flow's link counts by state, open failures and parked conflicts."""
        for state in LINK_STATES:
            self.links.add_metric([*label_values, flow, state], links.get(state, 0))
        self.failures.add_metric([*label_values, flow], failures)
        self.conflicts.add_metric([*label_values, flow], conflicts)

    def families(self) -> tuple[Metric, ...]:
        """The gauges, in the order they are exposed."""
        return (self.lag, self.links, self.failures, self.conflicts, self.oldest)


class Metrics:
    """A dedicated registry with tolken's metrics; nothing is global, so apps never share counts."""

    def __init__(self, store: TenantStore | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tolken_requests",
            "HTTP responses from the remote systems, by system and status code.",
            ["system", "status"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "tolken_throttled_requests",
            "HTTP 429 (rate limited) responses from the remote systems.",
            ["system"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "tolken_webhooks",
            "PMS webhook deliveries received, by outcome (accepted, rejected).",
            ["outcome"],
            registry=self.registry,
        )
        self.runs = Counter(
            "tolken_runs",
            "Finished sync cycles, by status (ok, failed, stopped).",
            ["status"],
            registry=self.registry,
        )
        self.records = Counter(
            "tolken_sync_records",
            "Records handled by finished sync cycles, by flow and outcome "
            "(created, linked, updated, conflicts, failed).",
            ["flow", "outcome"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "tolken_run_duration_seconds",
            "Duration of finished sync cycles.",
            buckets=_RUN_BUCKETS,
            registry=self.registry,
        )
        self._store = store
        self._lock = threading.Lock()
        self._seen_runs: set[int] = set()
        if store is not None:
            self.registry.register(_StoreCollector(store))

    # -- counting requests ------------------------------------------------------

    def count_response(self, system: str, status: int | str) -> None:
        """Count one response (or ``"error"`` for a request that got none)."""
        self.requests.labels(system=system, status=str(status)).inc()
        if status == 429:
            self.throttled.labels(system=system).inc()

    def response_hook(self, system: str) -> Callable[[httpx.Response], None]:
        """An httpx ``response`` event hook counting under ``system``."""

        def hook(response: httpx.Response) -> None:
            self.count_response(system, response.status_code)

        return hook

    def transport(
        self, system: str, inner: httpx.BaseTransport | None = None
    ) -> httpx.BaseTransport:
        """A transport that counts every response of ``inner`` (default: a plain HTTP one)."""
        return _CountingTransport(self, system, inner or httpx.HTTPTransport())

    # -- runs -------------------------------------------------------------------

    def observe_runs(self) -> None:
        """Feed finished runs not seen before into the run counters and histogram."""
        if self._store is None:
            return
        try:
            runs = self._store.last_runs(limit=100)
        except TolkenError:
            return  # the store gauge says the store is down
        with self._lock:
            for run in reversed(runs):
                if run.finished_at is None or run.id in self._seen_runs:
                    continue
                self._seen_runs.add(run.id)
                self.runs.labels(status=run.status).inc()
                self.run_duration.observe((run.finished_at - run.started_at).total_seconds())
                for flow, counts in run.counts.items():
                    for outcome in _OUTCOMES:
                        if counts.get(outcome):
                            self.records.labels(flow=flow, outcome=outcome).inc(counts[outcome])

    def render(self) -> bytes:
        """The exposition text for a scrape."""
        self.observe_runs()
        return generate_latest(self.registry)


class _CountingTransport(httpx.BaseTransport):
    def __init__(self, metrics: Metrics, system: str, inner: httpx.BaseTransport) -> None:
        self._metrics = metrics
        self._system = system
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError:
            self._metrics.count_response(self._system, "error")
            raise
        self._metrics.count_response(self._system, response.status_code)
        return response

    def close(self) -> None:
        self._inner.close()


class _StoreCollector(Collector):
    """Gauges read from the store at scrape time."""

    def __init__(self, store: TenantStore) -> None:
        self._store = store

    def describe(self) -> list[Metric]:
        return []  # collected lazily: describing would query the store at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tolken_store_up", "1 when the store answered this scrape.")
        try:
            statuses = flow_statuses(self._store, self._store.now(), FLOWS)
        except TolkenError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gauges = FlowGauges.make(
            [], lag_labels=["flow"], lag_help="the flow's last successful sync cycle"
        )
        now = self._store.now()
        for status in statuses:
            if status.lag_seconds is not None:
                gauges.lag.add_metric([status.flow], status.lag_seconds)
            if status.oldest_failure_at is not None:
                age = (now - status.oldest_failure_at).total_seconds()
                gauges.oldest.add_metric([status.flow], max(age, 0.0))
            gauges.add_flow([], status.flow, status.links, status.failures, status.conflicts)
        yield from gauges.families()
