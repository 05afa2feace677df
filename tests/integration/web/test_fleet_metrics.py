"""Fleet /metrics: per-tenant series by a tenant label, the queue, job runs, budget use; no key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.fleet_web_harness import AUTH, fleet_config, secrets_of, tenant
from tolken.connectors.pms import sign_webhook
from tolken.sandbox import credentials
from tolken.web.fleet_serve import FleetServing, fleet_serving

pytestmark = pytest.mark.postgres

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def running(postgres_url: str) -> Iterator[FleetServing]:
    with fleet_serving(fleet_config(postgres_url)) as served:
        served.fleet.registry.add(tenant("alpha"))
        served.fleet.registry.add(tenant("beta"))
        yield served


def _scrape(running: FleetServing) -> tuple[str, Samples]:
    answer = httpx.get(f"{running.url}/metrics", headers=AUTH)
    assert answer.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return answer.text, samples


def _job(
    running: FleetServing, tenant_id: str, *, poweroffice_requests: int, throttled: int = 0
) -> None:
    log = running.fleet.store.job_run_log()
    run = log.start_job_run(tenant_id, reason="scheduled", kind="cycle", worker="test-worker")
    log.finish_job_run(
        run, outcome="ok", poweroffice_requests=poweroffice_requests, throttled=throttled
    )


def test_metrics_carry_the_tenant_label(running: FleetServing) -> None:
    """Links, failures, statuses and job counts are per tenant; the two tenants stay apart."""
    store = running.fleet.store
    store.for_tenant("alpha").create_link("customers", "1", "cus_a")
    store.for_tenant("alpha").create_link("customers", "2", "cus_b")
    store.for_tenant("beta").create_link("customers", "3", "cus_c")
    running.fleet.registry.pause("beta")
    _job(running, "alpha", poweroffice_requests=4)
    run = store.for_tenant("alpha").start_run()
    store.for_tenant("alpha").finish_run(run, "ok", counts={"customers": {}}, requests={})
    store.for_tenant("beta").record_failure(
        "customers", "pms", "cus_x", "ValidationFailed", "no", retry_base_seconds=60
    )
    _, samples = _scrape(running)
    assert ("tolken_sync_lag_seconds", frozenset({"tenant": "alpha"}.items())) in samples
    assert ("tolken_sync_lag_seconds", frozenset({"tenant": "beta"}.items())) not in samples
    beta_customers = frozenset({"tenant": "beta", "flow": "customers"}.items())
    assert samples[("tolken_failures", beta_customers)] == 1
    assert ("tolken_oldest_failure_age_seconds", beta_customers) in samples
    active = {"flow": "customers", "state": "active"}
    assert samples[("tolken_links", frozenset({**active, "tenant": "alpha"}.items()))] == 2
    assert samples[("tolken_links", frozenset({**active, "tenant": "beta"}.items()))] == 1
    assert (
        samples[("tolken_tenant_status", frozenset({"tenant": "beta", "status": "paused"}.items()))]
        == 1
    )
    assert samples[("tolken_tenants", frozenset({"status": "paused"}.items()))] == 1
    assert (
        samples[("tolken_jobs_total", frozenset({"tenant": "alpha", "outcome": "ok"}.items()))] == 1
    )
    assert (
        "tolken_jobs_total",
        frozenset({"tenant": "beta", "outcome": "ok"}.items()),
    ) not in samples


def test_queue_depth_and_budget_use_per_subscription_key_digest(running: FleetServing) -> None:
    """Jobs waiting, PowerOffice requests and 429s by a digest of the key; counted once each."""
    running.fleet.queue_sync("alpha", "scheduled")
    running.fleet.queue_sync("beta", "webhook")
    _job(running, "alpha", poweroffice_requests=7, throttled=1)
    digest = "sha256:" + hashlib.sha256(credentials.SUBSCRIPTION_KEY.encode()).hexdigest()[:12]
    key = frozenset({"subscription_key": digest}.items())
    _, samples = _scrape(running)
    assert samples[("tolken_queue_depth", frozenset())] == 2
    assert samples[("tolken_poweroffice_requests_total", key)] == 7
    assert samples[("tolken_poweroffice_throttled_total", key)] == 1
    _job(running, "beta", poweroffice_requests=3)
    _, samples = _scrape(running)  # a second scrape adds only the new job
    assert samples[("tolken_poweroffice_requests_total", key)] == 10
    assert samples[("tolken_job_duration_seconds_count", frozenset({"kind": "cycle"}.items()))] == 2


def test_webhooks_are_counted_per_tenant(running: FleetServing) -> None:
    """An accepted delivery for alpha and a refused one for beta, each under its tenant."""
    body = json.dumps({"seq": 1, "type": "customer", "id": "cus_1", "op": "upsert"}).encode()
    secret = tenant("alpha").webhook_secret
    assert secret is not None
    headers = sign_webhook(secret.get_secret_value(), body)
    httpx.post(f"{running.url}/webhooks/pms/alpha", content=body, headers=headers)
    httpx.post(f"{running.url}/webhooks/pms/beta", content=body, headers=headers)
    _, samples = _scrape(running)
    accepted = frozenset({"tenant": "alpha", "outcome": "accepted"}.items())
    rejected = frozenset({"tenant": "beta", "outcome": "rejected"}.items())
    assert samples[("tolken_webhooks_total", accepted)] == 1
    assert samples[("tolken_webhooks_total", rejected)] == 1


def test_metrics_never_show_a_key(running: FleetServing) -> None:
    """No subscription, application, client or PMS key nor webhook secret appears in /metrics."""
    _job(running, "alpha", poweroffice_requests=1)
    text, _ = _scrape(running)
    assert "subscription_key=" in text
    for secret in secrets_of("alpha", "beta"):
        assert secret not in text
