"""PowerOffice simulator: token endpoint, API gateway checks, path casing and throttling."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from loopback import serve
from tolken.sandbox.credentials import APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY
from tolken.sandbox.poweroffice import create_app

KEY = {"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}
GRANT = {"grant_type": "client_credentials"}


@pytest.fixture
def po() -> Iterator[TestClient]:
    """An in-process client of a fresh simulator without rate limit."""
    with TestClient(create_app(rate_limit_per_second=None)) as client:
        yield client


def _token(client: TestClient | httpx.Client, path: str = "/OAuth/Token") -> str:
    response = client.post(path, auth=(APPLICATION_KEY, CLIENT_KEY), headers=KEY, data=GRANT)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_token_as_oauth_libraries_send_it(po: TestClient) -> None:
    """Basic auth plus a form with empty client_id/client_secret gets a 20-minute bearer token."""
    response = po.post(
        "/oauth/token",
        auth=(APPLICATION_KEY, CLIENT_KEY),
        headers=KEY,
        data={"grant_type": "client_credentials", "client_id": "", "client_secret": ""},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("bearer", 1200)
    posted = po.post(
        "/OAuth/Token",
        headers=KEY,
        data={**GRANT, "client_id": APPLICATION_KEY, "client_secret": CLIENT_KEY},
    )
    assert posted.status_code == 200


def test_token_errors_are_rfc6749(po: TestClient) -> None:
    """Wrong keys, wrong grant, missing grant and a JSON body give RFC 6749 error objects."""
    wrong = po.post("/OAuth/Token", auth=(APPLICATION_KEY, "nope"), headers=KEY, data=GRANT)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_client")
    assert "Client integration not found" in wrong.json()["error_description"]
    grant = po.post(
        "/OAuth/Token",
        auth=(APPLICATION_KEY, CLIENT_KEY),
        headers=KEY,
        data={"grant_type": "password"},
    )
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    missing = po.post("/OAuth/Token", auth=(APPLICATION_KEY, CLIENT_KEY), headers=KEY, data={})
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    as_json = po.post("/OAuth/Token", auth=(APPLICATION_KEY, CLIENT_KEY), headers=KEY, json=GRANT)
    assert as_json.json()["error"] == "invalid_request"
    garbage = po.post("/OAuth/Token", headers={**KEY, "Authorization": "Basic !!!"}, data=GRANT)
    assert garbage.status_code == 400
    no_key = po.post("/OAuth/Token", auth=(APPLICATION_KEY, CLIENT_KEY), data=GRANT)
    assert no_key.status_code == 401
    assert no_key.json()["statusCode"] == 401


def test_api_needs_subscription_key_and_token(po: TestClient) -> None:
    """Without key or token the gateway answers 401 {statusCode, message}; with both, 204."""
    token = _token(po)
    bearer = {"Authorization": f"Bearer {token}"}
    no_key = po.get("/v2/Customers", headers=bearer)
    assert no_key.status_code == 401
    assert no_key.json()["message"].startswith("Access denied due to missing subscription key")
    bad_key = po.get("/v2/Customers", headers={**bearer, "Ocp-Apim-Subscription-Key": "x"})
    assert "invalid subscription key" in bad_key.json()["message"]
    assert po.get("/v2/Customers", headers=KEY).status_code == 401
    bogus = po.get("/v2/Customers", headers={**KEY, "Authorization": "Bearer nonsense"})
    assert (bogus.status_code, bogus.json()["statusCode"]) == (401, 401)
    assert po.get("/v2/Customers", headers={**KEY, **bearer}).status_code == 204
    assert (
        po.get(f"/v2/Customers?subscription-key={SUBSCRIPTION_KEY}", headers=bearer).status_code
        == 204
    )


def test_path_casing_and_demo_environment(po: TestClient) -> None:
    """Any casing of /Demo/v2/Customers works; a demo token does not open production."""
    demo_token = _token(po, "/demo/OAUTH/token")
    demo = {**KEY, "Authorization": f"Bearer {demo_token}"}
    created = po.post("/DEMO/V2/CUSTOMERS", headers=demo, json={"Name": "Demo AS"})
    assert created.status_code == 201
    assert po.get(f"/demo/v2/customers/{created.json()['Id']}/", headers=demo).status_code == 200
    assert po.get("/v2/Customers", headers=demo).status_code == 401
    prod = {**KEY, "Authorization": f"Bearer {_token(po)}"}
    assert po.get("/V2/customers", headers=prod).status_code == 200


def test_token_expires() -> None:
    """A token is refused once its lifetime has passed."""
    with TestClient(create_app(rate_limit_per_second=None, token_ttl_seconds=1)) as client:
        token = _token(client)
        headers = {**KEY, "Authorization": f"Bearer {token}"}
        assert client.get("/v2/Departments", headers=headers).status_code == 204
        time.sleep(1.1)
        assert client.get("/v2/Departments", headers=headers).status_code == 401


def test_rate_limit_over_loopback() -> None:
    """Above 10 requests/second per key the gateway answers 429 with Retry-After; then recovers."""
    with serve(create_app()) as url, httpx.Client(base_url=url) as client:
        headers = {**KEY, "Authorization": f"Bearer {_token(client)}"}
        statuses = [client.get("/v2/Customers", headers=headers) for _ in range(25)]
        throttled = [r for r in statuses if r.status_code == 429]
        assert throttled, [r.status_code for r in statuses]
        assert sum(r.status_code == 204 for r in statuses) >= 9
        first = throttled[0]
        assert first.headers["Retry-After"] == "1"
        assert first.json() == {
            "statusCode": 429,
            "message": "Rate limit is exceeded. Try again in 1 seconds.",
        }
        time.sleep(1.0)
        assert client.get("/v2/Customers", headers=headers).status_code == 204
        switched = client.post("/_sandbox/settings", json={"rate_limit_per_second": None})
        assert switched.json()["rate_limit_per_second"] is None
        assert all(
            client.get("/v2/Customers", headers=headers).status_code == 204 for _ in range(30)
        )


def test_paced_client_is_never_throttled() -> None:
    """A client that keeps to 10 requests/second gets no 429."""
    with TestClient(create_app(rate_limit_per_second=10)) as client:
        headers = {**KEY, "Authorization": f"Bearer {_token(client)}"}
        time.sleep(0.15)  # the token call used one request of the budget
        start = time.monotonic()
        for i in range(15):
            time.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
            assert client.get("/v2/Departments", headers=headers).status_code == 204


def test_basic_header_is_base64_of_both_keys(po: TestClient) -> None:
    """The Basic credentials are base64(application key:client key), nothing else."""
    swapped = base64.b64encode(f"{CLIENT_KEY}:{APPLICATION_KEY}".encode()).decode()
    response = po.post(
        "/OAuth/Token", headers={**KEY, "Authorization": f"Basic {swapped}"}, data=GRANT
    )
    assert response.json()["error"] == "invalid_client"


def test_unknown_routes_are_gateway_404(po: TestClient) -> None:
    """Paths and methods the API does not have get API Management's 404 body."""
    headers = {**KEY, "Authorization": f"Bearer {_token(po)}"}
    for response in (po.get("/v2/Employees", headers=headers), po.put("/v2/Customers/1")):
        assert response.status_code == 404
        assert response.json() == {"statusCode": 404, "message": "Resource not found"}
