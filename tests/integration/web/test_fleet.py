"""Fleet-mode serve over loopback HTTP and PostgreSQL: tenants page, actions, per-tenant pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from integration.fleet_web_harness import AUTH, fleet_config, jobs, secrets_of, tenant
from integration.web_harness import MESSAGE
from tolken.web.fleet_serve import FleetServing, fleet_serving

pytestmark = pytest.mark.postgres


@pytest.fixture
def running(postgres_url: str) -> Iterator[FleetServing]:
    """`tolken serve` of a fleet with tenants alpha and beta, listening on loopback."""
    with fleet_serving(fleet_config(postgres_url)) as served:
        served.fleet.registry.add(tenant("alpha"))
        served.fleet.registry.add(tenant("beta", pms_base_url="http://pms.beta.test/api/v1"))
        yield served


@pytest.fixture
def http(running: FleetServing) -> Iterator[httpx.Client]:
    """A client of the dashboard with the token (Bearer: no CSRF token needed)."""
    with httpx.Client(base_url=running.url, headers=AUTH, timeout=10) as client:
        yield client


def test_tenants_page_lists_every_tenant_with_its_state(
    running: FleetServing, http: httpx.Client
) -> None:
    """Every tenant shows with state, runs, links, open failures and last error; no secret."""
    registry, store = running.fleet.registry, running.fleet.store
    beta = store.for_tenant("beta")
    beta.create_link("customers", "10001", "cus_b1")
    beta.record_failure(
        "customers", "pms", "cus_b2", "ValidationFailed", MESSAGE, status=422, retry_base_seconds=60
    )
    later = store.now() + timedelta(minutes=5)
    registry.record_failure("beta", "PowerOffice refused our privileges", next_run_at=later)
    data = http.get("/api/tenants").json()
    rows = {row["id"]: row for row in data["tenants"]}
    assert list(rows) == ["alpha", "beta"]
    assert rows["alpha"]["state"] == "idle"
    assert (rows["beta"]["state"], rows["beta"]["links"], rows["beta"]["open_failures"]) == (
        "error",
        1,
        1,
    )
    assert rows["beta"]["last_error"] == "PowerOffice refused our privileges"
    assert rows["beta"]["last_run_at"] is not None
    assert rows["beta"]["next_run_at"] == later.isoformat()
    page = http.get("/")
    assert page.status_code == 200
    for text in ("alpha", "beta", "error", "PowerOffice refused our privileges", "/tenants/beta/"):
        assert text in page.text
    for secret in secrets_of("alpha", "beta"):
        assert secret not in page.text
        assert secret not in http.get("/api/tenants").text


def test_the_tenants_page_needs_the_token(running: FleetServing) -> None:
    """Without the dashboard token the tenants page, its twin and the actions are refused."""
    assert httpx.get(f"{running.url}/api/tenants").status_code == 401
    assert httpx.get(f"{running.url}/").status_code == 401
    assert httpx.post(f"{running.url}/api/tenants/alpha/pause").status_code == 401
    assert not running.fleet.registry.get("alpha").paused


def test_pause_resume_and_resync_change_state_and_queue_jobs(
    running: FleetServing, http: httpx.Client
) -> None:
    """Pause stops the tenant; resume queues its job; resync queues a reconcile."""
    fleet = running.fleet
    assert http.post("/api/tenants/alpha/pause").status_code == 200
    assert fleet.registry.get("alpha").status == "paused"
    assert http.get("/api/tenants/alpha").json()["state"] == "paused"
    assert http.post("/api/tenants/alpha/resync").status_code == 409  # paused: resume first
    assert jobs(fleet, "alpha") == []

    resumed = http.post("/api/tenants/alpha/resume")
    assert (resumed.status_code, resumed.json()["queued"]) == (202, True)
    assert fleet.registry.get("alpha").status == "queued"
    [job] = jobs(fleet, "alpha")
    assert (job["status"], job["args"]["reconcile"]) == ("todo", False)

    # The waiting job takes the reconcile asked for (one job per tenant waits).
    assert http.post("/api/tenants/alpha/resync").json()["queued"] is False
    [job] = jobs(fleet, "alpha")
    assert job["args"]["reconcile"] is True
    assert http.post("/api/tenants/beta/resync").json()["queued"] is True
    [beta_job] = jobs(fleet, "beta")
    assert beta_job["args"]["reconcile"] is True
    assert http.post("/api/tenants/nobody/pause").status_code == 404


def test_the_pause_form_needs_the_pages_csrf_token(running: FleetServing) -> None:
    """A signed-in browser's form post without the page's CSRF token changes nothing."""
    with httpx.Client(base_url=running.url, timeout=10) as browser:
        browser.get("/", params={"token": AUTH["Authorization"].removeprefix("Bearer ")})
        refused = browser.post("/tenants/alpha/pause", headers={"Sec-Fetch-Site": "same-origin"})
        assert refused.status_code == 403
        assert not running.fleet.registry.get("alpha").paused


def test_each_tenants_pages_show_only_its_own_data(
    running: FleetServing, http: httpx.Client
) -> None:
    """/tenants/{id}/... and their JSON twins read that tenant's rows and no other's."""
    store = running.fleet.store
    alpha_link = store.for_tenant("alpha").create_link("customers", "20001", "cus_alpha_only")
    store.for_tenant("beta").create_link("customers", "30001", "cus_beta_only")
    store.for_tenant("beta").record_failure(
        "customers", "pms", "cus_beta_bad", "ValidationFailed", MESSAGE, retry_base_seconds=60
    )
    alpha_links = http.get("/api/tenants/alpha/links").json()["links"]
    beta_links = http.get("/api/tenants/beta/links").json()["links"]
    assert [link["pms_id"] for link in alpha_links] == ["cus_alpha_only"]
    assert [link["pms_id"] for link in beta_links] == ["cus_beta_only"]
    assert http.get("/api/tenants/alpha/failures").json() == []
    assert len(http.get("/api/tenants/beta/failures").json()) == 1
    page = http.get("/tenants/beta/links")
    assert "cus_beta_only" in page.text
    assert "cus_alpha_only" not in page.text
    assert 'href="/tenants/beta/links/' in page.text  # links stay inside the tenant
    assert http.get(f"/tenants/beta/links/{alpha_link.id}").status_code == 404
    assert http.get(f"/api/tenants/alpha/links/{alpha_link.id}").status_code == 200
    overview = http.get("/api/tenants/beta/status").json()
    assert (overview["tenant"], overview["totals"]["links"]) == ("beta", 1)
    assert "tenant beta" in http.get("/tenants/beta/").text
    assert http.get("/tenants/nobody/links").status_code == 404


def test_a_retry_on_a_tenants_page_queues_that_tenants_job(
    running: FleetServing, http: httpx.Client
) -> None:
    """Retrying a parked record of beta marks it due and queues beta's job, not alpha's."""
    failure = running.fleet.store.for_tenant("beta").record_failure(
        "customers", "pms", "cus_b9", "ValidationFailed", MESSAGE, retry_base_seconds=3600
    )
    answer = http.post(f"/api/tenants/beta/failures/{failure.id}/retry")
    assert answer.status_code == 202
    assert len(jobs(running.fleet, "beta")) == 1
    assert jobs(running.fleet, "alpha") == []


def test_health_answers_without_the_token(running: FleetServing) -> None:
    """/healthz is open and says the store (and its job queue) answer."""
    answer = httpx.get(f"{running.url}/healthz")
    assert (answer.status_code, answer.json()["store"]) == (200, "ok")


def test_operations_names_every_fleet_route(running: FleetServing) -> None:
    """Each page, JSON twin, action, webhook and onboarding route of fleet serve is documented."""
    operations = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    operations = re.sub(r"\{\w+\}", "{id}", operations)
    named = {m.group(1) for m in re.finditer(r"`(?:POST |GET )?(/[^`?\s]*)[`?]", operations)}
    paths = {
        re.sub(r"\{\w+\}", "{id}", route.path)
        for route in running.app.routes
        if isinstance(route, APIRoute)
    }
    assert {"/", "/api/tenants", "/webhooks/pms/{id}", "/onboarding/callback"} <= paths
    # A tenant's pages are single mode's under /tenants/{id} (test_docs checks those).
    own = {
        p
        for p in paths
        if not re.match(r"^(/api)?/tenants/\{id\}/(failures|conflicts|links|status|$)", p)
    }
    missing = sorted(own - named)
    assert not missing, f"fleet routes docs/operations.md does not name: {missing}"
