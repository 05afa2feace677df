"""PowerOffice simulator: the /_sandbox control surface, casing switch and persistence."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from loopback import serve
from tolken.sandbox.credentials import APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY
from tolken.sandbox.poweroffice import create_app
from tolken.sandbox.poweroffice.seed import org_number_check_digit

KEY = {"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}


def _authorise(client: TestClient | httpx.Client) -> None:
    token = client.post(
        "/OAuth/Token",
        auth=(APPLICATION_KEY, CLIENT_KEY),
        headers=KEY,
        data={"grant_type": "client_credentials"},
    ).json()["access_token"]
    client.headers.update({**KEY, "Authorization": f"Bearer {token}"})


@pytest.fixture
def po() -> Iterator[TestClient]:
    """An authorised in-process client of a fresh simulator (no rate limit)."""
    with TestClient(create_app(rate_limit_per_second=None)) as client:
        _authorise(client)
        yield client


def test_stats_count_by_canonical_template(po: TestClient) -> None:
    """Stats key requests by method and route template with {id}, whatever casing was used."""
    po.post("/_sandbox/reset")
    created = po.post("/v2/customers", json={"Name": "A AS"}).json()
    po.get("/V2/CUSTOMERS")
    po.get("/v2/Customers")
    po.patch(
        f"/v2/customers/{created['Id']}", json=[{"op": "replace", "path": "/Name", "value": "B"}]
    )
    po.get("/_sandbox/stats")
    stats = po.get("/_sandbox/stats").json()
    assert stats == {
        "requests": {
            "POST /v2/Customers": 1,
            "GET /v2/Customers": 2,
            "PATCH /v2/Customers/{id}": 1,
        },
        "statuses": {"201": 1, "200": 3},
    }


def test_reset_empties_state_and_stats(po: TestClient) -> None:
    """Reset removes every record and forgets the counted requests."""
    po.post("/_sandbox/seed", json={"departments": 2, "customers": 3, "projects": 2})
    assert len(po.get("/v2/Customers").json()) == 3
    assert po.post("/_sandbox/reset").status_code == 200
    assert po.get("/_sandbox/stats").json() == {"requests": {}, "statuses": {}}
    for resource in ("Departments", "Customers", "Projects"):
        assert po.get(f"/v2/{resource}").status_code == 204
    assert po.post("/v2/Customers", json={"Name": "Ny AS"}).json()["Number"] == 10000


def test_seed_is_realistic_norwegian_and_deterministic(po: TestClient) -> None:
    """Seeded companies have mod-11 org numbers, +47 phones, postcodes; projects use them."""
    result = po.post("/_sandbox/seed", json={"departments": 4, "customers": 60, "projects": 30})
    assert result.json() == {"departments": 4, "customers": 60, "projects": 30}
    customers = po.get("/v2/Customers").json()
    companies = [c for c in customers if not c["IsPerson"]]
    persons = [c for c in customers if c["IsPerson"]]
    assert companies
    assert persons
    for company in companies:
        org = company["OrganizationNumber"]
        assert re.fullmatch(r"[89]\d{8}", org)
        assert org_number_check_digit(org[:8]) == int(org[8])
        assert company["EmailAddress"].startswith("post@")
    for person in persons:
        assert person["FirstName"]
        assert person["LastName"]
        assert "@" in person["EmailAddress"]
    for customer in customers:
        assert re.fullmatch(r"\+47[49]\d{7}", customer["PhoneNumber"])
        assert re.fullmatch(r"\d{4}", customer["MailAddress"]["ZipCode"])
        assert customer["MailAddress"]["City"]
    customer_ids = {c["Id"] for c in customers}
    department_ids = {d["Id"] for d in po.get("/v2/Departments").json()}
    projects = po.get("/v2/Projects").json()
    assert all(p["CustomerId"] in customer_ids for p in projects)
    assert all(p["DepartmentId"] in department_ids for p in projects)
    po.post("/_sandbox/reset")
    po.post("/_sandbox/seed", json={"departments": 4, "customers": 60, "projects": 30})
    again = po.get("/v2/Customers").json()
    assert [c["OrganizationNumber"] for c in again] == [c["OrganizationNumber"] for c in customers]
    assert [c["Name"] for c in again] == [c["Name"] for c in customers]
    assert [c["MailAddress"]["City"] for c in again] == [
        c["MailAddress"]["City"] for c in customers
    ]
    assert po.post("/_sandbox/seed", json={"customers": -1}).status_code == 400
    assert po.post("/_sandbox/seed", json={"suppliers": 1}).status_code == 400


def test_org_number_check_digit_known_value() -> None:
    """The mod-11 check digit matches a real registered number (Equinor ASA, 923609016)."""
    assert org_number_check_digit("92360901") == 6


def test_injected_faults_and_latency(po: TestClient) -> None:
    """With rate 1 every API call gets an injected status; 429 carries Retry-After; {} heals."""
    assert po.post("/_sandbox/faults", json={"rate": 1, "statuses": [429]}).status_code == 200
    throttled = po.get("/v2/Customers")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    po.post("/_sandbox/faults", json={"rate": 1, "statuses": [503, 500], "seed": 7})
    assert {po.get("/v2/Customers").status_code for _ in range(12)} == {500, 503}
    assert po.get("/_sandbox/stats").json()["requests"]["GET /v2/Customers"] == 13
    po.post("/_sandbox/faults", json={"latency_ms": 150})
    start = time.monotonic()
    assert po.get("/v2/Customers").status_code == 204
    assert time.monotonic() - start >= 0.15
    po.post("/_sandbox/faults", json={})
    assert po.get("/_sandbox/faults").json()["rate"] == 0
    assert po.post("/_sandbox/faults", json={"rate": 2}).status_code == 400
    assert po.post("/_sandbox/faults", json={"bogus": 1}).status_code == 400


def test_dropped_requests_time_out_over_loopback() -> None:
    """With drop_rate 1 the server never answers: the client's read times out."""
    with serve(create_app(rate_limit_per_second=None)) as url, httpx.Client(base_url=url) as client:
        _authorise(client)
        client.post("/_sandbox/faults", json={"drop_rate": 1, "drop_hang_seconds": 5})
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v2/Customers", timeout=0.3)
        client.post("/_sandbox/faults", json={})
        assert client.get("/v2/Customers").status_code == 204


