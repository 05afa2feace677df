"""/metrics: Prometheus text with tolken_ names, request counting hooks, gauges from the store."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from integration.web_harness import AUTH, Clock, make_config, seed
from tolken.store import open_store
from tolken.web import Metrics, create_app


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_expose_store_gauges_lag_and_run_durations(tmp_path: Path) -> None:
    """Links, failures, parked conflicts, lag per flow and the run histogram, all tolken_*."""
    clock = Clock()
    config = make_config(tmp_path)
    with open_store(config.store, clock=clock) as db:
        store = db.for_tenant(config.tenant)
        seed(store, clock)
        client = TestClient(create_app(config, store))
        answer = client.get("/metrics", headers=AUTH)
    assert answer.headers["content-type"].startswith("text/plain")
    samples = _samples(answer.text)
    assert all(name.startswith("tolken_") for name, _ in samples)
    assert samples[("tolken_links", (("flow", "customers"), ("state", "active")))] == 2
    assert samples[("tolken_failures", (("flow", "customers"),))] == 1
    assert samples[("tolken_conflicts", (("flow", "customers"),))] == 1
    assert samples[("tolken_sync_lag_seconds", (("flow", "customers"),))] == 90
    assert ("tolken_sync_lag_seconds", (("flow", "projects"),)) not in samples  # never ran
    assert samples[("tolken_run_duration_seconds_count", ())] == 1
    assert samples[("tolken_run_duration_seconds_sum", ())] == 2
    assert samples[("tolken_runs_total", (("status", "ok"),))] == 1
    assert (
        samples[("tolken_sync_records_total", (("flow", "customers"), ("outcome", "created")))] == 2
    )
    assert samples[("tolken_store_up", ())] == 1
    # The parked record was first seen at the start, 90 s before the scrape.
    assert samples[("tolken_oldest_failure_age_seconds", (("flow", "customers"),))] == 90


def test_a_run_is_observed_once_however_often_it_is_scraped(tmp_path: Path) -> None:
    """Scraping twice does not count the same run twice; a new run is added."""
    clock = Clock()
    config = make_config(tmp_path)
    with open_store(config.store, clock=clock) as db:
        store = db.for_tenant(config.tenant)
        seed(store, clock)
        client = TestClient(create_app(config, store))
        client.get("/metrics", headers=AUTH)
        run = store.start_run()
        clock.now += timedelta(seconds=5)
        store.finish_run(run, "failed", counts={}, requests={}, error="pms: unreachable")
        samples = _samples(client.get("/metrics", headers=AUTH).text)
    assert samples[("tolken_run_duration_seconds_count", ())] == 2
    assert samples[("tolken_runs_total", (("status", "failed"),))] == 1


def test_connectors_count_requests_by_system_and_status() -> None:
    """The response hook and the counting transport count statuses, 429s and transport errors."""
    metrics = Metrics()
    statuses = iter([200, 200, 429, 500])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(next(statuses))

    with httpx.Client(
        transport=metrics.transport("poweroffice", httpx.MockTransport(answer))
    ) as client:
        for _ in range(3):
            client.get("http://po.test/v2/Customers")
        with contextlib.suppress(httpx.ConnectError):
            client.get("http://po.test/down")
    hooked = httpx.Client(
        transport=httpx.MockTransport(answer),
        event_hooks={"response": [metrics.response_hook("pms")]},
    )
    with hooked:
        hooked.get("http://pms.test/api/v1/customers")
    samples = _samples(metrics.render().decode())
    assert samples[("tolken_requests_total", (("status", "200"), ("system", "poweroffice")))] == 2
    assert samples[("tolken_requests_total", (("status", "429"), ("system", "poweroffice")))] == 1
    assert samples[("tolken_requests_total", (("status", "error"), ("system", "poweroffice")))] == 1
    assert samples[("tolken_requests_total", (("status", "500"), ("system", "pms")))] == 1
    assert samples[("tolken_throttled_requests_total", (("system", "poweroffice"),))] == 1


def test_each_app_has_its_own_registry() -> None:
    """Counts in one Metrics never show in another (no global registry)."""
    first, second = Metrics(), Metrics()
    first.count_response("pms", 200)
    assert b'tolken_requests_total{status="200",system="pms"}' in first.render()
    assert b"tolken_requests_total{" not in second.render()


def test_an_unreachable_store_reports_store_down(tmp_path: Path) -> None:
    """With the store gone, /metrics still answers, with tolken_store_up 0."""
    config = make_config(tmp_path)
    broken = open_store(f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}", migrate=False)
    samples = _samples(
        TestClient(create_app(config, broken.for_tenant(config.tenant)))
        .get("/metrics", headers=AUTH)
        .text
    )
    assert samples[("tolken_store_up", ())] == 0
