"""PowerOffice simulator: several client keys, each its own client (DESIGN §7 "Several clients")."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tolken.sandbox.credentials import APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY
from tolken.sandbox.poweroffice import create_app

KEY = {"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}
GRANT = {"grant_type": "client_credentials"}
ALPHA = f"{CLIENT_KEY}-alpha"
BETA = f"{CLIENT_KEY}-beta"


def _headers(http: TestClient, client_key: str) -> dict[str, str]:
    response = http.post(
        "/OAuth/Token", auth=(APPLICATION_KEY, client_key), headers=KEY, data=GRANT
    )
    assert response.status_code == 200, response.text
    return {**KEY, "Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def http() -> Iterator[TestClient]:
    """An in-process client of a fresh simulator without rate limit."""
    with TestClient(create_app(rate_limit_per_second=None)) as client:
        yield client


def test_two_clients_see_only_their_own_records(http: TestClient) -> None:
    """Lists, gets, patches and deletes with one client's token never reach another's data."""
    alpha, beta = _headers(http, ALPHA), _headers(http, BETA)
    assert http.post("/_sandbox/seed", json={"client": ALPHA, "customers": 3}).status_code == 200
    mine = http.get("/v2/Customers", headers=alpha).json()
    assert len(mine) == 3
    assert http.get("/v2/Customers", headers=beta).status_code == 204
    assert http.get("/v2/Customers", headers=_headers(http, CLIENT_KEY)).status_code == 204
    theirs = mine[0]["Id"]
    assert http.get(f"/v2/Customers/{theirs}", headers=beta).status_code == 404
    rename = [{"op": "replace", "path": "/Name", "value": "Kapret AS"}]
    assert http.patch(f"/v2/Customers/{theirs}", json=rename, headers=beta).status_code == 404
    assert http.delete(f"/v2/Customers/{theirs}", headers=beta).status_code == 404
    assert http.get(f"/v2/Customers/{theirs}", headers=alpha).json()["Name"] == mine[0]["Name"]
    own = http.post("/v2/Departments", json={"Name": "Salg", "Code": "10"}, headers=beta).json()
    assert http.get("/v2/Departments", headers=alpha).status_code == 204
    assert [d["Id"] for d in http.get("/v2/Departments", headers=beta).json()] == [own["Id"]]


def test_numbers_and_external_references_are_per_client(http: TestClient) -> None:
    """Each client numbers customers from 10000 and has its own ExternalImportReference space."""
    alpha, beta = _headers(http, ALPHA), _headers(http, BETA)
    body = {"Name": "Fjord AS", "ExternalImportReference": "pms:cus_1"}
    first = http.post("/v2/Customers", json=body, headers=alpha)
    assert first.status_code == 201
    assert http.post("/v2/Customers", json=body, headers=alpha).status_code == 400
    second = http.post("/v2/Customers", json=body, headers=beta)
    assert second.status_code == 201
    assert first.json()["Number"] == second.json()["Number"] == 10000
    assert first.json()["Id"] != second.json()["Id"]
    found = http.get(
        "/v2/Customers", params={"externalImportReference": "pms:cus_1"}, headers=beta
    ).json()
    assert [c["Id"] for c in found] == [second.json()["Id"]]
    assert http.post("/v2/Departments", json={"Name": "A", "Code": "1"}, headers=alpha).is_success
    assert http.post("/v2/Departments", json={"Name": "B", "Code": "1"}, headers=beta).is_success


def test_rate_limit_is_shared_by_the_clients_of_one_subscription(http: TestClient) -> None:
    """Client B gets 429 once client A has spent the subscription key's budget."""
    alpha, beta = _headers(http, ALPHA), _headers(http, BETA)
    http.post("/_sandbox/reset")
    assert http.post("/_sandbox/settings", json={"rate_limit_per_second": 3}).status_code == 200
    for _ in range(3):
        assert http.get("/v2/Customers", headers=alpha).status_code == 204
    throttled = http.get("/v2/Customers", headers=beta)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    assert http.get("/_sandbox/stats", params={"client": BETA}).json() == {
        "requests": {"GET /v2/Customers": 1},
        "statuses": {"429": 1},
    }
    assert http.get("/_sandbox/stats", params={"client": ALPHA}).json() == {
        "requests": {"GET /v2/Customers": 3},
        "statuses": {"204": 3},
    }
    assert http.get("/_sandbox/stats").json()["statuses"] == {"204": 3, "429": 1}


