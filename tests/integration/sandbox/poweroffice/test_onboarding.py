"""PowerOffice simulator: onboarding new clients and ClientIntegrationInformation, over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from loopback import serve
from tolken.sandbox.credentials import APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY
from tolken.sandbox.poweroffice import create_app

KEY = {"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}
REDIRECT = "https://tolken.example/onboarding/callback?tenant_batch=7"


@pytest.fixture
def po() -> Iterator[httpx.Client]:
    """A fresh simulator on loopback (no rate limit) and a client with the subscription key."""
    with (
        serve(create_app(rate_limit_per_second=None)) as url,
        httpx.Client(base_url=url, headers=KEY, timeout=10) as client,
    ):
        yield client


def _initiate(po: httpx.Client, **extra: Any) -> dict[str, Any]:
    body = {"ApplicationKey": APPLICATION_KEY, "RedirectUri": REDIRECT, **extra}
    response = po.post("/v2/Onboarding/Initiate", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _token(po: httpx.Client, client_key: str) -> dict[str, str]:
    response = po.post(
        "/OAuth/Token",
        auth=(APPLICATION_KEY, client_key),
        data={"grant_type": "client_credentials"},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_onboarding_end_to_end_gives_new_empty_clients(po: httpx.Client) -> None:
    """Initiate, consent for two clients, finalize: each new key gets a token and empty data."""
    po.post("/_sandbox/seed", json={"customers": 2})
    started = _initiate(po)
    assert set(started) == {"TemporaryUrl", "ValidUntilDateTimeOffset"}
    pending = po.get(started["TemporaryUrl"])
    assert pending.status_code == 200
    assert pending.json()["redirect_uri"] == REDIRECT
    clients = [
        {"name": "Fjordbygg AS", "organization_number": "912345678"},
        {"name": "Nordlys Regnskap AS", "organization_number": "998877665"},
    ]
    consent = po.post(
        "/_sandbox/onboarding/consent",
        json={"temporary_url": started["TemporaryUrl"], "clients": clients},
    ).json()
    redirect = urlsplit(consent["redirect"])
    assert consent["redirect"].startswith("https://tolken.example/onboarding/callback?")
    assert parse_qs(redirect.query) == {
        "tenant_batch": ["7"],
        "status": ["Success"],
        "token": [consent["onboarding_token"]],
    }
    finalized = po.post(
        "/v2/Onboarding/Finalize", json={"OnboardingToken": consent["onboarding_token"]}
    )
    assert finalized.status_code == 200
    onboarded = finalized.json()["OnboardedClientsInformation"]
    assert [(c["ClientName"], c["ClientOrganizationNumber"]) for c in onboarded] == [
        ("Fjordbygg AS", "912345678"),
        ("Nordlys Regnskap AS", "998877665"),
    ]
    keys = [c["ClientKey"] for c in onboarded]
    assert len(set(keys)) == 2
    assert all(k.startswith(f"{CLIENT_KEY}-") for k in keys)
    for key, client in zip(keys, clients, strict=True):
        auth = _token(po, key)
        for resource in ("Departments", "Customers", "Projects"):
            assert po.get(f"/v2/{resource}", headers=auth).status_code == 204
        info = po.get("/v2/ClientIntegrationInformation", headers=auth).json()
        assert info["ClientName"] == client["name"]
        assert {"Customer_Full", "Department_Full", "Project_Full"} <= set(info["ValidPrivileges"])
        assert info["InvalidPrivileges"] == []
    again = po.post(
        "/v2/Onboarding/Finalize", json={"OnboardingToken": consent["onboarding_token"]}
    )
    assert again.status_code == 400
    assert again.headers["content-type"].startswith("application/problem+json")


def test_client_organization_number_limits_the_consent(po: httpx.Client) -> None:
    """With ClientOrganizationNo only that client may be consented to, and only once."""
    started = _initiate(po, ClientOrganizationNo="912345678")
    other = {"name": "Annen AS", "organization_number": "998877665"}
    refused = po.post(
        "/_sandbox/onboarding/consent",
        json={"temporary_url": started["TemporaryUrl"], "clients": [other]},
    )
    assert refused.status_code == 400
    right = {"name": "Riktig AS", "organization_number": "912345678"}
    body = {"temporary_url": started["TemporaryUrl"], "clients": [right]}
    assert po.post("/_sandbox/onboarding/consent", json=body).status_code == 200
    assert po.post("/_sandbox/onboarding/consent", json=body).status_code == 400


def test_reset_forgets_pending_onboardings(po: httpx.Client) -> None:
    """After a full /_sandbox/reset an earlier temporary URL no longer takes a consent."""
    started = _initiate(po)
    assert po.post("/_sandbox/reset").status_code == 200
    body = {"temporary_url": started["TemporaryUrl"], "clients": [{"name": "Sen AS"}]}
    assert po.post("/_sandbox/onboarding/consent", json=body).status_code == 400


def test_onboarding_refuses_bad_requests(po: httpx.Client) -> None:
    """Wrong application key, no redirect, unknown token: 400; no subscription key: 401."""
    wrong = po.post(
        "/v2/Onboarding/Initiate", json={"ApplicationKey": "nope", "RedirectUri": REDIRECT}
    )
    assert wrong.status_code == 400
    no_redirect = po.post("/v2/Onboarding/Initiate", json={"ApplicationKey": APPLICATION_KEY})
    assert no_redirect.status_code == 400
    assert po.post("/v2/Onboarding/Finalize", json={"OnboardingToken": "x"}).status_code == 400
    anonymous = httpx.post(
        f"{str(po.base_url).rstrip('/')}/v2/Onboarding/Initiate",
        json={"ApplicationKey": APPLICATION_KEY, "RedirectUri": REDIRECT},
    )
    assert anonymous.status_code == 401
    unknown_url = po.post(
        "/_sandbox/onboarding/consent",
        json={
            "temporary_url": "http://x/_sandbox/onboarding?token=nope",
            "clients": [{"name": "A"}],
        },
    )
    assert unknown_url.status_code == 400


def test_client_integration_information_names_the_tokens_client(po: httpx.Client) -> None:
    """ClientIntegrationInformation answers for the token's client; without a token 401."""
    default = po.get("/v2/ClientIntegrationInformation", headers=_token(po, CLIENT_KEY)).json()
    named = po.get(
        "/v2/clientintegrationinformation", headers=_token(po, f"{CLIENT_KEY}-acme")
    ).json()
    assert default["ClientName"] == "Sandbox client"
    assert named["ClientName"] == "Sandbox client acme"
    assert default["ClientId"] != named["ClientId"]
    assert po.get("/v2/ClientIntegrationInformation").status_code == 401
