"""Reference PMS sandbox surface: faults, stats, reset, seed, persistence, in-process use."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopback import serve
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app

AUTH = {"Authorization": f"Bearer {PMS_API_KEY}"}


@pytest.fixture
def base_url() -> Iterator[str]:
    with serve(create_app()) as url:
        yield url


def test_injected_429_carries_retry_after_and_the_error_shape(base_url: str) -> None:
    """With faults at rate 1 and status 429, API calls get 429 + Retry-After; control stays up."""
    httpx.post(f"{base_url}/_sandbox/faults", json={"rate": 1.0, "statuses": [429]})
    response = httpx.get(f"{base_url}/api/v1/customers", headers=AUTH)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["errors"][0]["message"] == "rate limit exceeded"
    httpx.post(f"{base_url}/_sandbox/faults", json={})
    assert httpx.get(f"{base_url}/api/v1/customers", headers=AUTH).status_code == 200


def test_stats_count_requests_by_route_template(base_url: str) -> None:
    """GET /_sandbox/stats counts API requests by method and path template with {id}."""
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=AUTH) as api:
        record = api.post("/customers", json={"kind": "company", "name": "A AS"}).json()
        api.get(f"/customers/{record['id']}")
        api.patch(f"/customers/{record['id']}", json={"phone": "1"})
        api.get("/customers")
    assert httpx.get(f"{base_url}/_sandbox/stats").json()["requests"] == {
        "POST /api/v1/customers": 1,
        "GET /api/v1/customers/{id}": 1,
        "PATCH /api/v1/customers/{id}": 1,
        "GET /api/v1/customers": 1,
    }


def test_seed_creates_realistic_norwegian_records(base_url: str) -> None:
    """Seeding makes departments, companies/persons with valid org numbers, and linked projects."""
    result = httpx.post(
        f"{base_url}/_sandbox/seed", json={"customers": 30, "departments": 3, "projects": 20}
    ).json()
    assert result["created"] == {"customers": 30, "departments": 3, "projects": 20}
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=AUTH) as api:
        customers = api.get("/customers", params={"limit": 1000}).json()["items"]
        projects = api.get("/projects", params={"limit": 1000}).json()["items"]
    kinds = {c["kind"] for c in customers}
    assert kinds == {"company", "person", "department"}
    departments = {c["id"] for c in customers if c["kind"] == "department"}
    for company in (c for c in customers if c["kind"] == "company"):
        assert re.fullmatch(r"\d{9}", company["organization_number"])
        assert company["address"]["country"] == "NO"
    for person in (c for c in customers if c["kind"] == "person"):
        assert person["name"] == f"{person['first_name']} {person['last_name']}"
    assert all(p["department_id"] in departments for p in projects)
    assert all(p["start_date"] <= p["end_date"] for p in projects)


def test_seed_rejects_unknown_keys(base_url: str) -> None:
    """An unknown seed key is a 400 from the control surface."""
    assert httpx.post(f"{base_url}/_sandbox/seed", json={"invoices": 3}).status_code == 400


def test_reset_empties_everything(base_url: str) -> None:
    """After /_sandbox/reset the lists, feed and webhooks are empty."""
    httpx.post(f"{base_url}/_sandbox/seed", json={"customers": 3, "projects": 2})
    httpx.post(f"{base_url}/_sandbox/reset").raise_for_status()
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=AUTH) as api:
        assert api.get("/customers").json()["items"] == []
        assert api.get("/projects").json()["items"] == []
        assert api.get("/changes").json()["items"] == []


def test_state_survives_a_restart_with_the_same_data_dir(tmp_path: Path) -> None:
    """Records, versions, idempotency keys and the feed are kept in data_dir/pms.sqlite3."""
    key = {**AUTH, "Idempotency-Key": "k"}
    body = {"kind": "company", "name": "A AS"}
    with serve(create_app(tmp_path)) as url:
        first = httpx.post(f"{url}/api/v1/customers", json=body, headers=key).json()
        httpx.patch(f"{url}/api/v1/customers/{first['id']}", json={"phone": "1"}, headers=AUTH)
    assert (tmp_path / "pms.sqlite3").exists()
    with serve(create_app(tmp_path)) as url:
        again = httpx.get(f"{url}/api/v1/customers/{first['id']}", headers=AUTH).json()
        assert again["version"] == 2
        replay = httpx.post(f"{url}/api/v1/customers", json=body, headers=key).json()
        assert replay["id"] == first["id"]
        later = httpx.post(f"{url}/api/v1/customers", json=body, headers=AUTH).json()
        assert later["updated_at"] > again["updated_at"]
        assert httpx.get(f"{url}/api/v1/changes", headers=AUTH).json()["last_seq"] == 3


def test_app_works_in_process() -> None:
    """The same app answers through starlette's TestClient, with a custom API key."""
    # starlette 0.52's testclient touches an anyio alias deprecated in newer anyio.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient
    with TestClient(create_app(api_key="other")) as client:
        assert client.get("/api/v1/customers", headers=AUTH).status_code == 401
        headers = {"Authorization": "Bearer other"}
        response = client.post("/api/v1/projects", json={"name": "P"}, headers=headers)
        assert response.status_code == 201