def test_stats_attribute_token_requests_to_their_client(http: TestClient) -> None:
    """A token request counts for the client key in its Basic header."""
    _headers(http, ALPHA)
    stats = http.get("/_sandbox/stats", params={"client": ALPHA}).json()
    assert stats == {"requests": {"POST /OAuth/Token": 1}, "statuses": {"200": 1}}
    assert http.get("/_sandbox/stats", params={"client": BETA}).json() == {
        "requests": {},
        "statuses": {},
    }


def test_seed_and_reset_per_client(http: TestClient) -> None:
    """Seed and reset with a client key touch that client only; reset without one empties all."""
    alpha, beta = _headers(http, ALPHA), _headers(http, BETA)
    seeded = http.post("/_sandbox/seed", json={"client": BETA, "departments": 2, "customers": 4})
    assert seeded.json() == {"departments": 2, "customers": 4, "projects": 0}
    http.post("/_sandbox/seed", json={"client": ALPHA, "customers": 1})
    http.post("/_sandbox/seed", json={"customers": 5})
    assert len(http.get("/v2/Customers", headers=beta).json()) == 4
    assert len(http.get("/v2/Customers", headers=_headers(http, CLIENT_KEY)).json()) == 5
    assert http.post("/_sandbox/reset", json={"client": BETA}).status_code == 200
    assert http.get("/v2/Customers", headers=beta).status_code == 204
    assert len(http.get("/v2/Customers", headers=alpha).json()) == 1
    assert http.get("/_sandbox/stats", params={"client": BETA}).json()["requests"] == {
        "GET /v2/Customers": 1
    }
    assert http.post("/_sandbox/reset").status_code == 200
    assert http.get("/v2/Customers", headers=alpha).status_code == 204
    assert http.get("/v2/Customers", headers=_headers(http, CLIENT_KEY)).status_code == 204
    bad = http.post("/_sandbox/seed", json={"client": "someone-else", "customers": 1})
    assert bad.status_code == 400


def test_unknown_keys_are_still_refused(http: TestClient) -> None:
    """Keys outside sandbox-client-key[-name] get invalid_client; a bad token is a 401."""
    for key in ("sandbox-client-keyX", f"{CLIENT_KEY}-", "client-key", ""):
        response = http.post("/OAuth/Token", auth=(APPLICATION_KEY, key), headers=KEY, data=GRANT)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_client")
    wrong_app = http.post("/OAuth/Token", auth=("other-app", ALPHA), headers=KEY, data=GRANT)
    assert wrong_app.status_code == 400
    forged = {**KEY, "Authorization": f"Bearer {ALPHA}"}
    assert http.get("/v2/Customers", headers=forged).status_code == 401


def test_state_files_keep_each_client_and_the_old_default(tmp_path: Path) -> None:
    """After a restart every client has its data back; a pre-fleet state file still opens."""
    with TestClient(create_app(tmp_path, rate_limit_per_second=None)) as http:
        made = http.post(
            "/v2/Customers", json={"Name": "Gammel AS"}, headers=_headers(http, CLIENT_KEY)
        )
        http.post("/v2/Customers", json={"Name": "Ny AS"}, headers=_headers(http, ALPHA))
    with sqlite3.connect(tmp_path / "poweroffice.sqlite3") as conn:
        conn.execute(
            "DROP TABLE sandbox_clients"
        )  # what a file of the single-client simulator lacks
    with TestClient(create_app(tmp_path, rate_limit_per_second=None)) as http:
        default = http.get("/v2/Customers", headers=_headers(http, CLIENT_KEY)).json()
        assert [(c["Id"], c["Name"]) for c in default] == [(made.json()["Id"], "Gammel AS")]
        assert [
            c["Name"] for c in http.get("/v2/Customers", headers=_headers(http, ALPHA)).json()
        ] == ["Ny AS"]
