"""The dashboard pages and their JSON twins over a real SQLite store (in-process ASGI client)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from integration.web_harness import AUTH, MESSAGE, Clock, make_config, seed
from tolken.store import TenantStore, open_store
from tolken.web import create_app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[TenantStore]:
    """SQLite, then PostgreSQL (when TOLKEN_TEST_POSTGRES_URL is set)."""
    with open_store(store_url, clock=clock) as opened:
        yield opened.for_tenant("default")


@pytest.fixture
def ids(store: TenantStore, clock: Clock) -> dict[str, int]:
    return seed(store, clock)


@pytest.fixture
def woken() -> list[str]:
    return []


@pytest.fixture
def client(tmp_path: Path, store: TenantStore, woken: list[str]) -> TestClient:
    app = create_app(make_config(tmp_path), store, wake=lambda: woken.append("wake"))
    return TestClient(app)


@pytest.mark.usefixtures("ids")  # the seeded store the page shows
def test_overview_shows_each_flow_with_counts_last_run_and_lag(client: TestClient) -> None:
    """The JSON twin has per-flow links, failures, conflicts, the last run and the lag."""
    data = client.get("/api/status", headers=AUTH).json()
    flows = {f["flow"]: f for f in data["flows"]}
    assert list(flows) == ["departments", "customers", "projects"]
    assert flows["customers"]["active_links"] == 2
    assert flows["customers"]["failures"] == 1
    assert flows["customers"]["conflicts"] == 1  # the parked one; the won one is settled
    assert flows["customers"]["last_run_status"] == "ok"
    assert flows["customers"]["lag_seconds"] == 90.0  # since the start of the last ok run
    assert flows["projects"]["lag_seconds"] is None  # never ran
    assert flows["customers"]["oldest_failure_at"] == "2025-03-03T12:00:00+00:00"
    assert flows["departments"]["oldest_failure_at"] is None
    assert data["runs"][0]["requests"] == {"poweroffice": 9, "pms": 7}


@pytest.mark.usefixtures("ids")  # the seeded store the page shows
def test_overview_page_renders_the_same_figures_as_its_twin(client: TestClient) -> None:
    """The HTML overview shows each flow's link count, failures and a lag of 1 min 30 s."""
    html = client.get("/", headers=AUTH).text
    customers = html.split('data-flow="customers"', 1)[1].split("</section>", 1)[0]
    assert re.search(r'class="links-count">2<', customers)
    assert re.search(r'class="failures-count">1<', customers)
    assert "1 min 30 s" in customers
    assert 'data-flow="projects"' in html
    assert "not run yet" in html


def test_failures_show_the_remote_message_verbatim_and_escaped(
    client: TestClient, ids: dict[str, int]
) -> None:
    """The PMS's words appear unchanged in JSON and HTML-escaped (not interpreted) in the page."""
    [failure] = client.get("/api/failures", headers=AUTH).json()
    assert failure["message"] == MESSAGE
    html = client.get("/failures", headers=AUTH).text
    assert "email: must be an e-mail address &lt;&#34;not-an-email&#34;&gt;" in html
    detail = client.get(f"/api/failures/{ids['failure']}", headers=AUTH).json()
    assert detail["status"] == 422
    assert client.get(f"/failures/{ids['failure']}", headers=AUTH).status_code == 200


def test_retry_button_marks_the_failure_due_and_wakes_the_loop(
    client: TestClient, store: TenantStore, ids: dict[str, int], woken: list[str]
) -> None:
    """Pressing retry makes the parked record due now and asks the loop for a cycle."""
    [before] = store.list_failures()
    assert before.next_attempt_at > store.now()
    answer = client.post(f"/failures/{ids['failure']}/retry", headers=AUTH, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/failures")
    [after] = store.list_failures()
    assert after.next_attempt_at <= store.now()
    assert woken == ["wake"]
    missing = client.post("/api/failures/999/retry", headers=AUTH)
    assert missing.status_code == 404
    assert woken == ["wake"]


@pytest.mark.usefixtures("ids")  # the seeded store the page shows
def test_conflicts_list_both_values_the_policy_and_the_winner(client: TestClient) -> None:
    """Each conflict shows both values, the value before, the policy and who won."""
    conflicts = {c["field"]: c for c in client.get("/api/conflicts", headers=AUTH).json()}
    assert conflicts["name"]["poweroffice_value"] == "Acme AS"
    assert conflicts["name"]["pms_value"] == "Acme Holding"
    assert (conflicts["name"]["policy"], conflicts["name"]["winner"]) == ("newest-wins", "pms")
    html = client.get("/conflicts", headers=AUTH).text
    assert '<td class="won">Acme Holding</td>' in html
    assert "PMS won" in html
    assert "Keep PowerOffice" in html  # the parked one offers a choice


def test_a_parked_conflict_is_settled_from_the_dashboard(
    client: TestClient, store: TenantStore, ids: dict[str, int], woken: list[str]
) -> None:
    """Keep PowerOffice on a parked conflict records the choice and wakes the loop."""
    answer = client.post(
        f"/conflicts/{ids['parked']}/resolve",
        data={"winner": "poweroffice"},
        headers=AUTH,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert store.list_conflicts(parked_only=True) == []
    assert woken == ["wake"]


def test_link_page_shows_its_history_newest_first(client: TestClient, ids: dict[str, int]) -> None:
    """A link's page lists the writes made for it, with direction, fields and reason."""
    data = client.get(f"/api/links/{ids['acme']}", headers=AUTH).json()
    assert data["link"]["poweroffice_id"] == "10001"
    assert [h["action"] for h in data["history"]] == ["update", "create"]
    assert {c["field"] for c in data["conflicts"]} == {"name", "phone"}
    html = client.get(f"/links/{ids['acme']}", headers=AUTH).text
    assert "PMS edit" in html
    assert "new PowerOffice record" in html
    assert client.get("/api/links/9999", headers=AUTH).status_code == 404
    assert client.get("/links/9999", headers=AUTH).status_code == 404


@pytest.mark.usefixtures("ids")  # the seeded store the page shows
def test_links_list_filters_by_flow(client: TestClient) -> None:
    """/api/links?flow=customers lists only that flow's links; an unknown flow is a 400."""
    data = client.get("/api/links?flow=customers", headers=AUTH).json()
    assert [link["pms_id"] for link in data["links"]] == ["cus_a", "cus_b"]
    assert client.get("/api/links?flow=invoices", headers=AUTH).status_code == 400


def test_healthz_needs_no_token_and_reports_an_unreachable_store(tmp_path: Path) -> None:
    """/healthz answers 200 without a token, and 503 when the store cannot be opened."""
    config = make_config(tmp_path)
    with open_store(config.store) as good:
        ok = TestClient(create_app(config, good.for_tenant(config.tenant))).get("/healthz")
    assert ok.status_code == 200
    assert ok.json()["status"] == "ok"
    broken = open_store(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}", migrate=False)
    down = TestClient(create_app(config, broken.for_tenant(config.tenant))).get("/healthz")
    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
    page = TestClient(create_app(config, broken.for_tenant(config.tenant))).get("/", headers=AUTH)
    assert page.status_code == 503
