"""Onboarding through the fleet's serve against the sandbox: start, consent, callback, tenants."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from integration.fleet_web_harness import AUTH, fleet_config
from integration.sync_harness import running_sandbox
from tolken.web.fleet_serve import FleetServing, fleet_serving

pytestmark = pytest.mark.postgres

PMS_KEY = "sandbox-pms-key-nordlys"


@pytest.fixture(scope="module")
def po_url() -> Iterator[str]:
    with running_sandbox() as (po, _pms):
        yield po


@pytest.fixture
def running(postgres_url: str, po_url: str) -> Iterator[FleetServing]:
    with fleet_serving(fleet_config(postgres_url, po_url)) as served:
        yield served


def _start(running: FleetServing, **body: str) -> str:
    answer = httpx.post(f"{running.url}/api/onboarding/start", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.text
    url: str = answer.json()["consent_url"]
    return url


def _consent(po_url: str, consent_url: str, *clients: tuple[str, str]) -> str:
    """The person's consent in PowerOffice: the redirect their browser follows."""
    answer = httpx.post(
        f"{po_url}/_sandbox/onboarding/consent",
        json={
            "temporary_url": consent_url,
            "clients": [{"name": n, "organization_number": o} for n, o in clients],
        },
    )
    assert answer.status_code == 200, answer.text
    redirect: str = answer.json()["redirect"]
    return redirect


def test_onboarding_end_to_end_creates_the_tenant(running: FleetServing, po_url: str) -> None:
    """Initiate, consent in PowerOffice, its redirect to the callback: the tenant exists, due."""
    consent_url = _start(running, pms_api_key=PMS_KEY)
    redirect = _consent(po_url, consent_url, ("Nordlys Bygg AS", "923456780"))
    assert redirect.startswith(f"{running.url}/onboarding/callback?state=")
    page = httpx.get(redirect)  # the browser: no dashboard token, no cookie
    assert page.status_code == 200, page.text
    assert "nordlys-bygg-as" in page.text
    added = running.fleet.registry.get("nordlys-bygg-as")
    assert added.settings.poweroffice_client_key.get_secret_value().startswith(
        "sandbox-client-key-"
    )
    assert added.settings.pms_api_key.get_secret_value() == PMS_KEY
    assert added.settings.webhook_secret is not None
    assert not added.paused
    assert running.fleet.registry.due()[0].id == "nordlys-bygg-as"
    assert PMS_KEY not in redirect
    assert PMS_KEY not in page.text


def test_a_replayed_callback_is_refused(running: FleetServing, po_url: str) -> None:
    """The same callback a second time is refused and adds nothing."""
    redirect = _consent(po_url, _start(running, pms_api_key=PMS_KEY), ("Fjellvann AS", "934567891"))
    assert httpx.get(redirect).status_code == 200
    again = httpx.get(redirect)
    assert again.status_code == 409
    assert [t.id for t in running.fleet.registry.all()] == ["fjellvann-as"]


def test_a_callback_with_a_forged_or_missing_state_is_refused(
    running: FleetServing, po_url: str
) -> None:
    """A state this dashboard did not make (or none) adds no tenant, even with a real token."""
    redirect = _consent(po_url, _start(running, pms_api_key=PMS_KEY), ("Havblikk AS", "945678912"))
    parts = urlsplit(redirect)
    query = dict(parse_qsl(parts.query))
    forged = {**query, "state": query["state"][:-4] + "AAAA"}
    assert httpx.get(f"{running.url}/onboarding/callback?{urlencode(forged)}").status_code == 400
    no_state = {k: v for k, v in query.items() if k != "state"}
    assert httpx.get(f"{running.url}/onboarding/callback?{urlencode(no_state)}").status_code == 400
    assert running.fleet.registry.all() == []
    assert httpx.get(redirect).status_code == 200  # the genuine one still works


def test_several_clients_in_one_consent_are_added_paused(
    running: FleetServing, po_url: str
) -> None:
    """Two clients under one PMS key would share a PMS account: both are added paused."""
    consent_url = _start(running, pms_api_key=PMS_KEY)
    redirect = _consent(po_url, consent_url, ("Alfa AS", "911111111"), ("Beta AS", "922222222"))
    page = httpx.get(redirect)
    assert page.status_code == 200
    assert "paused" in page.text
    assert [(t.id, t.paused) for t in running.fleet.registry.all()] == [
        ("alfa-as", True),
        ("beta-as", True),
    ]


def test_starting_an_onboarding_needs_the_token(running: FleetServing) -> None:
    """Without the dashboard token nobody can start an onboarding (so mint a state)."""
    answer = httpx.post(f"{running.url}/api/onboarding/start", json={"pms_api_key": PMS_KEY})
    assert answer.status_code == 401


def test_the_start_form_sends_the_browser_to_poweroffice(running: FleetServing) -> None:
    """The tenants page's form (with its CSRF token) redirects to PowerOffice's consent URL."""
    with httpx.Client(base_url=running.url, timeout=10) as browser:
        token = AUTH["Authorization"].removeprefix("Bearer ")
        page = browser.get("/", params={"token": token}, follow_redirects=True)
        csrf = page.text.split('name="csrftoken" value="', 1)[1].split('"', 1)[0]
        answer = browser.post(
            "/onboarding/start",
            data={"csrftoken": csrf, "pms_api_key": PMS_KEY},
            headers={"Sec-Fetch-Site": "same-origin"},
        )
    assert answer.status_code == 303
    assert "/_sandbox/onboarding?token=" in answer.headers["location"]