def test_camel_case_switch(po: TestClient) -> None:
    """camelCase on: nested MailAddress is camelCase everywhere, GET-by-id bodies throughout."""
    created = po.post(
        "/v2/Customers", json={"Name": "A AS", "MailAddress": {"City": "Oslo", "ZipCode": "0150"}}
    ).json()
    assert "City" in created["MailAddress"]
    settings = po.post("/_sandbox/settings", json={"camel_case": True}).json()
    assert settings["camel_case"] is True
    listed = po.get("/v2/Customers").json()[0]
    assert "Name" in listed
    assert listed["MailAddress"]["city"] == "Oslo"
    by_id = po.get(f"/v2/Customers/{created['Id']}").json()
    assert by_id["name"] == "A AS"
    assert by_id["mailAddress"]["zipCode"] == "0150"
    assert po.post("/_sandbox/settings", json={"camel_case": "yes"}).status_code == 400
    po.post("/_sandbox/settings", json={"camel_case": False})
    assert "Name" in po.get(f"/v2/Customers/{created['Id']}").json()


def test_state_survives_restart(tmp_path: Path) -> None:
    """With a data directory the records, sequences and clock carry over to a new app."""
    first: dict[str, Any]
    with TestClient(create_app(tmp_path, rate_limit_per_second=None)) as client:
        _authorise(client)
        first = client.post("/v2/Customers", json={"Name": "Varig AS"}).json()
        moved = client.patch(
            f"/v2/Customers/{first['Id']}",
            json=[{"op": "add", "path": "/MailAddress/City", "value": "Oslo"}],
        )
        moved = client.patch(
            f"/v2/Customers/{first['Id']}",
            json=[{"op": "add", "path": "/MailAddress/ZipCode", "value": "0150"}],
        )
        assert moved.status_code == 200, moved.text
        first = moved.json()
        address_stamp = first["MailAddress"]["LastChangedDateTimeOffset"]
    assert (tmp_path / "poweroffice.sqlite3").exists()
    with (
        serve(create_app(tmp_path, rate_limit_per_second=None)) as url,
        httpx.Client(base_url=url) as client,
    ):
        _authorise(client)
        assert client.get(f"/v2/Customers/{first['Id']}").json() == first
        second = client.post("/v2/Customers", json={"Name": "Neste AS"}).json()
        assert second["Number"] == first["Number"] + 1
        assert second["Id"] > first["Id"]
        assert second["LastChangedDateTimeOffset"] > address_stamp


@pytest.mark.slow
def test_hundred_thousand_customers_seed_and_list_fast(po: TestClient) -> None:
    """100,000 seeded customers are stored and listed in pages of 20000 within seconds."""
    start = time.monotonic()
    po.post("/_sandbox/seed", json={"customers": 100_000})
    seeded = time.monotonic() - start
    start = time.monotonic()
    total, page = 0, 1
    while True:
        response = po.get("/v2/Customers", params={"PageSize": 20000, "PageNumber": page})
        if response.status_code == 204:
            break
        total += len(json.loads(response.content))
        page += 1
    listed = time.monotonic() - start
    assert total == 100_000
    assert seeded < 20, seeded
    assert listed < 20, listed
