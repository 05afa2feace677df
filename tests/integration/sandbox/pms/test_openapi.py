"""Every answer of the reference PMS matches the schema its own OpenAPI document gives for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from loopback import serve
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app

AUTH = {"Authorization": f"Bearer {PMS_API_KEY}"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def doc(base_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base_url}/api/v1/openapi.json").json())


def check(doc: dict[str, Any], template: str, response: httpx.Response) -> None:
    """Validate ``response`` against the documented schema of its operation and status."""
    method = response.request.method.lower()
    documented = doc["paths"][f"/api/v1{template}"][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {template} {status} is not documented"
    content = documented[status].get("content")
    if content is None:
        assert not response.content
        return
    schema = {
        "$ref": content["application/json"]["schema"]["$ref"],
        "components": doc["components"],
    }
    errors = list(Draft202012Validator(schema).iter_errors(response.json()))
    assert not errors, [e.message for e in errors]


def test_every_answer_matches_the_documented_schema(base_url: str, doc: dict[str, Any]) -> None:
    """Records, pages, feed, webhooks and every error status have the documented shapes."""
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=AUTH) as api:
        dept = api.post("/customers", json={"kind": "department", "name": "Oslo"})
        check(doc, "/customers", dept)
        company = api.post(
            "/customers",
            json={"kind": "company", "name": "A AS", "address": {"city": "Oslo"}},
            headers={"Idempotency-Key": "k"},
        )
        check(doc, "/customers", company)
        check(doc, "/customers", api.post("/customers", json={"kind": "x"}))
        check(doc, "/customers", api.post("/customers", content=b"{"))
        check(
            doc,
            "/customers",
            api.post(
                "/customers", json={"kind": "person", "name": "B"}, headers={"Idempotency-Key": "k"}
            ),
        )
        project = api.post(
            "/projects",
            json={
                "name": "P", "customer_id": company.json()["id"],
                "department_id": dept.json()["id"], "start_date": "2024-01-01", "progress": 5,
            },
        )  # fmt: skip
        check(doc, "/projects", project)
        pid = project.json()["id"]
        check(doc, "/projects", api.get("/projects", params={"limit": 1}))
        check(doc, "/customers", api.get("/customers", params={"limit": 1}))
        check(doc, "/projects/{id}", api.get(f"/projects/{pid}"))
        check(doc, "/projects/{id}", api.get("/projects/nope"))
        check(doc, "/projects/{id}", api.patch(f"/projects/{pid}", json={"end_date": None}))
        check(
            doc,
            "/projects/{id}",
            api.patch(f"/projects/{pid}", json={}, headers={"If-Match": '"1"'}),
        )
        check(doc, "/projects/{id}", api.patch(f"/projects/{pid}", json={"progress": 500}))
        check(doc, "/customers/{id}", api.delete(f"/customers/{dept.json()['id']}"))
        check(doc, "/projects/{id}", api.delete(f"/projects/{pid}"))
        check(doc, "/changes", api.get("/changes", params={"limit": 3}))
        check(doc, "/changes", api.get("/changes", params={"limit": 0}))
        hook = api.post("/webhooks", json={"url": "http://127.0.0.1:9/h", "secret": "s"})
        check(doc, "/webhooks", hook)
        check(doc, "/webhooks", api.get("/webhooks"))
        check(doc, "/webhooks/{id}", api.delete(f"/webhooks/{hook.json()['id']}"))
        check(doc, "/webhooks/{id}", api.delete("/webhooks/nope"))
    check(doc, "/customers", httpx.get(f"{base_url}/api/v1/customers"))
